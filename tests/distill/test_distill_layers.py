"""Which teacher layers a transformer student keeps: negative indices count from the end, so one
setting means "first and last" for a 6-layer MiniLM and a 12-layer mpnet alike."""
from __future__ import annotations

import pytest
import torch

from tava_core.distill.students import TransformerStudent, depth_layers, resolve_layers
from tava_core.errors import ConfigError


def test_negative_indices_count_from_the_end():
    assert resolve_layers([0, -1], 6) == [0, 5]
    assert resolve_layers([0, -1], 12) == [0, 11]
    assert resolve_layers([0, 5, -1], 12) == [0, 5, 11]
    assert resolve_layers([5, 0], 6) == [5, 0]          # order as given (unchanged behaviour)


@pytest.mark.parametrize("layers", [[0, 6], [0, -7], [5, -1], [1, 1]])
def test_layers_outside_the_teacher_or_repeated_are_refused(layers):
    with pytest.raises(ConfigError, match="do not name distinct layers of a 6-layer teacher") as info:
        resolve_layers(layers, 6)
    assert "-6..-1" in info.value.hint


@pytest.mark.parametrize("depth, layers", [(1, [0]), (2, [0, 1]), (3, [0, 2]), (4, [0, 1, 3]), (6, [0, 2, 5]),
                                           (12, [0, 1]), (24, [0, 1])])
def test_unnamed_layers_follow_the_teachers_depth(depth, layers):
    # three of a shallow teacher's layers (0 2 5 of MiniLM's six), the first two of a deep one (mpnet's twelve)
    assert depth_layers(depth) == layers


def test_student_without_named_layers_keeps_the_first_two_of_a_deep_teacher(tmp_path, teacher_path):
    from transformers import AutoModel, BertConfig, BertModel

    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=12, num_attention_heads=2,
                         intermediate_size=64, max_position_embeddings=128)).save_pretrained(tmp_path)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        (tmp_path / name).write_bytes((teacher_path / name).read_bytes())
    student = TransformerStudent.from_teacher(tmp_path, layers=None, projection=True, teacher_dim=48)
    teacher = AutoModel.from_pretrained(str(tmp_path))
    assert student.kept_layers == [0, 1] and student.model.config.num_hidden_layers == 2
    for kept, source in zip(student.model.encoder.layer, teacher.encoder.layer[:2], strict=True):
        assert torch.equal(kept.attention.self.query.weight, source.attention.self.query.weight)
    named = TransformerStudent.from_teacher(tmp_path, layers=[0, -1], projection=True, teacher_dim=48)
    assert named.kept_layers == [0, 11]
    fresh = TransformerStudent.from_teacher(tmp_path, layers=[], projection=True, teacher_dim=48, hidden_size=32)
    assert fresh.kept_layers is None and fresh.model.config.num_hidden_layers == 2


def test_student_keeps_the_named_layers_weights(tiny_model_dir):
    from transformers import AutoModel

    teacher = AutoModel.from_pretrained(str(tiny_model_dir))
    student = TransformerStudent.from_teacher(tiny_model_dir, layers=[-1], projection=True, teacher_dim=48)
    assert student.model.config.num_hidden_layers == 1 and student.dim == 48
    kept = student.model.encoder.layer[0].attention.self.query.weight
    assert torch.equal(kept, teacher.encoder.layer[1].attention.self.query.weight)   # -1 = the last of 2
    assert not torch.equal(kept, teacher.encoder.layer[0].attention.self.query.weight)


def test_student_base_gives_the_layers_and_the_teacher_gives_the_dimension(tiny_model_dir, teacher_path):
    """A student may start from a smaller pretrained encoder than its teacher: its layers and width
    come from the base, its output dimension (the projection) from the teacher."""
    from transformers import AutoModel

    from tava_core.distill import DistillConfig
    from tava_core.distill.run import build_student

    config = DistillConfig(student="transformer", student_base=str(tiny_model_dir), layers=[0, -1])
    student = build_student(config, teacher_path, 384)
    base = AutoModel.from_pretrained(str(tiny_model_dir))
    assert student.hidden_size == 32 and student.dim == 384
    assert torch.equal(student.model.encoder.layer[1].attention.self.query.weight,
                       base.encoder.layer[1].attention.self.query.weight)
    vectors = student(student.prepare(["a short query", "a somewhat longer document about proteins"]))
    assert vectors.shape == (2, 384)


def test_student_base_is_refused_for_a_static_student():
    from tava_core.distill import DistillConfig
    from tava_core.distill.run import check_student_config

    with pytest.raises(ConfigError, match="transformer student only"):
        check_student_config(DistillConfig(student="static", student_base="all-MiniLM-L6-v2"), 384)
