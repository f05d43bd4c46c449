"""A router published WITH its adapter: one registry version holds both, the router in the
version's ``router/`` subdirectory naming its student (the adapter) as ``..``.

Why one slot and not a sibling ``routers/<name>`` slot: a router is calibrated for one exact
adapter (its fingerprint is checked at load), so the two must change together. In one version
directory they are published, promoted, rolled back and pruned by the same single pointer move;
two slots would need two moves, and a rollback of one would leave the other pointing at an
adapter it was not calibrated for. When the version also holds a blend of the adapter (``blend/``),
the router sits on the blend, the best query encoder the version has, and names it ``../blend``.
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Optional

from ..errors import InputError
from ..io import read_json, write_json
from ..modeldir import ENCODER_MARKER
from .router import ROUTER_JSON, ROUTER_WEIGHTS, load_router
from .stored import NESTED_STUDENT

ROUTER_SUBDIR = "router"


def attached_router(version_dir: str | Path) -> Optional[Path]:
    """The router published inside an adapter version directory, or None."""
    path = Path(version_dir) / ROUTER_SUBDIR
    return path if (path / ROUTER_JSON).is_file() and (path / ROUTER_WEIGHTS).is_file() else None


def attach_router(router_dir: str | Path, adapter_dir: str | Path, *, blend_source: Optional[str | Path] = None) -> Path:
    """Copy a router into ``<adapter_dir>/router`` and make it name its student relative to that version:
    ``..`` (the adapter), or ``../blend`` when its student is the blend at ``blend_source``, published in
    the same version (``attach_blend``, which must run first). The copy must load there (its student's
    fingerprint is the one it was calibrated for), else nothing is left."""
    from ..encoders.blend import BLEND_SUBDIR

    source, target = Path(router_dir), Path(adapter_dir) / ROUTER_SUBDIR
    if not (source / ROUTER_JSON).is_file():
        raise InputError("not a router directory", path=source, hint="make one with `tava calibrate-router`")
    meta = read_json(source / ROUTER_JSON)
    student = Path(meta["student"]["spec"]["model"])
    student = (student if student.is_absolute() else source / student).resolve()
    on_blend = blend_source is not None and student == Path(blend_source).resolve()
    named = str(Path(NESTED_STUDENT) / BLEND_SUBDIR) if on_blend else NESTED_STUDENT
    shutil.copytree(source, target)
    meta["student"]["spec"]["model"] = named
    write_json(target / ROUTER_JSON, meta)
    marker = read_json(target / ENCODER_MARKER)
    marker["student"]["model"] = named
    write_json(target / ENCODER_MARKER, marker)
    try:
        load_router(target)   # the fingerprint check: it was calibrated for this very adapter (or blend)
    except Exception:
        shutil.rmtree(target, ignore_errors=True)
        raise
    return target
