"""Registers the ``adapters`` artifact kind: a version is an adapter directory that must load
(``tava_core.store.register_kind``)."""
from __future__ import annotations

from pathlib import Path

from ..store import ArtifactKind, register_kind


def load_adapter_version(version_dir: Path):
    from .io import load_adapter

    return load_adapter(version_dir)


def verify_adapter(version_dir: Path) -> None:
    load_adapter_version(version_dir)


ADAPTERS = register_kind(ArtifactKind(name="adapters", verify=verify_adapter, load=load_adapter_version))
