"""Which teacher layers a transformer student keeps: negative indices count from the end, so one
setting means "first and last" for a 6-layer MiniLM and a 12-layer mpnet alike."""
from __future__ import annotations

import pytest
import torch

from tava_core.distill.students import TransformerStudent, resolve_layers
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


def test_student_keeps_the_named_layers_weights(tiny_model_dir):
    from transformers import AutoModel

    teacher = AutoModel.from_pretrained(str(tiny_model_dir))
    student = TransformerStudent.from_teacher(tiny_model_dir, layers=[-1], projection=True, teacher_dim=48)
    assert student.model.config.num_hidden_layers == 1 and student.dim == 48
    kept = student.model.encoder.layer[0].attention.self.query.weight
    assert torch.equal(kept, teacher.encoder.layer[1].attention.self.query.weight)   # -1 = the last of 2
    assert not torch.equal(kept, teacher.encoder.layer[0].attention.self.query.weight)
