"""tava's artifact registry: the generic store (``tava_core.store``) rooted in the tava home, with
tava's artifact kinds. Layout::

    <home>/registry/<kind>/<name>/versions/00001/   one complete version (+ registry.json: lineage, metrics)
                                 /current           name of the version readers load
                                 /history.json      every move of ``current`` (promote, rollback)
                                 /lock              the slot's lock (tava_core.locks)
    <home>/artifacts/<kind>/<name>/                 plain outputs of `tava distill|adapt|compress`:
                                                    not versioned, never a registry slot

Homes made before the registry moved out of ``artifacts/`` keep working: a slot that exists only
at ``<home>/artifacts/<kind>/<name>`` (it has ``versions/``) is read and written there.

This module names each kind and the module that registers how its versions are verified and
loaded (``store.register_kind``); it imports none of them until a version must be checked, so the
kinds may import the registry without a cycle.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from .errors import ConfigError
from .home import TavaHome
from .locks import ResourceLockedError, file_lock
from .store import (  # noqa: F401
    ANY_CURRENT,
    CURRENT_FILE,
    HISTORY_FILE,
    LOCK_FILE,
    RECORD_FILE,
    VERSIONS_DIR,
    ArtifactStore,
    StalePromotionError,
    VersionRecord,
    current_version,
    new_version,
    prune_slot,
    read_record,
    rollback_slot,
    set_current,
    slot_lock,
    version_dirs,
)

# kind -> module that registers it (``store.register_kind``) when imported.
KIND_MODULES: dict[str, Optional[str]] = {
    "students": "tava_core.encoders.artifact_kind",
    "adapters": "tava_core.adapter.artifact_kind",
    "indexes": "tava_core.index",
}
KINDS = tuple(KIND_MODULES)
# a published adapter's own copy of the student it was trained on (a folder of its version; `tava run`)
BUNDLED_STUDENT = "student"

# Older names, kept for callers (the refresh flow, tests): one lock implementation underneath.
RegistryLockedError = ResourceLockedError
_ANY = ANY_CURRENT

__all__ = ["Registry", "RegistryLockedError", "StalePromotionError", "VersionRecord", "KINDS", "file_lock",
           "slot_lock", "current_version", "new_version", "set_current", "rollback_slot", "prune_slot",
           "read_record", "version_dirs"]


class Registry(ArtifactStore):
    """Named slots under ``<home>/registry/<kind>/<name>`` (legacy: ``<home>/artifacts/...``)."""

    def __init__(self, home: TavaHome | str | Path | None = None) -> None:
        self.home = home if isinstance(home, TavaHome) else TavaHome(home)
        super().__init__(self.home.registry, KIND_MODULES)
        self.legacy_root = self.home.artifacts

    def slot(self, kind: str, name: str) -> Path:
        relative = self.relative_name(kind, name)
        slot = self.root / kind / relative
        legacy = self.legacy_root / kind / relative
        if not slot.exists() and (legacy / VERSIONS_DIR).is_dir():
            return legacy  # a home from before the registry had its own root
        if (slot / "model.safetensors").is_file() or (slot / "modules.json").is_file():
            raise ConfigError(f"{slot} is a plain {kind.rstrip('s')} directory, not a registry slot", path=slot,
                              hint="move it out of the registry (plain outputs belong in <home>/artifacts), "
                                   "or publish it as a version: `Registry(home).publish(kind, name, DIR)`")
        return slot

    def names(self, kind: Optional[str] = None) -> list[tuple[str, str]]:
        found = super().names(kind)
        legacy = ArtifactStore(self.legacy_root, self.kinds).names(kind)
        return found + [entry for entry in legacy if entry not in found]
