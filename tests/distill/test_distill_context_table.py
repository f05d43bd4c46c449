"""The static student's context start (tava_core/distill/context_table.py): windows framed as the
teacher frames a text, per-token sums of the teacher's own vectors, and a table whose mean over a
text's tokens is the teacher's mean over the same tokens."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from tokenizers import Tokenizer
from transformers import AutoModel

from tava_core.distill.context_table import contextual_table, contextual_token_sums, pooling_mode, windows
from tava_core.distill.students import StaticStudent


@pytest.fixture(scope="module")
def tokenizer(teacher_path) -> Tokenizer:
    tok = Tokenizer.from_file(str(teacher_path / "tokenizer.json"))
    tok.no_padding()
    tok.no_truncation()
    return tok


@pytest.mark.parametrize("window", [8, 12, 64])
def test_windows_cut_every_token_once_and_frame_each_piece(tokenizer, window):
    text = "Glucocorticoid receptors regulate the transcription of many genes in mitochondrial membranes."
    inner = tokenizer.encode(text, add_special_tokens=False).ids
    cls, sep = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    pieces = windows([text, "cat"], tokenizer, window)
    assert all(len(p) <= window and p[0] == cls and p[-1] == sep for p in pieces)
    assert [t for p in pieces[:-1] for t in p[1:-1]] == inner          # in order, none lost or repeated
    assert len(pieces) - 1 == -(-len(inner) // (window - 2))
    assert pieces[-1] == [cls, tokenizer.token_to_id("cat"), sep]


def test_a_token_budget_samples_whole_pieces_in_text_order(tokenizer):
    texts = [f"text {k}: glucocorticoid receptors regulate genes in membranes" for k in range(30)] + ["", "cat"]
    full = windows(texts, tokenizer, 8)
    part = windows(texts, tokenizer, 8, max_tokens=80, seed=3)
    assert part == windows(texts, tokenizer, 8, max_tokens=80, seed=3)
    assert 80 <= sum(map(len, part)) < 80 + 8                   # the piece that crosses the budget is the last
    rest = iter(full)                                          # every sampled piece is one of the pieces, in the
    assert all(any(p == q for q in rest) for p in part)        # order the texts give them (a subsequence)
    assert len(part) < len(full)
    assert windows(texts, tokenizer, 8, max_tokens=10**6) == full


def test_token_sums_are_the_teachers_own_vectors(teacher_path, tokenizer):
    texts = ["the cat sat on the mat", "a dog barked at the cat"]
    sums, counts, vocab = contextual_token_sums(teacher_path, texts)
    model = AutoModel.from_pretrained(str(teacher_path), dtype=torch.float32).eval()
    expected = np.zeros_like(sums)
    for text in texts:
        ids = tokenizer.encode(text, add_special_tokens=True).ids
        with torch.inference_mode():
            hidden = model(input_ids=torch.tensor([ids])).last_hidden_state[0].numpy()
        np.add.at(expected, np.array(ids[1:-1]), hidden[1:-1])
    the = vocab["the"]
    assert counts[the] == 3 and counts[vocab["cat"]] == 2 and counts[vocab["[CLS]"]] == 0
    assert counts.sum() == sum(len(tokenizer.encode(t, add_special_tokens=False).ids) for t in texts)
    np.testing.assert_allclose(sums, expected, atol=1e-4)


def test_token_budget_reads_a_seeded_sample_of_whole_windows(teacher_path):
    texts = [f"sentence number {k} about cats and dogs and the weather in spring" for k in range(40)]
    _, full, _ = contextual_token_sums(teacher_path, texts, window=8)
    _, part, _ = contextual_token_sums(teacher_path, texts, window=8, max_tokens=60, seed=1)
    _, again, _ = contextual_token_sums(teacher_path, texts, window=8, max_tokens=60, seed=1)
    _, other, _ = contextual_token_sums(teacher_path, texts, window=8, max_tokens=60, seed=2)
    # windows of 8 hold at most 6 text tokens: just over 60 tokens read (framing included), a fraction of all
    assert 40 <= part.sum() <= 66 < full.sum()
    assert (part <= full).all()
    np.testing.assert_array_equal(part, again)
    assert not np.array_equal(part, other)


def test_pooling_mode_reads_the_sentence_transformers_directory(teacher_path, tmp_path):
    assert pooling_mode(teacher_path) == "mean"
    assert pooling_mode(tmp_path) is None                    # not a sentence-transformers directory
    (tmp_path / "modules.json").write_text('[{"path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]')
    (tmp_path / "1_Pooling").mkdir()
    (tmp_path / "1_Pooling" / "config.json").write_text('{"embedding_dimension": 8, "pooling_mode": "cls"}')
    assert pooling_mode(tmp_path) == "cls"                   # as sentence-transformers 6 writes it


def test_table_maps_by_token_string_and_rescales_the_unseen():
    teacher_vocab = {"a": 0, "b": 1, "c": 2, "[CLS]": 3}
    student_vocab = {"c": 0, "a": 1, "z": 2}                 # another id order, and a token the teacher lacks
    sums = np.array([[2.0, 0.0], [0.0, 0.0], [0.0, 9.0], [1.0, 1.0]])
    counts = np.array([2, 0, 3, 0])
    fallback = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 0.5]], dtype=np.float32)
    table, seen = contextual_table(fallback, student_vocab, sums, counts, teacher_vocab)
    assert seen == 2
    np.testing.assert_allclose(table[0], [0.0, 3.0])         # "c": 9 / 3
    np.testing.assert_allclose(table[1], [1.0, 0.0])         # "a": 2 / 2
    # "z" keeps its direction, scaled by median seen length (2.0) / median unseen length (0.5)
    np.testing.assert_allclose(table[2], [0.0, 0.5 * 2.0 / 0.5])


def test_context_start_reproduces_the_teacher_on_its_own_text(teacher_path, monkeypatch):
    """A text whose tokens each occur once: the context student's vector of it is the mean of the
    teacher's vectors of its tokens (the teacher's own pooling, less [CLS] and [SEP]); a token the text
    never shows keeps its start's direction."""
    import tava_core.distill.students as students

    model = AutoModel.from_pretrained(str(teacher_path), dtype=torch.float32).eval()
    start = model.get_input_embeddings().weight.detach().clone()

    def fake_model2vec(teacher_dir, cache_dir, vocabulary):   # the 60 s distillation is not what is tested
        return start.clone(), Tokenizer.from_file(str(teacher_dir / "tokenizer.json"))

    monkeypatch.setattr(students, "_model2vec_table", fake_model2vec)
    text = "mitochondrial membranes regulate apoptosis in neurons"
    student = StaticStudent.from_teacher(teacher_path, static_dim=None, projection=True, teacher_dim=384,
                                         init="context", texts=[text])
    tok = Tokenizer.from_file(str(teacher_path / "tokenizer.json"))
    tok.no_padding()
    ids = tok.encode(text, add_special_tokens=True).ids
    assert len(set(ids)) == len(ids)
    with torch.inference_mode():
        hidden = model(input_ids=torch.tensor([ids])).last_hidden_state[0, 1:-1].numpy()
        got = student(student.prepare([text]))[0].numpy()
        zebra = student(student.prepare(["zebra"]))[0].numpy()
    np.testing.assert_allclose(got, hidden.mean(axis=0), atol=1e-4)
    before = start[tok.token_to_id("zebra")].numpy()
    assert float(zebra @ before / (np.linalg.norm(zebra) * np.linalg.norm(before))) > 0.9999
    assert not np.allclose(zebra, before)             # rescaled to the context means' length


def test_token_sums_are_kept_per_text_and_sample_and_a_damaged_entry_is_computed_again(teacher_path, tmp_path,
                                                                                        monkeypatch):
    """The teacher's pass is kept in the cache directory: the same texts and sample read it back
    exactly without running the teacher; other texts or another sample compute their own; a damaged
    entry is computed again and replaced."""
    import tava_core.distill.context_table as context_table

    texts = ["the cat sat on the mat", "a dog barked at the cat"]
    calls: list[tuple[str, ...]] = []
    real = context_table.contextual_token_sums

    def counted(teacher_dir, texts, **kwargs):
        calls.append(tuple(texts))
        return real(teacher_dir, texts, **kwargs)

    monkeypatch.setattr(context_table, "contextual_token_sums", counted)
    first = context_table.cached_token_sums(tmp_path, teacher_path, texts)
    again = context_table.cached_token_sums(tmp_path, teacher_path, texts)
    assert len(calls) == 1
    for got, want in zip(again[:2], first[:2], strict=True):
        np.testing.assert_array_equal(got, want)
    assert again[2] == first[2]
    context_table.cached_token_sums(tmp_path, teacher_path, texts[:1])
    context_table.cached_token_sums(tmp_path, teacher_path, texts, max_tokens=8, seed=1)
    assert len(calls) == 3 and len(list(tmp_path.glob("context-*"))) == 3
    entry = next(p for p in tmp_path.glob("context-*")
                 if np.load(p / "sums.npz")["counts"].sum() == first[1].sum())
    (entry / "sums.npz").write_bytes(b"damaged")
    repaired = context_table.cached_token_sums(tmp_path, teacher_path, texts)
    assert len(calls) == 4
    np.testing.assert_array_equal(repaired[0], first[0])
    np.testing.assert_array_equal(context_table.cached_token_sums(tmp_path, teacher_path, texts)[0], first[0])
    assert len(calls) == 4
