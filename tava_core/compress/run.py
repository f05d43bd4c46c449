"""The compression stage's steps (the flow ``flows/compress.py`` chains them):

    resolve_vectors  ->  train_compressors = load_compression_data -> fit_all (every method x every
    dim) -> save_run (compressors + report.json / report.md / ndcg.png, one atomic directory);
    an identical finished run is reused (tava_core.reuse)
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np

from ..errors import ConfigError, IntegrityError
from ..home import TavaHome, slug
from ..io import atomic_directory, sha256_file, stable_hash, write_vector_shard
from ..manifest import ShardRecord, VectorManifest, load_vector_manifest, read_vector_dir, save_manifest
from ..records import CompressionSources, CompressorRecord
from ..reuse import finished_record, run_key
from .config import LABELED_METHODS, CompressConfig
from .data import CompressionData, QuerySet, split_queries
from .io import write_compressor_files
from .report import markdown_report, plot_ndcg
from .trainer import MethodResult, evaluate_model, train_method


@dataclass
class CompressionRun:
    results: list[MethodResult]
    report: dict[str, Any]
    directory: Optional[Path] = None
    base_encoder: Optional[dict] = field(default=None)


# ------------------------------------------------------------------ inputs

def _splits(config: CompressConfig) -> list[str]:
    return list(dict.fromkeys([config.train_split] + ([config.eval_split] if config.eval_split else [])))


def load_splits(config: CompressConfig, home: TavaHome):
    """RetrievalData of the training split (and eval split); checks qrels ids before any vectors."""
    from ..errors import InputError
    from ..evaluate.data import load_retrieval_data

    out = {}
    for split in _splits(config):
        try:
            out[split] = load_retrieval_data(config.dataset, split, home)
        except InputError as exc:
            # the reader knows the splits; compress knows which option names this one
            option = "--train-split" if split == config.train_split else "--eval-split"
            raise InputError(exc.message, path=exc.path, line=exc.line,
                             hint=(f"{exc.hint}; " if exc.hint else "") + f"choose one with {option}"
                                  + (" (or --eval-split '' to score on the validation queries)"
                                     if option == "--eval-split" else "")) from None
    return out


def _encode_queries(splits: dict, encoder, home: TavaHome, show_progress: bool) -> Path:
    """Query vectors of the splits' queries by ``encoder`` in a vector directory (cached by content)."""
    from ..evaluate.vectors import vector_key

    first = next(iter(splits.values()))
    ids, texts = [], []
    for data in splits.values():
        for qid, text in zip(data.query_ids, data.query_texts, strict=False):
            if qid not in ids:
                ids.append(qid)
                texts.append(text)
    out_dir = home.vector_dir(vector_key(first.name, first.corpus_checksum, first.ingested), "queries-judged",
                              encoder.name, encoder.fingerprint)
    path = out_dir / "shard-00000.parquet"
    source = stable_hash([ids, texts], length=64)
    from ..embed import vector_shard_is_current

    if not vector_shard_is_current(path, fingerprint=encoder.fingerprint, source_sha256=source, kind="query"):
        vectors = encoder.encode(texts, kind="query", show_progress=show_progress)
        write_vector_shard(path, ids, vectors, metadata={"fingerprint": encoder.fingerprint, "source_sha256": source,
                                                         "kind": "query", "dim": encoder.dim, "encoder": encoder.name})
    save_manifest(out_dir, VectorManifest(dataset=first.name, collection="queries-judged", encoder=encoder.info(),
                                          dim=encoder.dim, normalized=encoder.normalized,
                                          shards=[ShardRecord(path=path.name, rows=len(ids), sha256=sha256_file(path),
                                                              source_sha256=source)]))
    return out_dir


def resolve_vectors(config: CompressConfig, home: TavaHome | None = None, *,
                    show_progress: bool = False) -> CompressionSources:
    """Vector directories of the corpus and the judged queries: the given ones, else encoded
    (cached) with ``config.encoder``. Returns paths and the encoder record, no arrays."""
    home = home or TavaHome()
    splits = load_splits(config, home)
    corpus_dir, query_dir = config.corpus_vectors, config.query_vectors
    if corpus_dir is None or query_dir is None:
        from ..encoders import load_encoder
        from ..evaluate.vectors import embed_corpus

        encoder = load_encoder(config.encoder)
        first = next(iter(splits.values()))
        if corpus_dir is None:
            corpus_dir = str(embed_corpus(first, encoder, home, show_progress=show_progress))
        if query_dir is None:
            query_dir = str(_encode_queries(splits, encoder, home, show_progress))
    corpus_manifest, query_manifest = load_vector_manifest(corpus_dir), load_vector_manifest(query_dir)
    if corpus_manifest.fingerprint != query_manifest.fingerprint:
        raise IntegrityError(f"corpus vectors ({corpus_manifest.encoder.get('name')}, "
                             f"{corpus_manifest.fingerprint[:12]}) and query vectors "
                             f"({query_manifest.encoder.get('name')}, {query_manifest.fingerprint[:12]}) come from "
                             "different encoders", path=query_dir, hint="embed both with the same encoder")
    too_big = [d for d in config.dims if d >= corpus_manifest.dim]
    if too_big:
        raise ConfigError(f"target dims {too_big} are not below the vectors' {corpus_manifest.dim} dimensions",
                          hint=f"choose dims below {corpus_manifest.dim}, e.g. {corpus_manifest.dim // 3}")
    return CompressionSources(
        corpus_vectors=str(corpus_dir), query_vectors=str(query_dir), encoder=corpus_manifest.encoder,
        dataset=next(iter(splits.values())).name,
        checksum=stable_hash([[s.sha256 for s in m.shards] for m in (corpus_manifest, query_manifest)]))


def _unit(vectors: np.ndarray, what: str, path: str) -> np.ndarray:
    if not np.isfinite(vectors).all():
        raise IntegrityError(f"{what} hold NaN or infinite values", path=path, hint="re-embed them")
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    if (norms < 1e-12).any():
        raise IntegrityError(f"{what} hold all-zero vectors", path=path, hint="re-embed them")
    return (vectors / norms).astype(np.float32)


def load_compression_data(config: CompressConfig, corpus_vectors: str, query_vectors: str,
                          home: TavaHome | None = None) -> CompressionData:
    """Arrays for training: corpus in corpus order, labeled train/validation queries, test queries."""
    home = home or TavaHome()
    splits = load_splits(config, home)
    first = next(iter(splits.values()))
    ids, vectors, _ = read_vector_dir(corpus_vectors)
    position = {d: i for i, d in enumerate(ids)}
    missing = [d for d in first.corpus_ids if d not in position]
    if missing:
        raise IntegrityError(f"{len(missing)} corpus documents have no vector (e.g. {missing[0]!r})",
                             path=corpus_vectors, hint="embed the whole corpus of this dataset")
    corpus = _unit(vectors[[position[d] for d in first.corpus_ids]], "corpus vectors", corpus_vectors)
    q_ids, q_vectors, _ = read_vector_dir(query_vectors)
    q_position = {q: i for i, q in enumerate(q_ids)}

    def query_set(data) -> QuerySet:
        absent = [q for q in data.query_ids if q not in q_position]
        if absent:
            raise IntegrityError(f"{len(absent)} {data.split} queries have no vector (e.g. {absent[0]!r})",
                                 path=query_vectors, hint="embed all queries of the dataset")
        return QuerySet(list(data.query_ids), _unit(q_vectors[[q_position[q] for q in data.query_ids]],
                                                    "query vectors", query_vectors), data.qrels)

    labeled = query_set(splits[config.train_split])
    train, validation = split_queries(labeled, config.validation_fraction, config.seed, config.max_labeled_queries)
    test = query_set(splits[config.eval_split]) if config.eval_split else None
    return CompressionData(first.corpus_ids, corpus, train, validation, test, unlabeled=labeled.vectors,
                           info={"dataset": first.name, "documents": len(corpus), "train_queries": len(train),
                                 "validation_queries": len(validation), "unlabeled_queries": len(labeled),
                                 "test_queries": len(test) if test else 0, "train_split": config.train_split,
                                 "eval_split": config.eval_split})


# ------------------------------------------------------------------ training and report

def fit_all(data: CompressionData, config: CompressConfig, *, encoder: Optional[dict] = None,
            name: str = "compressors", show_progress: bool = False) -> CompressionRun:
    """Every method of ``config.methods`` at every dim, evaluated side by side."""
    full_validation = evaluate_model(None, data.validation, data.corpus_ids, data.corpus)
    full_test = evaluate_model(None, data.test, data.corpus_ids, data.corpus) if data.test else None
    results, rows = [], []
    for dim in config.dims:
        for method in config.methods:
            result = train_method(method, dim, data, config, show_progress=show_progress)
            row = result.summary()
            row["labels"] = method in LABELED_METHODS
            if data.test is not None and full_test is not None:  # full_test exists whenever a test split does
                row["test"] = evaluate_model(result.model, data.test, data.corpus_ids, data.corpus)
                row["test_ndcg_ratio_to_full"] = row["test"]["ndcg_at_10"] / max(full_test["ndcg_at_10"], 1e-12)
            results.append(result)
            rows.append(row)
    report = {"name": name, "method": config.method, "dims": config.dims, "methods": config.methods,
              "encoder": encoder or {}, "input_dim": data.input_dim, "data": data.info,
              "full_dimension": {"validation": full_validation, "test": full_test},
              "results": rows, "config": config.model_dump(mode="json")}
    return CompressionRun(results=results, report=report)


def base_encoder_spec(config: CompressConfig, encoder_record: dict[str, Any]) -> Optional[dict]:
    """The EncoderSpec recorded in tava_encoder.json: ``config.encoder`` when the vectors are its own
    (encoded here, or a precomputed directory whose encoder name matches it), else none."""
    from ..encoders import ALIASES

    model = config.encoder.model
    name = str(encoder_record.get("name", ""))
    own = config.corpus_vectors is None or name in {model, Path(model).name}
    if not own:
        return None
    spec = config.encoder.model_dump(mode="json")
    if model not in ALIASES and Path(model).exists():
        spec["model"] = str(Path(model).resolve())
    return spec


def save_run(run: CompressionRun, directory: str | Path, *, base_encoder: Optional[dict] = None) -> Path:
    """Write every compressor (``<method>-<dim>d/``) and the report into ``directory``, atomically."""
    import json

    report = run.report
    with atomic_directory(directory) as tmp:
        for result, row in zip(run.results, report["results"], strict=False):
            metadata = {"lineage": {"encoder": report["encoder"], "data": report["data"]},
                        "metrics": {k: v for k, v in row.items() if k != "method"},
                        "config": report["config"]}
            write_compressor_files(tmp / f"{result.method}-{result.dim}d", result.model, metadata=metadata,
                                   base_encoder=base_encoder)
        (tmp / "report.json").write_text(json.dumps(report, indent=2, sort_keys=True, default=str) + "\n")
        (tmp / "report.md").write_text(markdown_report(report))
        plot_ndcg(report, tmp / "ndcg.png")
    run.directory = Path(directory)
    run.base_encoder = base_encoder
    return run.directory


def default_name(config: CompressConfig, sources: CompressionSources) -> str:
    return slug(config.name or f"{sources.dataset}-{sources.encoder.get('name', 'encoder')}")


def compressor_run_dir(home: TavaHome, name: str) -> Path:
    return home.artifacts / "compressors" / slug(name)


def compression_record(report: dict[str, Any], directory: Path, *, reused: bool) -> CompressorRecord:
    """The small record of a saved run, from its report."""
    from .report import ndcg_table

    key = "test" if report["full_dimension"]["test"] else "validation"
    return CompressorRecord(
        name=report["name"], directory=str(directory), method=report["method"], run_key=report["run_key"],
        compressors={f"{r['method']}-{r['dim']}d": str(directory / f"{r['method']}-{r['dim']}d")
                     for r in report["results"]},
        ndcg_at_10={m: {str(d): round(v, 4) for d, v in by_dim.items()}
                    for m, by_dim in ndcg_table(report, key).items()},
        full_dimension_ndcg_at_10=round(report["full_dimension"][key]["ndcg_at_10"], 4), scored_on=key,
        loadable_encoder=report.get("base_encoder") is not None, reused=reused)


def train_compressors(config: CompressConfig, sources: CompressionSources, home: TavaHome | None = None, *,
                      show_progress: bool = False) -> CompressorRecord:
    """Fit every method at every dimension and save compressors + report atomically under
    ``<home>/artifacts/compressors/<name>/``; an identical finished run there is reused."""
    home = home or TavaHome()
    name = default_name(config, sources)
    out = compressor_run_dir(home, name)
    key = run_key({"vectors": sources.checksum, "config": config.model_dump(mode="json")})
    weights = [f"{m}-{d}d/model.safetensors" for d in config.dims for m in config.methods]
    if (done := finished_record(out / "report.json", key, required=weights)) is not None:
        return compression_record(done, out, reused=True)
    data = load_compression_data(config, sources.corpus_vectors, sources.query_vectors, home)
    run = fit_all(data, config, encoder=sources.encoder, name=name, show_progress=show_progress)
    base = base_encoder_spec(config, sources.encoder)
    run.report.update(run_key=key, base_encoder=base)
    save_run(run, out, base_encoder=base)
    return compression_record(run.report, out, reused=False)
