"""The routers bench/route_fastpath.py times: a static student of all-MiniLM-L6-v2 and real routers
over SciFact, built from as little teacher encoding as a shared 2-core machine allows.

What a routed static query costs depends on shapes (the student's table and tokenizer, the
signal model's heads, banks and document bank), not on how well the student was trained
(bench/route.py's --student-dir note), so the student here is Stage A's instant start: the
teacher's own input token embeddings as a model2vec table (bench/route.py's "te0": 30,522 x 384,
the teacher's WordPiece tokenizer, like the model2vec start of the trained students). The
signals are fitted on 2,000 generic passages (setting a's kind of training text) with their
teacher vectors; the document bank is the teacher's vectors of all 5,183 SciFact documents, cut
at 24 tokens (title and first words: the teacher gets ~10% of a core on this machine, and the
bank's shape, hence its cost, is the full bank's either way); the combiner is calibrated on 1,000 span views of the corpus (seed 1234) against the
true top-10 agreement, as `tava calibrate-router` does. Everything is cached under
.tava/route-fastpath/ (teacher vectors by content).
"""
from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from bench.shared_data import PASSAGES, ROOT, SCIFACT

CACHE = ROOT / ".tava" / "route-fastpath"
REFERENCE_PASSAGES = 2000
CALIBRATION_SPANS = 1000
DOCUMENT_TOKENS = 24


@dataclass
class Fixture:
    student_dir: Path
    reference_texts: list[str]
    reference_teacher: np.ndarray
    documents: np.ndarray              # teacher vectors of the SciFact corpus
    calibration_texts: list[str]
    calibration_teacher: np.ndarray
    dev_queries: list[str]             # SciFact train queries: profiling and tuning
    test_queries: list[str]            # SciFact test queries: the reported measurement


def static_student(teacher_dir: Path) -> Path:
    """The teacher's input token embeddings + tokenizer as a model2vec directory (Stage A's
    token-embedding start; tests/route/conftest.py builds the same student)."""
    from safetensors.numpy import load_file, save_file

    out = CACHE / "student-te0"
    if (out / "config.json").is_file():
        return out
    tmp = CACHE / "student-te0.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    table = load_file(str(teacher_dir / "model.safetensors"))["embeddings.word_embeddings.weight"]
    save_file({"embeddings": np.ascontiguousarray(table, dtype=np.float32)}, str(tmp / "model.safetensors"))
    shutil.copy(teacher_dir / "tokenizer.json", tmp / "tokenizer.json")
    (tmp / "config.json").write_text(json.dumps({"model_type": "model2vec", "normalize": True}))
    os.replace(tmp, out)
    return out


def teacher_vectors(teacher, texts: Sequence[str], tag: str, kind: str) -> np.ndarray:
    """The teacher's vectors of ``texts``, cached on disk by content."""
    digest = hashlib.sha256(("\x1f".join(texts) + kind + teacher.fingerprint).encode()).hexdigest()[:16]
    path = CACHE / f"{tag}-{len(texts)}-{digest}.npy"
    if path.is_file():
        return np.load(path)
    print(f"teacher: {len(texts)} {tag} texts ...", flush=True)
    vectors = teacher.encode(list(texts), kind=kind, show_progress=False)
    CACHE.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npy")
    np.save(tmp, vectors)
    os.replace(tmp, path)
    return vectors


def first_passages(n: int) -> list[str]:
    texts = []
    with gzip.open(PASSAGES, "rt") as handle:
        for line in handle:
            texts.append(json.loads(line)["text"])
            if len(texts) == n:
                break
    return texts


def build_fixture() -> Fixture:
    from tava_core.config import EncoderSpec
    from tava_core.distill.spans import make_spans
    from tava_core.encoders import load_encoder, resolve_model_path
    from tava_core.evaluate.data import load_beir_directory

    CACHE.mkdir(parents=True, exist_ok=True)
    teacher = load_encoder("all-MiniLM-L6-v2")
    short_teacher = load_encoder(EncoderSpec(model="all-MiniLM-L6-v2", max_length=DOCUMENT_TOKENS), cache=False)
    student_dir = static_student(resolve_model_path("all-MiniLM-L6-v2"))
    dev, test = load_beir_directory(SCIFACT, "train"), load_beir_directory(SCIFACT, "test")
    reference = first_passages(REFERENCE_PASSAGES)
    ids, spans = make_spans(dev.corpus_ids, dev.document_texts, 1, seed=1234)
    pick = sorted(np.random.default_rng(1234).choice(len(spans), size=CALIBRATION_SPANS, replace=False))
    calibration = [spans[i] for i in pick]
    return Fixture(
        student_dir=student_dir, reference_texts=reference,
        reference_teacher=teacher_vectors(teacher, reference, "reference", "document"),
        documents=teacher_vectors(short_teacher, dev.document_texts, "scifact-corpus", "document"),
        calibration_texts=calibration,
        calibration_teacher=teacher_vectors(teacher, calibration, "calibration", "query"),
        dev_queries=list(dev.query_texts), test_queries=list(test.query_texts))
