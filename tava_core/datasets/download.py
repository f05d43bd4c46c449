"""`tava data download NAME`: fetch a BEIR dataset zip, check its checksum, unpack atomically.

The archive streams to a temporary file (with a progress bar) while its md5 and sha256 are
computed; only when the checksum matches is it unpacked, into a temporary directory that is
then renamed to ``<out>/<name>``. Any failure (HTTP error, checksum mismatch, bad zip) leaves
nothing behind.
"""
from __future__ import annotations

import hashlib
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path
from typing import Mapping, Optional

from ..errors import InputError
from ..io import atomic_directory
from ..progress import progress_bar

BEIR_BASE_URL = "https://public.ukp.informatik.tu-darmstadt.de/thakur/BEIR/datasets"

# md5 of each archive as published in the BEIR repository's README ("Available Datasets").
BEIR_MD5: dict[str, str] = {
    "scifact": "5f7d1de60b170fc8027bb7898e2efca1",
    "nfcorpus": "a89dba18a62ef92f7d323ec890a0d38d",
    "fiqa": "17918ed23cd04fb15047f73e6c3bd9d9",
    "arguana": "8ad3e3c2a5867cdced806d6503f29b99",
    "scidocs": "38121350fc3a4d2f48850f6aff52e4a9",
    "trec-covid": "ce62140cb23feb9becf6270d0d1fe6d1",
    "quora": "18fb154900ba42a600f84b839c173167",
    "webis-touche2020": "46f650ba5a527fc69e0a6521c5a23563",
    "cqadupstack": "4e41456d7df8ee7760a7f866133bda78",
    "nq": "d4d3d2e48787a744b6f6e691ff534307",
    "hotpotqa": "f412724f78b0d91183a0e86805e16114",
    "dbpedia-entity": "c2a39eb420a3164af735795df012ac2c",
    "fever": "5a818580227bfb4b35bb6fa46d9b6c03",
    "climate-fever": "8b66f0a9126c521bae2bde127b4dc99d",
    "msmarco": "444067daf65d982533ea17ebd59501e4",
}


def _fetch(url: str, dest: Path, *, timeout: float, show_progress: bool) -> tuple[str, str]:
    """Stream ``url`` into ``dest``; returns (md5, sha256)."""
    md5, sha256 = hashlib.md5(), hashlib.sha256()
    try:
        response = urllib.request.urlopen(url, timeout=timeout)  # noqa: S310 - user-chosen URL
    except urllib.error.HTTPError as exc:
        raise InputError(f"download failed: HTTP {exc.code} {exc.reason}", path=url,
                         hint="check the dataset name (`tava data download --help` lists known ones) "
                              "and --base-url") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise InputError(f"download failed: {reason}", path=url,
                         hint="check the network connection and --base-url; offline, ingest a local "
                              "BEIR directory instead") from None
    total = int(response.headers.get("Content-Length") or 0) or None
    with response, open(dest, "wb") as handle, progress_bar(total=total, unit="B", unit_scale=True,
                                                    desc=Path(url).name, disable=not show_progress) as bar:
        while True:
            try:
                chunk = response.read(1 << 20)
            except OSError as exc:
                raise InputError(f"download interrupted ({exc})", path=url, hint="try again") from None
            if not chunk:
                break
            handle.write(chunk)
            md5.update(chunk)
            sha256.update(chunk)
            bar.update(len(chunk))
    return md5.hexdigest(), sha256.hexdigest()


def _safe_extract(archive: Path, target: Path) -> None:
    """Unzip, refusing members that would land outside ``target``."""
    root = target.resolve()
    try:
        with zipfile.ZipFile(archive) as zipped:
            for member in zipped.infolist():
                destination = (target / member.filename).resolve()
                if destination != root and root not in destination.parents:
                    raise InputError(f"archive member {member.filename!r} points outside the target",
                                     path=archive, hint="the archive is unsafe; do not use it")
            zipped.extractall(target)
    except zipfile.BadZipFile as exc:
        raise InputError(f"not a valid zip archive ({exc})", path=archive) from None


def download_beir(name: str, out_dir: str | Path = "datasets", *, base_url: str = BEIR_BASE_URL,
                  md5: Optional[str] = None, sha256: Optional[str] = None,
                  known_md5: Mapping[str, str] = BEIR_MD5, timeout: float = 60.0,
                  show_progress: bool = True, force: bool = False) -> Path:
    """Download ``{base_url}/{name}.zip``, verify it, unpack to ``<out_dir>/<name>``; returns that path.

    The checksum is ``sha256`` or ``md5`` if given, else the published md5 in ``known_md5``;
    a dataset with neither is refused (nothing unverified is unpacked).
    """
    if not name or "/" in name or name.startswith("."):
        raise InputError(f"invalid dataset name {name!r}", hint="give a BEIR name such as scifact")
    expected_md5 = (md5 or (None if sha256 else known_md5.get(name)) or "").lower() or None
    expected_sha = (sha256 or "").lower() or None
    if expected_md5 is None and expected_sha is None:
        raise InputError(f"no known checksum for {name!r}",
                         hint=f"known: {', '.join(sorted(known_md5))}; for another archive pass --md5 or --sha256")
    out_dir = Path(out_dir).expanduser().resolve()
    final = out_dir / name
    if final.exists() and not force:
        raise InputError("already downloaded", path=final, hint="ingest it with `tava ingest` or pass --force")
    out_dir.mkdir(parents=True, exist_ok=True)
    url = f"{base_url.rstrip('/')}/{name}.zip"
    with tempfile.TemporaryDirectory(prefix=f".{name}.download-", dir=out_dir) as scratch:
        archive = Path(scratch) / f"{name}.zip"
        got_md5, got_sha = _fetch(url, archive, timeout=timeout, show_progress=show_progress)
        if expected_sha and got_sha != expected_sha:
            raise InputError(f"sha256 mismatch: got {got_sha}, expected {expected_sha}", path=url,
                             hint="the download is damaged or the archive changed; nothing was unpacked")
        if expected_md5 and got_md5 != expected_md5:
            raise InputError(f"md5 mismatch: got {got_md5}, expected {expected_md5}", path=url,
                             hint="the download is damaged or the archive changed; nothing was unpacked")
        unpacked = Path(scratch) / "unpacked"
        unpacked.mkdir()
        _safe_extract(archive, unpacked)
        # BEIR zips hold one folder named like the dataset; accept a flat archive too.
        entries = [p for p in unpacked.iterdir() if not p.name.startswith(("__MACOSX", "."))]
        content = entries[0] if len(entries) == 1 and entries[0].is_dir() else unpacked
        with atomic_directory(final) as tmp:
            for item in content.iterdir():
                shutil.move(str(item), tmp / item.name)
    return final
