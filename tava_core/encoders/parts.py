"""Models shipped as split zip archives inside several PyPI packages, joined into one directory.

Some models are too big for one PyPI file, so they are published as N packages, each holding one
part (``<name>.zip.001`` ... ``.zip.00N``) of a single zip archive. ``assemble_model`` joins the
parts, unpacks one directory of the archive and checks it against known sha256 digests, all in a
temporary sibling that is renamed into place only once it verified — a reader never sees a half
or corrupted model. A stamp (``tava_assembly.json``, written last) records each file's size,
mtime and digest, so later loads re-hash only a file that changed since (then refuse it if its
digest no longer matches).
"""
from __future__ import annotations

import importlib.metadata
import os
import shutil
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Mapping, Sequence

from ..errors import IntegrityError, ModelLoadError
from ..io import atomic_directory, read_json, sha256_file, write_json

STAMP = "tava_assembly.json"


@dataclass(frozen=True)
class PartsModel:
    """Where a split model comes from and what it must hash to once assembled."""

    name: str                                # the directory name it is assembled under
    distributions: tuple[str, ...]           # PyPI packages, in part order
    archive_dir: str                         # the directory inside the zip that is the model
    expected_sha256: Mapping[str, str] = field(default_factory=dict)  # relative path -> sha256
    extra: str = ""                          # the tava extra that installs the packages

    @property
    def install_hint(self) -> str:
        target = f"tava[{self.extra}]" if self.extra else " ".join(self.distributions)
        return f"pip install '{target}'"


def installed_parts(model: PartsModel) -> list[Path]:
    """The part files of ``model``'s installed packages, in order (ModelLoadError if one is missing)."""
    parts: list[Path] = []
    for number, dist_name in enumerate(model.distributions, 1):
        try:
            dist = importlib.metadata.distribution(dist_name)
        except importlib.metadata.PackageNotFoundError:
            raise ModelLoadError(f"{model.name} needs the package {dist_name}, which is not installed",
                                 hint=model.install_hint) from None
        suffix = f".zip.{number:03d}"
        found = [f for f in (dist.files or []) if str(f).endswith(suffix)]
        if len(found) != 1:
            raise ModelLoadError(f"package {dist_name} holds {len(found)} files ending in {suffix} (expected 1)",
                                 hint=f"reinstall it: pip install --force-reinstall {dist_name}")
        parts.append(Path(str(dist.locate_file(found[0]))))
    return parts


def _join_parts(parts: Sequence[Path], out: Path) -> None:
    with open(out, "wb") as joined:
        for part in parts:
            if not part.is_file():
                raise ModelLoadError("model archive part not found", path=part,
                                     hint="reinstall the package that holds it")
            with open(part, "rb") as handle:
                shutil.copyfileobj(handle, joined, 1 << 22)


def _extract_dir(archive: zipfile.ZipFile, inner: str, dest: Path, source: Path) -> None:
    """Unpack the members under ``inner/`` into ``dest`` (member paths checked: no ``..``, no absolute)."""
    prefix = inner.strip("/") + "/"
    members = [m for m in archive.infolist() if m.filename.startswith(prefix) and not m.is_dir()]
    if not members:
        raise IntegrityError(f"the joined archive has no directory {inner!r}", path=source,
                             hint="the parts do not belong together: reinstall all of them at one version")
    for member in members:
        rel = PurePosixPath(member.filename[len(prefix):])
        if rel.is_absolute() or ".." in rel.parts:
            raise IntegrityError(f"unsafe path in the archive: {member.filename!r}", path=source)
        if rel.name == "desktop.ini":  # Windows folder metadata that rode along in the upload
            continue
        target = dest.joinpath(*rel.parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        with archive.open(member) as src, open(target, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 22)


def _file_records(directory: Path) -> dict[str, dict]:
    records = {}
    for path in sorted(p for p in directory.rglob("*") if p.is_file() and p.name != STAMP):
        stat = path.stat()
        records[path.relative_to(directory).as_posix()] = {
            "size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": sha256_file(path)}
    return records


def _check_expected(model: PartsModel, records: Mapping[str, dict], where: Path) -> None:
    for rel, digest in model.expected_sha256.items():
        record = records.get(rel)
        if record is None:
            raise IntegrityError(f"{model.name}: {rel} is missing", path=where,
                                 hint=f"delete {where} and load the model again to re-assemble it")
        if record["sha256"] != digest:
            raise IntegrityError(f"{model.name}: {rel} has sha256 {record['sha256'][:16]}..., expected "
                                 f"{digest[:16]}... (corrupted or a different release)", path=where / rel,
                                 hint=f"delete {where} and load the model again to re-assemble it; if that "
                                      f"fails too, reinstall the parts: {model.install_hint}")


def assemble_model(model: PartsModel, parts: Sequence[Path], dest: Path) -> Path:
    """Join ``parts`` into ``dest`` (atomically) and verify it; returns ``dest``."""
    dest = Path(dest)
    with atomic_directory(dest) as tmp:
        joined = tmp / ".joined.zip"
        _join_parts(parts, joined)
        try:
            with zipfile.ZipFile(joined) as archive:
                _extract_dir(archive, model.archive_dir, tmp, joined)
        except zipfile.BadZipFile as exc:
            raise IntegrityError(f"the joined parts are not a valid zip archive ({exc})",
                                 path=parts[0] if parts else None,
                                 hint=f"a part is truncated or missing: reinstall them ({model.install_hint})") from None
        finally:
            joined.unlink(missing_ok=True)
        records = _file_records(tmp)
        _check_expected(model, records, dest)
        write_json(tmp / STAMP, {"model": model.name, "parts": [p.name for p in parts], "files": records})
    return dest


def verify_assembly(model: PartsModel, directory: Path) -> None:
    """Refuse a directory that is not a complete, unmodified assembly (IntegrityError). A file whose
    size and mtime match the stamp is trusted; any other is re-hashed."""
    stamp_path = directory / STAMP
    if not stamp_path.is_file():
        raise IntegrityError(f"{model.name}: {directory} is not a finished assembly (no {STAMP})", path=directory,
                             hint=f"delete {directory} and load the model again to re-assemble it")
    recorded: dict[str, dict] = read_json(stamp_path).get("files", {})
    current: dict[str, dict] = {}
    for rel, record in recorded.items():
        path = directory / rel
        if not path.is_file():
            current[rel] = {"sha256": "missing"}
            continue
        stat = path.stat()
        unchanged = stat.st_size == record["size"] and stat.st_mtime_ns == record["mtime_ns"]
        current[rel] = record if unchanged else {"sha256": sha256_file(path)}
        if current[rel]["sha256"] != record["sha256"]:
            raise IntegrityError(f"{model.name}: {rel} changed since it was assembled", path=path,
                                 hint=f"delete {directory} and load the model again to re-assemble it")
    _check_expected(model, current, directory)


def models_cache_dir() -> Path:
    """Where assembled models live: $TAVA_MODELS_DIR, else ~/.cache/tava/models (shared by every tava
    home on the machine: a 400 MB model is assembled once, not once per run directory)."""
    chosen = os.environ.get("TAVA_MODELS_DIR") or (Path.home() / ".cache" / "tava" / "models")
    return Path(chosen).expanduser().resolve()


def ensure_model(model: PartsModel, cache_dir: Path | None = None) -> Path:
    """The verified directory of ``model``: assembled from its installed packages on first use."""
    directory = (cache_dir or models_cache_dir()) / model.name
    if not (directory / STAMP).is_file():
        assemble_model(model, installed_parts(model), directory)
    verify_assembly(model, directory)
    return directory


__all__ = ["PartsModel", "installed_parts", "assemble_model", "verify_assembly", "ensure_model",
           "models_cache_dir", "STAMP"]
