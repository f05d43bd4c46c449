"""Manifold diagnostics between a student (+ adapter) and its teacher on the same texts.

- k-NN neighbourhood overlap (k = 10): for each text, the share of its k nearest neighbours
  (within the collection, itself excluded) that the two spaces have in common;
- principal angles between local tangent spaces: for each text, a local PCA (``tangent_dim``
  directions) of the same neighbourhood (the teacher's k nearest) in each space; the angles
  between the two subspaces (0 = same local geometry, 90 = unrelated);
- per query: the overlap of its k nearest documents in the student's and in the teacher's space.

The two spaces may differ in dimension: each local PCA is expressed over the neighbours (their
coordinates in the local basis), so a student in another space can be diagnosed too.
"""
from __future__ import annotations

import logging
from typing import Any, Optional

import numpy as np

from tava_core import linalg

log = logging.getLogger(__name__)


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)).astype(np.float32)


def neighbours(vectors: np.ndarray, k: int, *, chunk: int = 2048) -> np.ndarray:
    """(n, k) indices of each row's k nearest other rows by cosine."""
    v = _unit(vectors)
    k = min(k, len(v) - 1)
    out = np.empty((len(v), k), dtype=np.int64)
    for start in range(0, len(v), chunk):
        sims = v[start:start + chunk] @ v.T
        rows = np.arange(start, min(start + chunk, len(v)))
        sims[rows - start, rows] = -np.inf
        part = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(sims, part, axis=1), axis=1)
        out[start:start + len(rows)] = np.take_along_axis(part, order, axis=1)
    return out


def knn_overlap(student: np.ndarray, teacher: np.ndarray, k: int = 10) -> np.ndarray:
    """Per text: share of its k nearest neighbours common to both spaces."""
    a, b = neighbours(student, k), neighbours(teacher, k)
    return np.array([len(np.intersect1d(x, y)) / a.shape[1] for x, y in zip(a, b, strict=True)], dtype=np.float32)


def _local_basis(points: np.ndarray, dim: int) -> np.ndarray:
    centred = points - points.mean(axis=0)
    u, _, _ = linalg.svd(centred)
    return u[:, :dim]   # the tangent directions expressed over the neighbours (n_neighbours x dim)


def tangent_angles(student: np.ndarray, teacher: np.ndarray, k: int = 10, tangent_dim: int = 3,
                   neighbourhoods: Optional[np.ndarray] = None) -> np.ndarray:
    """Per text: mean principal angle (degrees) between the local tangent spaces of the two spaces.

    Each local PCA is expressed by its left singular vectors over the same neighbour set (the point
    and its teacher neighbours), which makes two spaces of different dimension comparable: the
    angles are those between the two subspaces of R^(k+1) that the neighbours' coordinates span."""
    idx = neighbourhoods if neighbourhoods is not None else neighbours(teacher, k)
    s, t = _unit(student), _unit(teacher)
    out = np.empty(len(s), dtype=np.float32)
    with linalg.one_blas_thread():   # once for the loop: three tiny factorisations a text
        for row in range(len(s)):
            members = np.concatenate([[row], idx[row]])
            dim = min(tangent_dim, len(members) - 1)
            us, ut = _local_basis(s[members], dim), _local_basis(t[members], dim)
            cosines = np.clip(linalg.svd(us.T @ ut, compute_uv=False), -1.0, 1.0)
            out[row] = float(np.degrees(np.arccos(cosines)).mean())
    return out


def query_neighbour_overlap(student_queries: np.ndarray, student_docs: np.ndarray, teacher_queries: np.ndarray,
                            teacher_docs: np.ndarray, k: int = 10) -> np.ndarray:
    """Per query: overlap of its k nearest documents in each space (each space's own documents)."""
    def top(q: np.ndarray, d: np.ndarray) -> np.ndarray:
        sims = _unit(q) @ _unit(d).T
        return np.argpartition(-sims, k - 1, axis=1)[:, :k]

    a, b = top(student_queries, student_docs), top(teacher_queries, teacher_docs)
    return np.array([len(np.intersect1d(x, y)) / k for x, y in zip(a, b, strict=True)], dtype=np.float32)


def summarise(values: np.ndarray) -> dict[str, float]:
    return {"mean": float(values.mean()), "median": float(np.median(values)), "p10": float(np.percentile(values, 10)),
            "p90": float(np.percentile(values, 90)), "n": int(len(values))}


def diagnose(collections: dict[str, tuple[np.ndarray, np.ndarray]], *, queries: Optional[tuple[np.ndarray, np.ndarray]] = None,
             query_docs: Optional[str] = None, k: int = 10, tangent_dim: int = 3) -> dict[str, Any]:
    """``collections``: name -> (student vectors, teacher vectors) of the same texts; ``queries``:
    (student, teacher) query vectors, compared over the documents of collection ``query_docs``."""
    report: dict[str, Any] = {"k": k, "tangent_dim": tangent_dim, "collections": {}, "per_text": {}}
    for name, (student, teacher) in collections.items():
        log.info("%s: k-NN overlap and tangent angles of %d texts (k %d, %d directions)", name, len(student), k,
                 tangent_dim)
        overlap = knn_overlap(student, teacher, k)
        angles = tangent_angles(student, teacher, k, tangent_dim)
        report["collections"][name] = {"knn_overlap": summarise(overlap), "tangent_angle_degrees": summarise(angles)}
        report["per_text"][name] = {"knn_overlap": overlap.tolist(), "tangent_angle_degrees": angles.tolist()}
    if queries is not None and query_docs is not None:
        docs_s, docs_t = collections[query_docs]
        log.info("scoring %d queries' top-%d agreement over the %d documents of %s", len(queries[0]), k, len(docs_s),
                 query_docs)
        overlap = query_neighbour_overlap(queries[0], docs_s, queries[1], docs_t, k)
        report["queries"] = {"neighbour_overlap": summarise(overlap)}
        report["per_text"]["queries"] = {"neighbour_overlap": overlap.tolist()}
        if queries[0].shape[1] == queries[1].shape[1]:   # a student outside the teacher's space has no cosine to it
            cos = np.sum(_unit(queries[0]) * _unit(queries[1]), axis=1)
            report["queries"]["cosine_to_teacher"] = summarise(cos)
            report["per_text"]["queries"]["cosine_to_teacher"] = cos.tolist()
    return report


def markdown(report: dict[str, Any]) -> str:
    lines = [f"k = {report['k']}, tangent spaces of {report['tangent_dim']} directions", "",
             "| collection | k-NN overlap mean | median | p10 | tangent angle mean (deg) | p90 |", "|---|---|---|---|---|---|"]
    for name, c in report["collections"].items():
        o, a = c["knn_overlap"], c["tangent_angle_degrees"]
        lines.append(f"| {name} | {o['mean']:.3f} | {o['median']:.3f} | {o['p10']:.3f} | {a['mean']:.1f} | {a['p90']:.1f} |")
    if "queries" in report:
        q = report["queries"]
        cosine = (f"cosine to the teacher's vector mean {q['cosine_to_teacher']['mean']:.3f}"
                  if "cosine_to_teacher" in q else "no cosine to the teacher's vectors (the student's have another dim)")
        lines += ["", f"Queries: top-{report['k']} document overlap mean {q['neighbour_overlap']['mean']:.3f} "
                      f"(p10 {q['neighbour_overlap']['p10']:.3f}); {cosine}."]
    return "\n".join(lines) + "\n"


def plot(report: dict[str, Any], path) -> None:  # noqa: ANN001
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .io import atomic_path

    per = report["per_text"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for name, values in per.items():
        key = "knn_overlap" if "knn_overlap" in values else "neighbour_overlap"
        axes[0].hist(values[key], bins=11, range=(0, 1), alpha=0.5, label=name)
        if "tangent_angle_degrees" in values:
            axes[1].hist(values["tangent_angle_degrees"], bins=30, range=(0, 90), alpha=0.5, label=name)
    axes[0].set_xlabel(f"k-NN overlap (k={report['k']})")
    axes[1].set_xlabel("mean principal angle between local tangent spaces (deg)")
    for ax in axes:
        ax.legend(fontsize=8)
        ax.set_ylabel("texts")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


# ----------------------------------------------------------------------------- config and run

from pydantic import Field  # noqa: E402

from .config import EncoderSpec, TavaModel, TeacherSpec  # noqa: E402


class DiagnoseConfig(TavaModel):
    """`tava diagnose`: where a student (+ adapter) and its teacher disagree on a dataset's geometry."""

    dataset: str = Field(..., description="Retrieval dataset (BEIR directory or ingested dataset).")
    split: str = Field("test", description="Split whose queries are diagnosed per query.")
    student: str = Field(..., description="Student (+ adapter) encoder, in the teacher's space or not.")
    teacher: TeacherSpec = Field(default_factory=EncoderSpec, description="Teacher encoder.")
    max_documents: int = Field(2000, ge=20, description="Corpus documents sampled (k-NN over them).")
    k: int = Field(10, ge=2, description="Neighbours per text.")
    tangent_dim: int = Field(3, ge=1, description="Directions of each local tangent space (local PCA).")
    run: Optional[str] = Field(None, description="Report name under <home>/reports/diagnose/; empty = dataset-split.")


def run_diagnose(config: DiagnoseConfig, home: Any = None,  # home: TavaHome | None
                 show_progress: bool = False) -> dict[str, Any]:
    """Encode a corpus sample and the split's queries with both encoders, diagnose, write
    report.json / report.md / diagnose.png under <home>/reports/diagnose/<run>/ (``show_progress``: a
    bar per encoding, which is most of the time)."""
    from pathlib import Path

    from .encoders import load_encoder
    from .evaluate.data import load_retrieval_data
    from .home import TavaHome, slug
    from .io import atomic_path, write_json

    home = home or TavaHome()
    data = load_retrieval_data(config.dataset, config.split, home)
    student, teacher = load_encoder(config.student, cache=False), load_encoder(config.teacher)
    docs = data.document_texts
    pick = np.sort(np.random.default_rng(0).choice(len(docs), size=min(config.max_documents, len(docs)),
                                                   replace=False))
    sample = [docs[i] for i in pick]
    log.info("encoding %d sampled documents of %s with the student %s and the teacher %s", len(sample), data.name,
             student.name, teacher.name)
    collections = {"corpus": (student.encode(sample, kind="document", show_progress=show_progress),
                              teacher.encode(sample, kind="document", show_progress=show_progress))}
    log.info("encoding the %d %s queries with the student and the teacher", len(data.query_texts), config.split)
    queries = (student.encode(data.query_texts, kind="query", show_progress=show_progress),
               teacher.encode(data.query_texts, kind="query", show_progress=show_progress))
    collections["queries"] = queries
    report = diagnose(collections, queries=queries, query_docs="corpus", k=config.k, tangent_dim=config.tangent_dim)
    report.update({"dataset": data.summary(), "student": student.info(), "teacher": teacher.info(),
                   "query_ids": data.query_ids, "document_sample": len(sample)})
    out = home.root / "reports" / "diagnose" / (config.run or slug(f"{data.name}-{config.split}"))
    out.mkdir(parents=True, exist_ok=True)
    plot(report, out / "diagnose.png")
    with atomic_path(out / "report.md") as tmp:
        Path(tmp).write_text(f"# tava diagnose: {student.name} vs {teacher.name} on {data.name} ({config.split})\n\n"
                             + markdown(report))
    write_json(out / "report.json", report)
    return {"directory": str(out), "collections": report["collections"], "queries": report.get("queries"),
            "files": {"json": str(out / "report.json"), "markdown": str(out / "report.md"),
                      "png": str(out / "diagnose.png")}}
