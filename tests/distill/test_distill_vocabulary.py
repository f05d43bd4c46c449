"""Vocabulary expansion of static students (tava_core/distill/vocabulary.py): which words are added,
and that an added word is one token from the model2vec start to the saved encoder."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from tokenizers import Tokenizer

from tava_core.distill import DistillConfig
from tava_core.distill.run import check_student_config
from tava_core.distill.students import StaticStudent
from tava_core.distill.vocabulary import frequent_split_words
from tava_core.encoders import load_encoder
from tava_core.errors import ConfigError


@pytest.fixture(scope="module")
def tokenizer(teacher_path) -> Tokenizer:
    return Tokenizer.from_file(str(teacher_path / "tokenizer.json"))


def test_frequent_split_words_keeps_frequent_words_the_tokenizer_splits(tokenizer):
    texts = (["Glucocorticoid receptors and the cat."] * 5 + ["glucocorticoid", "Mitochondrial zygomorphic"] * 3
             + ["zygomorphic zygomorphic 1234567"])
    words = frequent_split_words(texts, tokenizer, 10)
    # "glucocorticoid" (8 uses) first, "zygomorphic" (5) next; "receptors", "cat", "mitochondrial" are
    # single tokens; digits are never words; lower-cased as the tokenizer does
    assert words == ["glucocorticoid", "zygomorphic"]
    assert not {"cat", "receptors", "mitochondrial", "the", "and"} & set(words)
    assert all(len(tokenizer.encode(w, add_special_tokens=False).ids) > 1 for w in words)
    assert frequent_split_words(texts, tokenizer, 1) == ["glucocorticoid"]
    assert frequent_split_words(texts, tokenizer, 10, min_count=6) == ["glucocorticoid"]
    assert frequent_split_words(texts, tokenizer, 0) == []
    tokenizer.enable_padding(length=16)  # a tokenizer.json that pads must not make every word look split
    assert frequent_split_words(texts, tokenizer, 10) == words
    tokenizer.no_padding()


@pytest.mark.slow
def test_added_word_is_one_token_from_start_to_saved_encoder(tmp_path, tiny_model_dir):
    plain = StaticStudent.from_teacher(tiny_model_dir, static_dim=None, projection=False, teacher_dim=32,
                                       cache_dir=tmp_path / "cache")
    expanded = StaticStudent.from_teacher(tiny_model_dir, static_dim=None, projection=False, teacher_dim=32,
                                          cache_dir=tmp_path / "cache", vocabulary=["glucocorticoid"])
    assert len(plain.tokenizer.encode("glucocorticoid", add_special_tokens=False).ids) > 1
    ids = expanded.tokenizer.encode("Glucocorticoid", add_special_tokens=False).ids
    assert len(ids) == 1
    assert expanded.embeddings.shape[0] == plain.embeddings.shape[0] + 1
    # each word list has its own cached distillation beside the plain one
    assert len(list((tmp_path / "cache").glob("vocabulary-*/model.safetensors"))) == 1
    # the saved encoder uses the whole-word row: the word's vector is that row, normalised
    encoder = load_encoder(str(expanded.save(tmp_path / "student")), cache=False)
    row = expanded.embeddings[ids[0]].detach().numpy() * float(expanded.token_weights[ids[0]].detach())
    np.testing.assert_allclose(encoder.encode(["glucocorticoid"])[0], row / np.linalg.norm(row), atol=1e-5)
    with torch.no_grad():
        assert not torch.allclose(expanded.embeddings[ids[0]], plain.embeddings[
            plain.tokenizer.encode("glucocorticoid", add_special_tokens=False).ids].mean(0))


@pytest.mark.parametrize("options", [{"student": "transformer"}, {"student": "static", "static_init": "token_embeddings"}])
def test_vocabulary_expansion_needs_a_model2vec_static_student(options):
    with pytest.raises(ConfigError, match="static_vocabulary"):
        check_student_config(DistillConfig(static_vocabulary=100, **options), 384)
