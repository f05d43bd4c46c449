"""The ONNX export cache: one graph per encoder fingerprint under ``<home>/cache/onnx``.

    <home>/cache/onnx/<encoder>-<fingerprint>/model.onnx    the graph (weights inside)
                                            /export.json   written last: fingerprint, sha256 of
                                                           model.onnx, agreement with torch, verdict

A cached graph is used only when ``export.json`` names this fingerprint and export format and
the file's sha256 matches it: anything else (a half-written, truncated or edited file, an older
format) is rebuilt, never trusted. The agreement check runs at export time: if the graph's
vectors differ from torch's by more than ``TOLERANCE`` on any coordinate of a sample, the
verdict is "refused" (also cached, so the export is not retried on every load) and the encoder
stays on torch, so vectors — and their fingerprint — never change with the backend.
"""
from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import numpy as np

from ..config import resolve_home
from ..errors import ModelLoadError
from ..home import slug
from ..io import read_json, sha256_file, write_json

if TYPE_CHECKING:
    from ..encoders.onnx_backend import OnnxSession
    from ..encoders.transformer import TransformerEncoder

log = logging.getLogger(__name__)

TOLERANCE = 1e-4          # max |diff| per coordinate between the ONNX graph and torch
# bump when the exported graph changes (2: eager attention, fused; 3: unfused; 4: BERT attention fused,
# nothing else): old entries are stale
EXPORT_FORMAT = 4
GRAPH_NAME = "model.onnx"
RECORD_NAME = "export.json"

# Sample for the agreement check: short and long, punctuation, digits, non-ASCII, and one text
# longer than any max length (truncation must agree too).
AGREEMENT_TEXTS = [
    "what is tava?",
    "A student model learns to put texts where the teacher puts them.",
    "Mitochondrial DNA mutations accumulate with age in human skeletal muscle (p < 0.05, n = 312).",
    "Ünïcode, émojis 🙂 and CJK 文字 go through the same tokenizer.",
    "x",
    "retrieval " * 600,
    "The quick brown fox jumps over the lazy dog. " * 8,
    "Embeddings of queries and documents are compared by cosine similarity after L2 normalisation.",
]

_sha_cache: dict[tuple[str, int, int], str] = {}
_export_lock = threading.Lock()  # one export at a time per process (threads of a shard pool)


def cache_root(home: Optional[str | Path] = None) -> Path:
    return resolve_home(home) / "cache" / "onnx"


def entry_dir(name: str, fingerprint: str, home: Optional[str | Path] = None) -> Path:
    return cache_root(home) / f"{slug(name)}-{fingerprint}"


def _sha256(path: Path) -> str:
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if key not in _sha_cache:
        _sha_cache[key] = sha256_file(path)
    return _sha_cache[key]


def valid_record(directory: Path, fingerprint: str) -> Optional[dict[str, Any]]:
    """The entry's record when it can be trusted for ``fingerprint``, else None (and why is logged)."""
    record_file, graph_file = directory / RECORD_NAME, directory / GRAPH_NAME
    if not record_file.is_file():
        return None
    try:
        record = read_json(record_file)
    except Exception:  # noqa: BLE001 - a damaged record is simply rebuilt
        log.warning("ONNX cache record %s is damaged; rebuilding", record_file)
        return None
    if not isinstance(record, dict) or record.get("fingerprint") != fingerprint \
            or record.get("format") != EXPORT_FORMAT:
        log.warning("ONNX cache entry %s is stale (other fingerprint or export format); rebuilding", directory)
        return None
    if record.get("verdict") == "refused":
        return record
    if not graph_file.is_file() or _sha256(graph_file) != record.get("sha256"):
        log.warning("ONNX graph %s is missing or does not match its sha256 in %s; rebuilding",
                    graph_file, RECORD_NAME)
        return None
    return record


def measure_agreement(encoder: "TransformerEncoder", session: "OnnxSession",
                      texts: list[str]) -> dict[str, float]:
    """Max |diff| and min cosine between the torch path and the session on ``texts``."""
    import torch

    with torch.inference_mode():
        reference = encoder.forward_torch(texts)
    features = encoder.tokenize(texts)
    candidate = session.run(features["input_ids"], features["attention_mask"])
    diff = float(np.abs(reference - candidate).max())
    cos = np.sum(reference * candidate, axis=1) / (
        np.linalg.norm(reference, axis=1) * np.linalg.norm(candidate, axis=1) + 1e-12)
    return {"max_abs_diff": diff, "min_cosine": float(cos.min()), "texts": len(texts)}


def _export(encoder: "TransformerEncoder", directory: Path, home: Optional[str | Path]) -> dict[str, Any]:
    from ..encoders.onnx_backend import OnnxSession
    from .graph import EncoderGraph, export_graph, fuse_attention

    started = time.perf_counter()
    graph = EncoderGraph(encoder.model, encoder.dense, pooling=encoder.pooling, normalize=encoder.normalized)
    directory.mkdir(parents=True, exist_ok=True)
    record: dict[str, Any] = {"format": EXPORT_FORMAT, "fingerprint": encoder.fingerprint,
                              "encoder": encoder.name, "model_dir": str(encoder.directory),
                              "tolerance": TOLERANCE}
    final = directory / GRAPH_NAME
    tmp = directory / f".{GRAPH_NAME}.tmp-{uuid.uuid4().hex[:8]}"
    fused_tmp = tmp.with_name(tmp.name + "-fused")
    try:
        export_graph(graph, tmp, vocab_size=len(encoder.tokenizer))
        record["attention_fused"] = fuse_attention(tmp, fused_tmp, getattr(encoder.model, "config", None))
        candidate = fused_tmp if record["attention_fused"] else tmp
        agreement = measure_agreement(encoder, OnnxSession(candidate), AGREEMENT_TEXTS)
        if record["attention_fused"] and not agreement["max_abs_diff"] <= TOLERANCE:
            # the fused kernel's arithmetic is the one thing fusion changes: fall back to the plain graph
            log.warning("%s: the attention-fused graph differs from torch by %.2e; using the plain graph",
                        encoder.name, agreement["max_abs_diff"])
            record["attention_fused"], candidate = 0, tmp
            agreement = measure_agreement(encoder, OnnxSession(candidate), AGREEMENT_TEXTS)
        record["agreement"] = agreement
        if agreement["max_abs_diff"] <= TOLERANCE:
            record["verdict"] = "accepted"
            record["sha256"] = sha256_file(candidate)
            os.replace(candidate, final)
        else:  # also NaN: a graph that cannot be shown to agree is not used
            record["verdict"] = "refused"
            final.unlink(missing_ok=True)
    finally:
        tmp.unlink(missing_ok=True)
        fused_tmp.unlink(missing_ok=True)
    record["export_seconds"] = round(time.perf_counter() - started, 2)
    write_json(directory / RECORD_NAME, record)  # last: the entry exists only once this is written
    return record


def onnx_session_for(encoder: "TransformerEncoder", *, home: Optional[str | Path] = None) -> Optional["OnnxSession"]:
    """An ONNX Runtime session computing ``encoder``'s vectors, or None when the encoder must stay
    on torch (cannot be exported, or the graph disagrees with torch); each None is warned once."""
    from ..encoders.onnx_backend import OnnxSession

    directory = entry_dir(encoder.name, encoder.fingerprint, home)
    with _export_lock:
        record = valid_record(directory, encoder.fingerprint)
        if record is None:
            try:
                record = _export(encoder, directory, home)
            except ModelLoadError as exc:
                log.warning("%s: %s; encoding with torch instead", encoder.name, exc)
                return None
            log.info("exported %s to ONNX in %.1fs (max |diff| %.2e)", encoder.name, record["export_seconds"],
                     record["agreement"]["max_abs_diff"])
    if record.get("verdict") != "accepted":
        log.warning("%s: the ONNX graph differs from torch by %.2e > %.0e on the agreement sample "
                    "(see %s); encoding with torch instead", encoder.name,
                    record.get("agreement", {}).get("max_abs_diff", float("nan")), TOLERANCE,
                    directory / RECORD_NAME)
        return None
    return OnnxSession(directory / GRAPH_NAME)
