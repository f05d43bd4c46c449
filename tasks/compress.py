"""Prefect tasks of `tava compress`: resolve (or encode) the vectors, train + save every method at
every dimension (cached on the vectors' checksums + config), publish the report as artifacts."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.context import TaskRunContext

from tasks import retry_unless_tava_error
from tava_core.compress.config import CompressConfig
from tava_core.compress.report import markdown_report, ndcg_table
from tava_core.compress.run import (base_encoder_spec, compressor_run_dir, default_name, fit_all,
                                    load_compression_data, resolve_vectors, save_run)
from tava_core.home import TavaHome, slug
from tava_core.io import read_json, sha256_file, stable_hash


@task(name="compress-resolve-vectors", task_run_name="vectors for compression", retries=1,
      retry_condition_fn=retry_unless_tava_error)
def resolve_vectors_task(config: CompressConfig, home: Optional[str] = None) -> dict[str, Any]:
    """Check qrels and dims, then find or encode (cached) the corpus and judged-query vectors."""
    home_ = TavaHome(home)
    sources = resolve_vectors(config, home_, show_progress=True)
    sources["name"] = default_name(config, sources)
    sources["out_dir"] = str(compressor_run_dir(home_, sources["name"]))
    return sources


def _weights_hash(out_dir: Path, methods: list[str], dims: list[int]) -> Optional[str]:
    files = [out_dir / f"{m}-{d}d" / "model.safetensors" for d in dims for m in methods]
    if not all(f.is_file() for f in files) or not (out_dir / "report.json").is_file():
        return None
    return stable_hash([sha256_file(f) for f in files])


def train_cache_key(context: TaskRunContext, parameters: dict[str, Any]) -> Optional[str]:
    """Reuse a finished run only while its output directory holds the same compressors."""
    config: CompressConfig = parameters["config"]
    sources = parameters["sources"]
    weights = _weights_hash(Path(sources["out_dir"]), config.methods, config.dims)
    if weights is None:
        return None
    return "compress-" + stable_hash([sources["checksum"], config.model_dump(mode="json"), sources["out_dir"], weights])


@task(name="compress-train", task_run_name="train compressors {sources[name]}", cache_key_fn=train_cache_key,
      persist_result=True)
def train_task(config: CompressConfig, sources: dict[str, Any], home: Optional[str] = None) -> dict[str, Any]:
    """Fit every method at every dimension and save compressors + report atomically; returns the record."""
    home_ = TavaHome(home)
    data = load_compression_data(config, sources, home_)
    run = fit_all(data, config, encoder=sources["encoder"], name=sources["name"], show_progress=True)
    save_run(run, sources["out_dir"], base_encoder=base_encoder_spec(config, sources["encoder"]))
    key = "test" if run.report["full_dimension"]["test"] else "validation"
    return {"name": sources["name"], "directory": sources["out_dir"], "method": config.method,
            "compressors": {f"{r.method}-{r.dim}d": str(Path(sources["out_dir"]) / f"{r.method}-{r.dim}d")
                            for r in run.results},
            "ndcg_at_10": {m: {str(d): round(v, 4) for d, v in by_dim.items()}
                           for m, by_dim in ndcg_table(run.report, key).items()},
            "full_dimension_ndcg_at_10": round(run.report["full_dimension"][key]["ndcg_at_10"], 4),
            "scored_on": key, "loadable_encoder": run.base_encoder is not None}


@task(name="compress-publish-report", task_run_name="publish compression report {record[name]}")
def publish_report_task(record: dict[str, Any]) -> None:
    """The report as a markdown artifact and nDCG@10 by method and dimension as a table artifact."""
    report = read_json(Path(record["directory"]) / "report.json")
    key = "compress-" + slug(record["name"]).lower().replace("_", "-").replace(".", "-")
    create_markdown_artifact(markdown_report(report), key=key + "-report", description=f"compressors {record['name']}")
    rows = [{"method": m, **{f"{d}-d": round(v, 4) for d, v in sorted(by_dim.items(), reverse=True)}}
            for m, by_dim in ndcg_table(report, record["scored_on"]).items()]
    rows.append({"method": "uncompressed", "full": record["full_dimension_ndcg_at_10"]})
    create_table_artifact(rows, key=key + "-ndcg", description=f"nDCG@10 ({record['scored_on']}) by dimension")
