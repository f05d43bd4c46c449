"""`tava calibrate-router`, `tava diagnose` and `tava evaluate --router`: options from the configs,
bad budgets refused before anything runs."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner


def test_calibrate_router_options_come_from_the_config():
    from flows.commands.route import cli

    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0, result.output
    for option in ("--student", "--dataset", "--reference", "--teacher-budget", "--target-agreement",
                   "--settings-signals", "--settings-vector-components", "--calibration-texts"):
        assert option in result.output


def test_calibrate_router_refuses_a_budget_outside_0_1():
    from flows.commands.route import cli

    result = CliRunner().invoke(cli, ["--student", "s", "--dataset", "d", "--teacher-budget", "1.5"])
    assert result.exit_code != 0
    assert "--teacher-budget" in result.output and "less than or equal to 1" in result.output


def test_diagnose_and_evaluate_router_options():
    from flows.commands.diagnose import cli as diagnose_cli
    from flows.commands.evaluate import cli as evaluate_cli

    result = CliRunner().invoke(diagnose_cli, ["--help"])
    assert result.exit_code == 0 and "--tangent-dim" in result.output and "--student" in result.output
    result = CliRunner().invoke(evaluate_cli, ["--help"])
    assert result.exit_code == 0 and "--router" in result.output


def test_unknown_signal_is_refused():
    from flows.commands.route import cli

    result = CliRunner().invoke(cli, ["--student", "s", "--dataset", "d", "--settings-signals", "vibes"])
    assert result.exit_code != 0 and "unknown signals" in result.output


def _record(output: str) -> dict:
    """The JSON record a command prints last."""
    return json.loads(output[output.rindex("\n{") + 1 if "\n{" in output else output.index("{"):])


@pytest.mark.slow
def test_calibrate_router_and_diagnose_run_their_flows_through_the_cli(prefect_harness, tava_home, tmp_path,
                                                                        static_student):
    import numpy as np
    from helpers import tiny_topic_beir

    from flows.cli import group
    from tava_core.evaluate.data import load_retrieval_data
    from tava_core.home import TavaHome
    from tava_core.route.router import load_router
    from tava_core.route.stored import calibration_views

    beir = tiny_topic_beir(tmp_path / "beir")
    env = {"TAVA_HOME": str(tava_home)}
    result = CliRunner().invoke(group, [
        "calibrate-router", "--student", str(static_student), "--dataset", str(beir), "--name", "tiny",
        "--teacher-budget", "0.25", "--calibration-texts", "40", "--max-reference-texts", "40",
        "--settings-bank-size", "32", "--settings-pca-dim", "8", "--settings-vector-components", "2"],
        env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    record = _record(result.output)
    assert record["directory"] == str(tava_home.resolve() / "artifacts" / "routers" / "tiny")
    router = load_router(record["directory"])
    # the saved threshold sends exactly the budget of the calibration texts (span views) to the teacher
    data = load_retrieval_data(str(beir), "test", TavaHome(tava_home))
    views = calibration_views(data.corpus_ids, data.document_texts, 40)
    routed = router.route(views)["routed"]
    assert abs(routed.mean() - 0.25) <= 1.0 / len(views) + 1e-9
    assert router.routed_share == pytest.approx(routed.mean())

    def diagnose(student: str, run: str) -> dict:
        out = CliRunner().invoke(group, ["diagnose", "--dataset", str(beir), "--student", student, "--run", run],
                                 env=env, catch_exceptions=False)
        assert out.exit_code == 0, out.output
        return _record(out.output)

    itself = diagnose("all-MiniLM-L6-v2", "teacher-itself")
    static = diagnose(str(static_student), "static")
    # the teacher against itself: identical neighbourhoods and tangent spaces; the static student less so
    assert itself["collections"]["corpus"]["knn_overlap"]["mean"] == pytest.approx(1.0)
    assert itself["collections"]["corpus"]["tangent_angle_degrees"]["mean"] < 1.0
    assert static["collections"]["corpus"]["knn_overlap"]["mean"] < 0.99
    report = json.loads(Path(static["files"]["json"]).read_text())
    assert report["query_ids"] == load_retrieval_data(str(beir), "test", TavaHome(tava_home)).query_ids
    assert Path(static["files"]["png"]).stat().st_size > 0 and np.isfinite(report["queries"]["neighbour_overlap"]["mean"])


@pytest.mark.slow
def test_evaluate_with_a_router_reuses_the_evaluations_query_vectors_and_speed_ratio(prefect_harness, tava_home,
                                                                                      tmp_path, router_dir,
                                                                                      static_student):
    """`tava evaluate --router`: when the evaluation timed the router's student beside the teacher, the routed
    mode reads both query vectors back and takes the teacher's cost from that ratio; when it did not time the
    student, the student is encoded and the teacher timed, as before."""
    from helpers import tiny_topic_beir

    from flows.evaluate import evaluate_flow
    from tava_core.config import EncoderSpec
    from tava_core.evaluate import EvalConfig

    beir = tiny_topic_beir(tmp_path / "beir")
    common = {"dataset": str(beir), "matryoshka_dims": [], "quantization": [], "run_mteb": False,
              "router": str(router_dir)}
    both = evaluate_flow(EvalConfig(adapted=EncoderSpec(model=str(static_student)), run="both", **common),
                         home=str(tava_home))
    routed = both.router
    assert routed is not None and routed["query_vectors"] == {"student": "reused", "teacher": "reused"}
    ratio = both.throughput["adapted"] / both.throughput["teacher"]
    assert routed["costs"]["teacher"] == pytest.approx(routed["costs"]["student"] * ratio)
    assert routed["teacher_cost"].startswith("the student's x")

    alone = evaluate_flow(EvalConfig(modes=["teacher/teacher"], run="teacher-only", **common), home=str(tava_home))
    assert alone.router is not None and alone.router["teacher_cost"] == "timed"
    assert alone.router["query_vectors"]["teacher"] == "reused"


def test_evaluate_router_prints_a_summary_of_the_routed_mode_not_its_whole_curves():
    from flows.commands.evaluate import router_summary

    def method(ndcg: float) -> dict:
        return {"ndcg10": ndcg, "top10_overlap_with_teacher": 0.9, "gap_recovered": 0.5}

    rows = [{"share": share, "router": method(0.6 + share), "random": method(0.6 + share / 2),
             "label_free_oracle": method(0.61 + share), "labelled_oracle": method(0.7),
             "router_vs_random": {"mean": 0.01, "low": 0.0, "high": 0.02}} for share in (0.0, 0.1)]
    curves = {"files": {"markdown": "/r/route.md"}, "student_ndcg10": 0.6, "teacher_ndcg10": 0.7, "rows": rows,
              "routed_share_at_threshold": 0.12, "costs": {"student": 1.0}, "warnings": ["another corpus"]}
    summary = router_summary(curves)
    assert summary["curve"] == [{"share": 0.0, "router": 0.6, "random": 0.6, "label_free_oracle": 0.61},
                                {"share": 0.1, "router": 0.7, "random": 0.65, "label_free_oracle": 0.71}]
    assert summary["files"] == {"markdown": "/r/route.md"} and summary["warnings"] == ["another corpus"]
    assert "costs" not in summary and summary["routed_share_at_threshold"] == 0.12
