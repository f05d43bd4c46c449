"""The nightly refresh with routing, through Prefect: each candidate gets a router recalibrated on
the new batch and published inside the same registry version; the gate compares routed nDCG@10;
a batch from another domain (docstrings after SciFact claims) raises the low-confidence share and
the record says so. Real teacher (MiniLM) and a real static student (its token embeddings)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest


def _scifact_eval(scifact: Path, out: Path, queries: int = 20, distractors: int = 80) -> Path:
    """A small BEIR set cut from SciFact's test split: ``queries`` judged queries, their documents
    and ``distractors`` more."""
    qrels = [line.split("\t") for line in (scifact / "qrels" / "test.tsv").read_text().splitlines()[1:]]
    picked = list(dict.fromkeys(q for q, _, _ in qrels))[:queries]
    relevant = {d for q, d, _ in qrels if q in picked}
    docs = [json.loads(line) for line in (scifact / "corpus.jsonl").open()]
    keep = [d for d in docs if d["_id"] in relevant] + [d for d in docs if d["_id"] not in relevant][:distractors]
    all_queries = {q["_id"]: q for q in map(json.loads, (scifact / "queries.jsonl").open())}
    (out / "qrels").mkdir(parents=True)
    (out / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in keep))
    (out / "queries.jsonl").write_text("".join(json.dumps(all_queries[q]) + "\n" for q in picked))
    (out / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(
        "\t".join(row) + "\n" for row in qrels if row[0] in picked))
    return out


def _claims(scifact: Path, n: int) -> list[str]:
    """SciFact train claims: the traffic the student first serves (never the evaluation queries)."""
    train = {line.split("\t")[0] for line in (scifact / "qrels" / "train.tsv").read_text().splitlines()[1:]}
    rows = [q for q in map(json.loads, (scifact / "queries.jsonl").open()) if q["_id"] in train]
    return [q["text"] for q in rows[:n]]


def _docstrings(n: int) -> list[str]:
    """Summary lines of click's public docstrings, as the built-in data makes its queries."""
    import click

    from tava_core.datasets.builtin import _module_docstrings, _python_files, clean_docstring, split_summary

    root = Path(click.__file__).parent
    out: list[str] = []
    for path in _python_files(root):
        for _, doc in _module_docstrings(path, "click." + path.stem):
            summary = split_summary(clean_docstring(doc))[0]
            if len(summary.split()) >= 4 and summary not in out:
                out.append(summary)
    assert len(out) >= n, f"only {len(out)} docstrings"
    return out[:n]


def _drop(zone: Path, name: str, texts: list[str]) -> None:
    zone.mkdir(parents=True, exist_ok=True)
    (zone / name).write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_refresh_publishes_router_with_adapter_gates_routed_and_reports_drift(
        prefect_harness, tava_home, tmp_path, static_student, scifact_dir):
    from flows.refresh import nightly_adapter_refresh
    from tava_core.config import EncoderSpec, IngestConfig
    from tava_core.encoders import load_encoder
    from tava_core.ingest.pipeline import ingest
    from tava_core.refresh import RefreshConfig, routed_set
    from tava_core.registry import Registry
    from tava_core.route.config import RouterSettings
    from tava_core.route.router import RoutedEncoder

    evaluation = ingest(IngestConfig(source=str(_scifact_eval(scifact_dir, tmp_path / "sf")), name="sf"),
                        tava_home).path
    zone = tmp_path / "dropzone"
    config = RefreshConfig(drop_zone=str(zone), student=EncoderSpec(model=str(static_student), device="cpu"),
                           teacher=EncoderSpec(device="cpu"), evaluation=[evaluation], max_steps=20,
                           batch_size=16, eval_every=10, warmup_steps=2, hidden_dims=[64], replay_pairs=50,
                           router_budget=0.2, router_calibration_texts=100, drift_texts=120,
                           router_settings=RouterSettings(bank_size=256, pca_dim=16, vector_components=4))
    registry = Registry(tava_home)

    # 1. SciFact-like traffic: a first adapter, its router calibrated on that batch, one version
    _drop(zone, "claims.jsonl", _claims(scifact_dir, 120))
    first = nightly_adapter_refresh(config, home=str(tava_home))
    assert first["status"] == "promoted", first["message"]
    version = registry.current_path("adapters", "nightly")
    router = load_encoder(str(version / "router"), cache=False)
    assert isinstance(router, RoutedEncoder) and router.threshold.value == 0.2
    # the published router is calibrated for exactly the published adapter (a moved directory)
    assert router.student.fingerprint == load_encoder(str(version), cache=False).fingerprint
    assert first["router"]["reference_texts"] == first["batch"]["rows"] and 90 <= first["router"]["calibration_texts"] <= 100
    assert registry.record("adapters", "nightly").lineage["router"]["budget"] == 0.2
    routed_row = {r["set"]: r for r in first["decision"]["rows"]}[routed_set(evaluation, 0.2)]
    assert routed_row["current"] is None and 0.0 < routed_row["candidate"] <= 1.0
    # no previous batch: the first night is measured against the router's own calibration share (its budget)
    assert first["drift"]["baseline"] == "calibration" and first["drift"]["previous_batch"] is None
    assert first["drift"]["previous_share"] == pytest.approx(0.2) and "calibration share" in first["drift"]["message"]
    assert first["drift"]["new_scored"] == f"span views of {first['batch']['rows']} texts"

    # 2. docstrings: another domain. Candidate and current are compared routed too (an impossible
    #    threshold keeps v1), and the current version's router sees the low-confidence share rise.
    _drop(zone, "docstrings.jsonl", _docstrings(120))
    second = nightly_adapter_refresh(config.model_copy(update={"threshold": -1.0}), home=str(tava_home))
    assert second["status"] == "kept", second["message"]
    rows = {r["set"]: r for r in second["decision"]["rows"]}
    routed_row = rows[routed_set(evaluation, 0.2)]
    assert routed_row["current"] == pytest.approx(first["routed"]["candidate"][evaluation], abs=1e-9)
    assert not routed_row["ok"] and "routed, 20% to teacher" in second["decision"]["why"]
    drift = second["drift"]
    assert drift["judged_by"] == "the current version's router" and drift["router"] == str(version / "router")
    assert drift["new_share"] > drift["previous_share"] + config.drift_tolerance
    assert drift["drifted"] and "rose" in drift["message"] and "Drift: low-confidence share rose" in second["message"]
    assert "**drift: low-confidence share rose" in Path(second["report"]).with_suffix(".md").read_text()
    assert drift["baseline"] == "previous batch" and "span views of 120 texts" in drift["message"]
    # the share is the router's own verdict on span views of the batch (cut as its calibration texts
    # were), the batch's documents in its bank: recompute it with the published router
    from tava_core.refresh import batch_drift_texts, batch_texts
    from tava_core.route.drift import low_confidence_share
    from tava_core.route.stored import calibration_views

    scored = batch_drift_texts(second["batch"], config.drift_texts, router.teacher.fingerprint)
    assert scored.documents is not None and len(scored.documents) == len(scored.texts) == 120
    assert scored.texts == calibration_views(*batch_texts(second["batch"]["path"]), config.drift_texts)
    assert drift["new_share"] == pytest.approx(low_confidence_share(router, scored.texts, documents=scored.documents))
    assert registry.current_version("adapters", "nightly") == "00001"


def test_routed_rows_join_the_gate_with_the_same_tolerance():
    from tava_core.refresh import RefreshConfig, compare, routed_set

    config = RefreshConfig(evaluation=["sf"], threshold=0.01, router_budget=0.1)
    plain_ok = {"sf": 0.50}
    routed = {"candidate": {"sf": 0.60}, "current": {"sf": 0.62}}
    worse = compare(config, plain_ok, {"sf": 0.50}, {}, routed)
    assert not worse["promote"]
    assert f"{routed_set('sf', 0.1)}: candidate 0.6000 < current 0.6200 - threshold 0.01" in worse["why"]
    assert "routed nDCG@10 at 10%" in worse["metric"]
    within = compare(config, plain_ok, {"sf": 0.50}, {}, {"candidate": {"sf": 0.615}, "current": {"sf": 0.62}})
    assert within["promote"]
    # a current version published without a router: the routed row is shown, not compared
    no_router = compare(config, plain_ok, {"sf": 0.50}, {}, {"candidate": {"sf": 0.1}, "current": None})
    assert no_router["promote"] and {r["set"]: r for r in no_router["rows"]}[routed_set("sf", 0.1)]["current"] is None
