"""The artifact registry: numbered versions per artifact, a ``current`` pointer, lineage, rollback.

One *slot* per artifact name; every kind (students, adapters, indexes) uses the same layout::

    <home>/artifacts/<kind>/<name>/versions/00001/   one complete version (its own files
                                        /registry.json + lineage: data, teacher, student, metrics)
                                  /current          name of the version readers load
                                  /history.json     every move of ``current`` (promote, rollback)
                                  /lock             fcntl lock file of the slot (short critical sections)

A version is assembled in a temporary sibling and renamed into place complete
(``io.atomic_directory``); ``current`` is replaced atomically (``io.atomic_path``). Allocating a
version number and moving ``current`` happen under the slot's fcntl lock, and promotion is a
compare-and-set (``expected_current``): two refreshes that trained from the same version cannot
both promote — the second finds ``current`` moved and is refused.

The slot-level functions work on any directory (``tava_core.index`` publishes FAISS versions
through them, also for index directories outside the home); ``Registry`` maps (kind, name) to
slots under ``<home>/artifacts``.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

from pydantic import BaseModel, Field

from .errors import ConfigError, InputError, IntegrityError, TavaError
from .home import TavaHome, slug
from .io import atomic_directory, atomic_path, read_json, write_json
from .manifest import now_iso

KINDS = ("students", "adapters", "indexes")
VERSIONS_DIR = "versions"
CURRENT_FILE = "current"
HISTORY_FILE = "history.json"
LOCK_FILE = "lock"
RECORD_FILE = "registry.json"
_VERSION_RE = re.compile(r"^\d{5,}$")
_ANY = object()  # expected_current not given: promote whatever is current


class RegistryLockedError(TavaError):
    """Another process holds the lock (a concurrent refresh, promotion or rollback)."""


class StalePromotionError(TavaError):
    """``current`` moved since the candidate was made from it (a concurrent refresh promoted first)."""


class VersionRecord(BaseModel):
    """What the registry knows about one version (``registry.json`` inside the version)."""

    kind: str = Field(description="students, adapters or indexes.")
    name: str = Field(description="Artifact name (the slot) within its kind.")
    version: str = Field(description="Zero-padded version number.")
    created: str = Field(default_factory=now_iso, description="UTC time the version was published.")
    lineage: dict[str, Any] = Field(default_factory=dict, description=(
        "Where it came from: data manifests, teacher and student (names + fingerprints), parent version."))
    metrics: dict[str, Any] = Field(default_factory=dict, description="Scores measured before publishing.")
    note: str = Field("", description="Free text (why it was made).")
    path: str = Field("", description="The version directory (filled when read).")
    current: bool = Field(False, description="Whether ``current`` points here (filled when read).")


# ----------------------------------------------------------------------------- locking

@contextlib.contextmanager
def file_lock(path: str | Path, *, timeout: float = 0.0, what: str = "the registry slot",
              poll: float = 0.1) -> Iterator[Path]:
    """Hold an exclusive ``fcntl.flock`` on ``path`` (created if missing).

    ``timeout`` 0 fails at once; > 0 waits that many seconds; < 0 waits forever. The lock file
    names the holder (pid, time) so the error can say who has it. The kernel drops the lock when
    the holder dies, so a crashed run never leaves a stale lock behind.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(path, "a+")
    deadline = None if timeout < 0 else time.monotonic() + timeout
    try:
        while True:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    raise
                if deadline is not None and time.monotonic() >= deadline:
                    handle.seek(0)
                    holder = handle.read().strip() or "another process"
                    raise RegistryLockedError(
                        f"{what} is locked by {holder}" + (f" (waited {timeout:.0f} s)" if timeout > 0 else ""),
                        path=path, hint="wait for that run to finish, or raise the lock timeout to queue "
                                        "behind it; a lock whose holder died is released by the kernel") from None
                time.sleep(poll)
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} since {now_iso()}\n")
        handle.flush()
        yield path
    finally:
        with contextlib.suppress(OSError):
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
        handle.close()


def slot_lock(slot: str | Path, *, timeout: float = 10.0) -> contextlib.AbstractContextManager:
    """The slot's lock (held only for short critical sections: numbering, pointer moves)."""
    return file_lock(Path(slot) / LOCK_FILE, timeout=timeout, what=f"registry slot {Path(slot).name}")


# ----------------------------------------------------------------------------- slot functions

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


def set_current(slot: str | Path, version: str, *, action: str = "promote", reason: str = "",
                expected_current: Any = _ANY, lock_timeout: float = 10.0) -> dict[str, Any]:
    """Point ``current`` at ``version`` under the slot lock (compare-and-set with ``expected_current``)."""
    slot = Path(slot)
    if not (slot / VERSIONS_DIR / version).is_dir():
        raise InputError(f"no version {version} here", path=slot,
                         hint=f"versions: {', '.join(p.name for p in version_dirs(slot)) or 'none'}")
    with slot_lock(slot, timeout=lock_timeout):
        before = current_version(slot)
        if expected_current is not _ANY and before != expected_current:
            raise StalePromotionError(
                f"current moved to version {before} while this candidate was made from "
                f"{expected_current or 'nothing'}; not promoted", path=slot,
                hint="another run promoted first: re-run so the candidate is trained and judged against "
                     "the new current version")
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
            to = f"{int(to):05d}" if str(to).isdigit() else str(to)
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
    """Delete the oldest versions beyond ``keep`` (never the current one); returns what was removed."""
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


# ----------------------------------------------------------------------------- the registry

class Registry:
    """Named slots under ``<home>/artifacts/<kind>/<name>``."""

    def __init__(self, home: TavaHome | str | Path | None = None) -> None:
        self.home = home if isinstance(home, TavaHome) else TavaHome(home)
        self.root = self.home.artifacts

    def slot(self, kind: str, name: str) -> Path:
        """The slot directory of ``name`` (index names may have several '/'-separated parts)."""
        if kind not in KINDS:
            raise ConfigError(f"unknown artifact kind {kind!r}", hint=f"one of: {', '.join(KINDS)}")
        parts = [p for p in str(name).strip("/").split("/") if p]
        if not parts or any(p in {".", ".."} for p in parts):
            raise ConfigError(f"invalid artifact name {name!r}", hint="a name like 'nightly' or 'dataset/collection/enc'")
        slot = self.root / kind / Path(*[slug(p) for p in parts])
        if (slot / "model.safetensors").is_file() or (slot / "modules.json").is_file():
            # `tava adapt` / `tava distill` write a plain artifact directory under the same root.
            raise ConfigError(f"{slot} is a plain {kind[:-1]} directory, not a registry slot", path=slot,
                              hint="use another registry name (or register that directory as a version)")
        return slot

    def names(self, kind: Optional[str] = None) -> list[tuple[str, str]]:
        """(kind, name) of every slot with at least one version."""
        found = []
        for k in ([kind] if kind else KINDS):
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
        """The current version's directory (None when nothing was promoted)."""
        version = self.current_version(kind, name)
        return None if version is None else self.slot(kind, name) / VERSIONS_DIR / version

    def record(self, kind: str, name: str, version: Optional[str] = None) -> VersionRecord:
        slot = self.slot(kind, name)
        version = version or current_version(slot)
        if version is None:
            raise InputError(f"no current {kind[:-1]} named {name!r}", path=slot,
                             hint="publish one first (e.g. `tava refresh`)")
        return read_record(slot, f"{int(version):05d}" if str(version).isdigit() else version, kind=kind, name=name)

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

    # -- writing
    def publish(self, kind: str, name: str, source: str | Path | Callable[[Path], None], *,
                lineage: Optional[dict[str, Any]] = None, metrics: Optional[dict[str, Any]] = None,
                note: str = "", promote: bool = False, expected_current: Any = _ANY, move: bool = False,
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
        with slot_lock(slot, timeout=lock_timeout):
            if promote and expected_current is not _ANY and current_version(slot) != expected_current:
                raise StalePromotionError(
                    f"current moved to version {current_version(slot)} while this candidate was made from "
                    f"{expected_current or 'nothing'}; not published", path=slot,
                    hint="another run promoted first: re-run to train and judge against the new current version")
            # Re-entrant use of the lock from the same thread would deadlock: publish and promote
            # below use the lock-free inner steps.
            version = _next_version(slot)
            with atomic_directory(slot / VERSIONS_DIR / version) as staging:
                if callable(source):
                    source(staging)
                elif move:
                    for child in Path(source).iterdir():
                        shutil.move(str(child), staging / child.name)
                else:
                    shutil.copytree(source, staging, dirs_exist_ok=True)
                write_json(staging / RECORD_FILE, {**record, "version": version, "created": now_iso()})
            if promote:
                before = current_version(slot)
                _move_current(slot, version, {"action": "promote", "from": before, "reason": note})
        if move and not callable(source):
            shutil.rmtree(source, ignore_errors=True)
        return self.record(kind, name, version)

    def promote(self, kind: str, name: str, version: str, *, expected_current: Any = _ANY, reason: str = "",
                lock_timeout: float = 10.0) -> dict[str, Any]:
        version = f"{int(version):05d}" if str(version).isdigit() else version
        return set_current(self.slot(kind, name), version, reason=reason, expected_current=expected_current,
                           lock_timeout=lock_timeout)

    def rollback(self, kind: str, name: str, *, to: Optional[str] = None, reason: str = "",
                 lock_timeout: float = 10.0) -> dict[str, Any]:
        """Point ``current`` back (to ``to`` or the previous version), checking the target loads."""
        slot = self.slot(kind, name)
        return {"kind": kind, "name": name, **rollback_slot(slot, to=to, check=lambda v: self.verify(kind, name, v),
                                                            reason=reason, lock_timeout=lock_timeout)}

    def verify(self, kind: str, name: str, version: str) -> None:
        """Raise unless the version's artifact loads (checked before ``current`` is moved to it)."""
        vdir = self.slot(kind, name) / VERSIONS_DIR / version
        if kind == "indexes":
            from .index import load_index

            load_index(vdir.parent.parent, version=version)
        elif kind == "adapters":
            from .adapter.io import load_adapter

            load_adapter(vdir)
        elif not [p for p in vdir.iterdir() if p.name != RECORD_FILE]:
            raise IntegrityError("version directory is empty", path=vdir)
        elif kind == "students" and ((vdir / "modules.json").is_file() or (vdir / "config.json").is_file()
                                     or (vdir / "tava_encoder.json").is_file()):
            from .encoders import load_encoder

            load_encoder(str(vdir), cache=False)

    def prune(self, kind: str, name: str, keep: int) -> list[str]:
        return prune_slot(self.slot(kind, name), keep)
