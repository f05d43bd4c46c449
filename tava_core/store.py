"""A generic versioned artifact store: numbered versions, a ``current`` pointer, history, rollback,
pruning, all under one re-entrant lock per slot. It knows nothing about what an artifact is: each
artifact *kind* registers how a version is verified (and loaded) with ``register_kind``.

One *slot* per artifact::

    <slot>/versions/00001/      one complete version (its files + registry.json: lineage, metrics)
          /current              name of the version readers load
          /history.json         every move of ``current`` (promote, rollback)
          /lock                 the slot's lock file (tava_core.locks)

A version is assembled in a temporary sibling and renamed into place complete
(``io.atomic_directory``); ``current`` is replaced atomically (``io.atomic_path``). Readers resolve
``current`` once and then read that version's directory, which is never changed afterwards, so
they never wait for a writer and never see half a version. Allocating a number and moving
``current`` happen under the slot lock; promotion can be a compare-and-set (``expected_current``).
The lock is re-entrant, so a caller holding it (a publish, a whole index build) can call every
slot function below.
"""
from __future__ import annotations

import contextlib
import importlib
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Optional

from pydantic import BaseModel, Field

from .errors import ConfigError, InputError, IntegrityError, TavaError
from .home import slug
from .io import atomic_directory, atomic_path, read_json, write_json
from .locks import ResourceLockedError, file_lock
from .manifest import now_iso

VERSIONS_DIR = "versions"
CURRENT_FILE = "current"
HISTORY_FILE = "history.json"
LOCK_FILE = "lock"
RECORD_FILE = "registry.json"
_VERSION_RE = re.compile(r"^\d{5,}$")
ANY_CURRENT: Any = object()  # expected_current not given: promote whatever is current

__all__ = ["ArtifactKind", "ArtifactStore", "VersionRecord", "StalePromotionError", "ResourceLockedError",
           "register_kind", "artifact_kind", "slot_lock", "version_dirs", "current_version", "set_current",
           "new_version", "rollback_slot", "prune_slot", "read_record", "normalize_version"]


class StalePromotionError(TavaError):
    """``current`` moved since the candidate was made from it (a concurrent run promoted first)."""


class VersionRecord(BaseModel):
    """What the store knows about one version (``registry.json`` inside the version)."""

    kind: str = Field(description="Artifact kind (students, adapters, indexes, ...).")
    name: str = Field(description="Artifact name (the slot) within its kind.")
    version: str = Field(description="Zero-padded version number.")
    created: str = Field(default_factory=now_iso, description="UTC time the version was published.")
    lineage: dict[str, Any] = Field(default_factory=dict, description=(
        "Where it came from: data manifests, teacher and student (names + fingerprints), parent version."))
    metrics: dict[str, Any] = Field(default_factory=dict, description="Scores measured before publishing.")
    note: str = Field("", description="Free text (why it was made).")
    path: str = Field("", description="The version directory (filled when read).")
    current: bool = Field(False, description="Whether ``current`` points here (filled when read).")


# ----------------------------------------------------------------------------- kinds

@dataclass(frozen=True)
class ArtifactKind:
    """How the store checks and opens versions of one kind (registered by the kind's own module).

    ``verify(version_dir)`` raises unless the version loads (run before ``current`` moves to it);
    ``load(version_dir)`` returns the artifact in memory; ``marker`` is a file every complete
    version holds (versions without it are ignored by rollback and pruning).
    """

    name: str
    verify: Callable[[Path], None]
    load: Optional[Callable[[Path], Any]] = None
    marker: Optional[str] = None


_KINDS: dict[str, ArtifactKind] = {}


def register_kind(kind: ArtifactKind) -> ArtifactKind:
    """Register (or replace) how ``kind.name`` is verified and loaded."""
    _KINDS[kind.name] = kind
    return kind


def artifact_kind(name: str, module: Optional[str] = None) -> Optional[ArtifactKind]:
    """The registered kind ``name``; ``module`` (which registers it on import) is imported first
    when the kind is not registered yet, so the store never imports a kind's module at load time."""
    if name not in _KINDS and module:
        importlib.import_module(module)
    return _KINDS.get(name)


def verify_not_empty(version_dir: Path) -> None:
    """The check of kinds that registered nothing better: the version holds a file besides its record."""
    if not [p for p in version_dir.iterdir() if p.name != RECORD_FILE]:
        raise IntegrityError("version directory is empty", path=version_dir)


# ----------------------------------------------------------------------------- slot functions

def normalize_version(version: str | int) -> str:
    """'3', 3 or '00003' -> '00003' (names that are not numbers pass through)."""
    return f"{int(version):05d}" if str(version).isdigit() else str(version)


def slot_lock(slot: str | Path, *, timeout: float = 10.0) -> contextlib.AbstractContextManager:
    """The slot's lock: short critical sections (numbering, pointer moves), or a whole build when
    the writer takes it first (it is re-entrant)."""
    return file_lock(Path(slot) / LOCK_FILE, timeout=timeout, what=f"registry slot {Path(slot).name}")


def version_dirs(slot: str | Path, *, marker: Optional[str] = None) -> list[Path]:
    """Complete version directories, oldest first (``marker``: a file each must hold)."""
    root = Path(slot) / VERSIONS_DIR
    if not root.is_dir():
        return []
    return sorted((p for p in root.iterdir() if p.is_dir() and _VERSION_RE.match(p.name)
                   and (marker is None or (p / marker).is_file())), key=lambda p: int(p.name))


def current_version(slot: str | Path) -> Optional[str]:
    """The version ``current`` names, or None when nothing was promoted yet."""
    pointer = Path(slot) / CURRENT_FILE
    if not pointer.is_file():
        return None
    return pointer.read_text().strip() or None


def _next_version(slot: Path) -> str:
    root = slot / VERSIONS_DIR
    # Temporary siblings (".00003.tmp-...") do not count; numbering continues past pruned or
    # rolled-back versions because the highest remaining number is kept.
    existing = [int(p.name) for p in root.iterdir() if _VERSION_RE.match(p.name)] if root.is_dir() else []
    return f"{(max(existing) + 1) if existing else 1:05d}"


def _append_history(slot: Path, event: dict[str, Any]) -> None:
    path = slot / HISTORY_FILE
    history = read_json(path) if path.is_file() else []
    history.append({"time": now_iso(), "pid": os.getpid(), **event})
    write_json(path, history)


def _move_current(slot: Path, version: str, event: dict[str, Any]) -> None:
    # Caller holds the slot lock.
    with atomic_path(slot / CURRENT_FILE) as tmp:
        tmp.write_text(version + "\n")
    _append_history(slot, {"to": version, **event})


def _stale(slot: Path, current: Optional[str], expected: Optional[str], what: str) -> StalePromotionError:
    return StalePromotionError(
        f"current moved to version {current} while this candidate was made from {expected or 'nothing'}; {what}",
        path=slot, hint="another run promoted first: re-run so the candidate is trained and judged against "
                        "the new current version")


def set_current(slot: str | Path, version: str, *, action: str = "promote", reason: str = "",
                expected_current: Any = ANY_CURRENT, lock_timeout: float = 10.0) -> dict[str, Any]:
    """Point ``current`` at ``version`` under the slot lock (compare-and-set with ``expected_current``)."""
    slot = Path(slot)
    if not (slot / VERSIONS_DIR / version).is_dir():
        raise InputError(f"no version {version} here", path=slot,
                         hint=f"versions: {', '.join(p.name for p in version_dirs(slot)) or 'none'}")
    with slot_lock(slot, timeout=lock_timeout):
        before = current_version(slot)
        if expected_current is not ANY_CURRENT and before != expected_current:
            raise _stale(slot, before, expected_current, "not promoted")
        _move_current(slot, version, {"action": action, "from": before, "reason": reason})
    return {"slot": str(slot), "from_version": before, "to_version": version, "action": action}


@contextlib.contextmanager
def new_version(slot: str | Path, *, record: Optional[dict[str, Any]] = None,
                lock_timeout: float = 10.0) -> Iterator[tuple[str, Path]]:
    """Yield ``(version, staging_dir)``; on success the staging dir becomes ``versions/<version>``.

    The number is taken under the slot lock and the lock is held until the version is in place, so
    two publishers never pick the same number. ``record`` (kind, name, lineage, metrics, note) is
    written as ``registry.json`` inside the version. ``current`` is not moved (see ``set_current``).
    """
    slot = Path(slot)
    with slot_lock(slot, timeout=lock_timeout):
        version = _next_version(slot)
        with atomic_directory(slot / VERSIONS_DIR / version) as staging:
            yield version, staging
            if record is not None:
                write_json(staging / RECORD_FILE, {**record, "version": version, "created": now_iso()})


def rollback_slot(slot: str | Path, *, to: Optional[str] = None, marker: Optional[str] = None,
                  check: Optional[Callable[[str], Any]] = None, reason: str = "",
                  lock_timeout: float = 10.0) -> dict[str, Any]:
    """Point ``current`` back at ``to``, or at the newest complete version older than the current one.

    ``check(version)`` must succeed (say, load the artifact) before readers are sent there.
    """
    slot = Path(slot).expanduser().resolve()
    with slot_lock(slot, timeout=lock_timeout):
        current = current_version(slot)
        if current is None:
            raise InputError("nothing published here (no 'current' file)", path=slot,
                             hint="publish a version first")
        versions = [p.name for p in version_dirs(slot, marker=marker)]
        if to is not None:
            to = normalize_version(to)
            if to not in versions:
                raise InputError(f"no complete version {to} to roll back to", path=slot,
                                 hint=f"versions kept: {', '.join(versions) or 'none'}")
            if to == current:
                raise InputError(f"version {to} is already current; nothing to roll back", path=slot)
            target = to
        else:
            older = [v for v in versions if int(v) < int(current)]
            if not older:
                raise InputError(f"version {current} is the oldest one kept; nothing to roll back to", path=slot,
                                 hint=f"versions kept: {', '.join(versions)}")
            target = older[-1]
        if check is not None:
            check(target)
        _move_current(slot, target, {"action": "rollback", "from": current, "reason": reason})
    return {"slot": str(slot), "from_version": current, "to_version": target, "action": "rollback"}


def prune_slot(slot: str | Path, keep: int, *, marker: Optional[str] = None, lock_timeout: float = 10.0) -> list[str]:
    """Delete the oldest versions beyond ``keep`` (never the current one); returns what was removed.

    A reader that resolved ``current`` just before a rollback may still be reading an older
    version; ``keep`` >= 2 leaves it in place for at least one more publish.
    """
    slot = Path(slot)
    removed: list[str] = []
    with slot_lock(slot, timeout=lock_timeout):
        current = current_version(slot)
        versions = version_dirs(slot, marker=marker)
        for path in versions[:-keep] if len(versions) > keep else []:
            if path.name != current:
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path.name)
    return removed


def read_record(slot: str | Path, version: str, *, kind: str = "", name: str = "") -> VersionRecord:
    """The version's record; versions published without one (older indexes) get a minimal record
    from their manifest.json."""
    vdir = Path(slot) / VERSIONS_DIR / version
    if not vdir.is_dir():
        raise InputError(f"no version {version}", path=Path(slot), hint="list versions with `tava registry list`")
    data: dict[str, Any] = {}
    if (vdir / RECORD_FILE).is_file():
        data = read_json(vdir / RECORD_FILE)
    elif (vdir / "manifest.json").is_file():
        manifest = read_json(vdir / "manifest.json")
        data = {"created": manifest.get("created", ""), "lineage": {"source": manifest.get("source", {})},
                "metrics": {k: manifest[k] for k in ("recall_at_10", "count") if k in manifest}}
    data = {**data, "kind": kind or data.get("kind", ""), "name": name or data.get("name", ""), "version": version}
    return VersionRecord.model_validate({**data, "path": str(vdir), "current": current_version(slot) == version})


# ----------------------------------------------------------------------------- the store

class ArtifactStore:
    """Named slots ``<root>/<kind>/<name>`` for the kinds in ``kinds`` (kind -> the module that
    registers it, imported only when a version of that kind must be verified or loaded)."""

    def __init__(self, root: str | Path, kinds: Mapping[str, Optional[str]]) -> None:
        self.root = Path(root)
        self.kinds = dict(kinds)

    # -- places
    def slot(self, kind: str, name: str) -> Path:
        """The slot directory of ``name`` (names may have several '/'-separated parts)."""
        return self.root / kind / self.relative_name(kind, name)

    def relative_name(self, kind: str, name: str) -> Path:
        if kind not in self.kinds:
            raise ConfigError(f"unknown artifact kind {kind!r}", hint=f"one of: {', '.join(self.kinds)}")
        parts = [p for p in str(name).strip("/").split("/") if p]
        if not parts or any(p in {".", ".."} for p in parts):
            raise ConfigError(f"invalid artifact name {name!r}", hint="a name like 'nightly' or 'dataset/collection/enc'")
        return Path(*[slug(p) for p in parts])

    def kind(self, kind: str) -> Optional[ArtifactKind]:
        if kind not in self.kinds:
            raise ConfigError(f"unknown artifact kind {kind!r}", hint=f"one of: {', '.join(self.kinds)}")
        return artifact_kind(kind, self.kinds[kind])

    def _marker(self, kind: str) -> Optional[str]:
        spec = _KINDS.get(kind)  # only a registered kind has a marker; never imported just for it
        return spec.marker if spec is not None else None

    def names(self, kind: Optional[str] = None) -> list[tuple[str, str]]:
        """(kind, name) of every slot with at least one version."""
        found = []
        for k in ([kind] if kind else list(self.kinds)):
            base = self.root / k
            if not base.is_dir():
                continue
            for versions in sorted(base.rglob(VERSIONS_DIR)):
                if versions.is_dir() and version_dirs(versions.parent):
                    found.append((k, versions.parent.relative_to(base).as_posix()))
        return found

    # -- reading
    def current_version(self, kind: str, name: str) -> Optional[str]:
        return current_version(self.slot(kind, name))

    def current_path(self, kind: str, name: str) -> Optional[Path]:
        """The current version's directory (None when nothing was promoted). Resolve it once and
        read from it: a later promotion publishes a new directory and leaves this one intact."""
        version = self.current_version(kind, name)
        return None if version is None else self.slot(kind, name) / VERSIONS_DIR / version

    def record(self, kind: str, name: str, version: Optional[str] = None) -> VersionRecord:
        slot = self.slot(kind, name)
        version = version or current_version(slot)
        if version is None:
            raise InputError(f"no current {kind.rstrip('s')} named {name!r}", path=slot,
                             hint="publish one first (e.g. `tava refresh`)")
        return read_record(slot, normalize_version(version), kind=kind, name=name)

    def versions(self, kind: str, name: str) -> list[VersionRecord]:
        slot = self.slot(kind, name)
        return [read_record(slot, p.name, kind=kind, name=name) for p in version_dirs(slot)]

    def history(self, kind: str, name: str) -> list[dict[str, Any]]:
        path = self.slot(kind, name) / HISTORY_FILE
        return read_json(path) if path.is_file() else []

    def listing(self, kind: Optional[str] = None) -> list[dict[str, Any]]:
        """One row per slot: kind, name, current version, versions kept, current metrics."""
        rows = []
        for k, name in self.names(kind):
            slot = self.slot(k, name)
            current = current_version(slot)
            versions = [p.name for p in version_dirs(slot)]
            metrics = read_record(slot, current, kind=k, name=name).metrics if current in versions else {}
            rows.append({"kind": k, "name": name, "current": current, "versions": versions,
                         "metrics": metrics, "path": str(slot)})
        return rows

    def load(self, kind: str, name: str, version: Optional[str] = None) -> Any:
        """The artifact of ``version`` (default: current) through its kind's registered loader."""
        spec = self.kind(kind)
        if spec is None or spec.load is None:
            raise ConfigError(f"artifact kind {kind!r} registered no loader",
                              hint="read the version directory (`current_path`) directly")
        return spec.load(Path(self.record(kind, name, version).path))

    # -- writing
    def publish(self, kind: str, name: str, source: str | Path | Callable[[Path], None], *,
                lineage: Optional[dict[str, Any]] = None, metrics: Optional[dict[str, Any]] = None,
                note: str = "", promote: bool = False, expected_current: Any = ANY_CURRENT, move: bool = False,
                lock_timeout: float = 10.0) -> VersionRecord:
        """Publish a new version from a directory (copied, or moved with ``move``) or a writer
        ``source(staging_dir)``; with ``promote``, also point ``current`` at it (compare-and-set
        against ``expected_current``: a stale candidate is refused *before* anything is written)."""
        slot = self.slot(kind, name)
        record = {"kind": kind, "name": name, "lineage": lineage or {}, "metrics": metrics or {}, "note": note}
        if not callable(source):
            source = Path(source)
            if not source.is_dir():
                raise InputError("artifact directory not found", path=source)
        # One critical section from the stale check to the pointer move; the slot functions
        # re-enter the lock this thread already holds.
        with slot_lock(slot, timeout=lock_timeout):
            if promote and expected_current is not ANY_CURRENT and current_version(slot) != expected_current:
                raise _stale(slot, current_version(slot), expected_current, "not published")
            with new_version(slot, record=record) as (version, staging):
                _fill(staging, source, move)
            if promote:
                set_current(slot, version, reason=note)
        if move and not callable(source):
            shutil.rmtree(source, ignore_errors=True)
        return self.record(kind, name, version)

    def promote(self, kind: str, name: str, version: str, *, expected_current: Any = ANY_CURRENT, reason: str = "",
                lock_timeout: float = 10.0) -> dict[str, Any]:
        return set_current(self.slot(kind, name), normalize_version(version), reason=reason,
                           expected_current=expected_current, lock_timeout=lock_timeout)

    def rollback(self, kind: str, name: str, *, to: Optional[str] = None, reason: str = "",
                 lock_timeout: float = 10.0) -> dict[str, Any]:
        """Point ``current`` back (to ``to`` or the previous version), checking the target loads."""
        slot = self.slot(kind, name)
        return {"kind": kind, "name": name, **rollback_slot(slot, to=to, check=lambda v: self.verify(kind, name, v),
                                                            reason=reason, lock_timeout=lock_timeout)}

    def verify(self, kind: str, name: str, version: str) -> None:
        """Raise unless the version's artifact loads (checked before ``current`` is moved to it)."""
        vdir = self.slot(kind, name) / VERSIONS_DIR / normalize_version(version)
        if not vdir.is_dir():
            raise InputError(f"no version {version}", path=vdir.parent.parent)
        spec = self.kind(kind)
        (spec.verify if spec is not None else verify_not_empty)(vdir)

    def prune(self, kind: str, name: str, keep: int) -> list[str]:
        return prune_slot(self.slot(kind, name), keep, marker=self._marker(kind))


def _fill(staging: Path, source: Path | Callable[[Path], None], move: bool) -> None:
    if callable(source):
        source(staging)
    elif move:
        for child in Path(source).iterdir():
            shutil.move(str(child), staging / child.name)
    else:
        shutil.copytree(source, staging, dirs_exist_ok=True)
