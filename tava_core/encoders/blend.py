"""``BlendEncoder``: several students of one teacher, blended into one query vector. Registered as
tava encoder type ``blend``.

Every member maps text into the same teacher space (a student, a student + adapter, a static
student), so the blend is one unit vector per text, ``normalize(sum_i w_i * member_i(text))``,
searched against the teacher's documents like any single student's. For unit-length members its
cosine with a document is ``sum_i w_i * cos(member_i, d)`` up to one per-text scale, so the ranking is
the weighted sum of the members' scores: where the members err differently the blend keeps more of
the teacher than either. The use it was measured for (docs/mpnet.md): a transformer student + adapter
beside a static student, whose encoding costs ~1/1,000 of the transformer's, so the blend runs at
the transformer student's speed.

``tava blend --members ADAPTER_DIR --members STATIC_DIR`` writes one (``save_blend``); any tava command
that takes an encoder takes its directory (``tava evaluate --adapted``, ``--student``, ``tava embed``).
Layout: ``tava_encoder.json`` = ``{"type": "blend", "members": [{"encoder": EncoderSpec, "weight": w},
...]}`` (a member's relative model path resolves against the blend's directory).
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np
from pydantic import Field, model_validator

from ..adapter.baselines import normalize_rows
from ..config import EncoderSpec, TavaModel
from ..errors import ModelLoadError
from ..io import atomic_directory, read_json, write_json
from ..modeldir import ENCODER_MARKER
from ..records import Record
from .base import Encoder, TextKind, combine_fingerprint
from .mapped import load_named_encoder

_HINT = "write it again with `tava blend --members DIR --members DIR [--weights W --weights W]`"


class BlendEncoder(Encoder):
    """``normalize(sum_i weights[i] * unit(members[i].encode(texts)))``; every member must give vectors
    of one dimension (those of one teacher's space); each is made unit-length before weighing."""

    normalized = True

    def __init__(self, members: Sequence[Encoder], weights: Sequence[float], *, name: str = "blend") -> None:
        check_weights(weights, len(members))
        dims = {member.dim for member in members}
        if len(dims) != 1:
            raise ModelLoadError(f"blend members give vectors of different sizes "
                                 f"({', '.join(f'{m.name}: {m.dim}-d' for m in members)})",
                                 hint="blend students of one teacher (their vectors live in its space)")
        self.members = list(members)
        self.weights = [float(w) for w in weights]
        self.dim = dims.pop()
        self.name = name

    @property
    def fingerprint(self) -> str:
        return combine_fingerprint("blend", [(m.fingerprint, w) for m, w in zip(self.members, self.weights, strict=True)])

    def encode(self, texts: Sequence[str], *, kind: TextKind = "document", batch_size: int | None = None,
               show_progress: bool = False) -> np.ndarray:
        total = np.zeros((len(texts), self.dim), dtype=np.float32)
        for member, weight in zip(self.members, self.weights, strict=True):
            vectors = member.encode(texts, kind=kind, batch_size=batch_size, show_progress=show_progress)
            # a member that does not normalise (a raw student) would otherwise outweigh the others
            total += weight * normalize_rows(np.asarray(vectors, dtype=np.float32))
        return normalize_rows(total)

    def info(self) -> dict[str, Any]:
        return {**super().info(), "members": [{**m.info(), "weight": w} for m, w in zip(self.members, self.weights, strict=True)]}


def check_weights(weights: Sequence[float], members: int) -> None:
    """Two or more members, one weight each, every weight > 0 (a zero weight is a member to drop)."""
    if members < 2:
        raise ValueError(f"a blend needs two or more members, got {members}")
    if len(weights) != members:
        raise ValueError(f"{members} members but {len(weights)} weights: give one --weights per --members")
    if any(not np.isfinite(w) or w <= 0 for w in weights):
        raise ValueError(f"blend weights must be finite and > 0, got {list(weights)}")


def save_blend(directory: str | Path, members: Sequence[EncoderSpec], weights: Sequence[float]) -> BlendEncoder:
    """Write a blend directory (atomically: a failure leaves nothing) after loading it once, so a
    blend whose members do not load or disagree in size is refused, not saved; returns that loaded
    blend (its members are named by absolute paths, so it stays valid after the rename). Weights are
    stored as given, scaled to sum to 1 (only their ratios matter)."""
    check_weights(weights, len(members))
    total = float(sum(weights))
    # a member named by a local path is stored absolute: the blend loads from any working directory
    members = [spec.model_copy(update={"model": str(Path(spec.model).resolve())}) if Path(spec.model).exists() else spec
               for spec in members]
    entries = [{"encoder": spec.model_dump(mode="json"), "weight": float(w) / total}
               for spec, w in zip(members, weights, strict=True)]
    marker: dict[str, Any] = {"type": "blend", "members": entries}
    with atomic_directory(directory) as tmp:
        write_json(Path(tmp) / ENCODER_MARKER, marker)
        blend = load_blend(tmp)   # refuse (ModelLoadError) before the rename
        # each member's fingerprint as blended: a member retrained at its path is refused at load, not
        # blended silently with weights chosen for the old one
        for entry, member in zip(entries, blend.members, strict=True):
            entry["fingerprint"] = member.fingerprint
        write_json(Path(tmp) / ENCODER_MARKER, marker)
    blend.name = Path(directory).name
    return blend


def load_blend(directory: str | Path, spec: Optional[EncoderSpec] = None) -> BlendEncoder:
    """Factory for ``ENCODER_TYPES['blend']``. Device, dtype, batch size and backend of ``spec`` (the
    outer spec) apply to every member."""
    directory = Path(directory)
    marker = read_json(directory / ENCODER_MARKER)
    entries = marker.get("members")
    if not isinstance(entries, list) or len(entries) < 2:
        raise ModelLoadError("a blend names two or more members", path=directory / ENCODER_MARKER, hint=_HINT)
    members, weights = [], []
    for entry in entries:
        data = entry.get("encoder") or {}
        if not data.get("model"):
            raise ModelLoadError("a blend member names no model", path=directory / ENCODER_MARKER, hint=_HINT)
        member = load_named_encoder(directory, data, spec)
        recorded = entry.get("fingerprint")
        if recorded and member.fingerprint != recorded:
            raise ModelLoadError(f"blend member {data['model']!r} has fingerprint {member.fingerprint[:12]}, but the "
                                 f"blend was made with {str(recorded)[:12]} (retrained, replaced, or other options)",
                                 path=directory / ENCODER_MARKER,
                                 hint="blend the members again (`tava blend`, or re-run `tava run`), or load the "
                                      "blend published in the registry with its adapter (it keeps its own copies)")
        members.append(member)
        weights.append(float(entry.get("weight", 0.0)))
    try:
        return BlendEncoder(members, weights, name=directory.name)
    except ValueError as exc:
        raise ModelLoadError(str(exc), path=directory / ENCODER_MARKER, hint=_HINT) from None


class BlendConfig(TavaModel):
    """Which students to blend, with which weights, and where the blend is written (`tava blend`)."""

    members: list[str] = Field(..., min_length=2, description=(
        "Two or more query encoders of one teacher's space, in order: a Stage B adapter directory "
        "(student + adapter), a student directory (transformer or static). Measured pair: the "
        "transformer student's adapter and a static student of the same corpus (docs/mpnet.md)."))
    weights: list[float] = Field(default_factory=list, description=(
        "One weight per member (only their ratios matter); empty = equal weights (0.5 / 0.5 for two: "
        "chosen on SciFact's dev queries, checked on the built-in data, docs/mpnet.md)."))
    name: str = Field("blend", min_length=1, description=(
        "The blend's directory: <home>/artifacts/blends/<name> (replaced atomically)."))

    @model_validator(mode="after")
    def _one_weight_per_member(self) -> "BlendConfig":
        if self.weights:
            check_weights(self.weights, len(self.members))
        return self

    def resolved_weights(self) -> list[float]:
        return list(self.weights) if self.weights else [1.0] * len(self.members)


class BlendResult(Record):
    directory: str
    fingerprint: str
    dim: int
    members: list[dict[str, Any]]    # name, fingerprint, dim, weight of each member


# ------------------------------------------------------------------ a blend published with its adapter

BLEND_SUBDIR = "blend"
NESTED_ADAPTER = ".."   # the member a blend inside an adapter's version directory names that adapter by
MEMBERS_SUBDIR = "members"   # a published blend's own copies of its other members


def attach_blend(blend_dir: str | Path, adapter_source: str | Path, adapter_dir: str | Path) -> Path:
    """Copy the blend at ``blend_dir`` into ``<adapter_dir>/blend``, its member ``adapter_source`` (the
    adapter as the blend was made from it) renamed ``..``: the registry publishes, promotes and rolls back
    the two as one version (as a router is, ``route/publish.py``), and the nightly refresh rebuilds the
    blend around each new adapter by copying it (``carry_blend``). The copy must load there; otherwise
    nothing is left and the error says why."""
    source, target = Path(blend_dir), Path(adapter_dir) / BLEND_SUBDIR
    marker = read_json(source / ENCODER_MARKER)
    adapter = Path(adapter_source).resolve()
    nested, copies = 0, []
    for number, entry in enumerate(marker.get("members") or []):
        model = (entry.get("encoder") or {}).get("model", "")
        path = (Path(model) if Path(model).is_absolute() else source / model).resolve() if model else None
        if path == adapter:
            entry["encoder"]["model"] = NESTED_ADAPTER
            entry.pop("fingerprint", None)     # the version's own adapter: each refresh puts a new one there
            nested += 1
        elif path is not None and path.is_dir():
            # the other members (static students) are copied into the version: their artifact directories
            # are retrained in place by later runs, and a rolled-back version must keep its own
            local = f"{MEMBERS_SUBDIR}/{number}-{path.name}"
            copies.append((path, local))
            entry["encoder"]["model"] = local
    if nested != 1:
        raise ModelLoadError(f"the blend at {source} has {nested} members that are the adapter {adapter}; "
                             "one is needed to publish it with that adapter", path=source / ENCODER_MARKER,
                             hint="publish the blend of this adapter (`tava run --blend-static` makes one)")
    def write() -> None:
        target.mkdir(parents=True)
        for path, local in copies:
            shutil.copytree(path, target / local)
        write_json(target / ENCODER_MARKER, marker)

    _checked_copy(target, write)
    return target


def attached_blend(version_dir: str | Path) -> Optional[Path]:
    """The blend published inside an adapter version directory, or None."""
    path = Path(version_dir) / BLEND_SUBDIR
    return path if (path / ENCODER_MARKER).is_file() else None


def carry_blend(current_version_dir: str | Path, candidate_dir: str | Path) -> Optional[BlendEncoder]:
    """The current version's blend, rebuilt around the candidate adapter in ``<candidate_dir>/blend``: the
    same static members and weights, ``..`` now naming the candidate; returned as loaded there (the check
    that it works; None when the current version has no blend, and nothing is left when it fails)."""
    current = attached_blend(current_version_dir)
    if current is None:
        return None
    target = Path(candidate_dir) / BLEND_SUBDIR
    shutil.rmtree(target, ignore_errors=True)    # a retried task starts again from the current blend
    return _checked_copy(target, lambda: shutil.copytree(current, target))


def _checked_copy(target: Path, write: Callable[[], object]) -> BlendEncoder:
    """Run ``write`` (which puts a blend at ``target``) and load the result: a blend that does not load
    there is removed, so nothing half-usable is left, and the error propagates."""
    try:
        write()
        return load_blend(target)
    except Exception:
        shutil.rmtree(target, ignore_errors=True)
        raise
