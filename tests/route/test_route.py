"""Confidence routing: signals, calibration, curves, the router directory and its encoder."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from helpers import tiny_topic_beir
from route_helpers import TEXTS

from tava_core.config import EncoderSpec
from tava_core.errors import ConfigError, ModelLoadError
from tava_core.route.calibrate import fit_calibration, spearman, true_agreement
from tava_core.route.curves import route_lowest, routing_curves
from tava_core.route.router import check_budget
from tava_core.route.signals import compute_signals, fit_signal_model


def _unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _clusters(seed=0, n=300, d=24):
    """Two low-rank clouds (like embeddings: most variance in few directions), in different directions."""
    rng = np.random.default_rng(seed)
    basis = np.linalg.qr(rng.normal(size=(d, d)))[0]
    a = 3.0 * basis[0] + rng.normal(size=(n, 5)) @ basis[1:6] + 0.05 * rng.normal(size=(n, d))
    b = 3.0 * basis[12] + rng.normal(size=(n, 5)) @ basis[13:18] + 0.05 * rng.normal(size=(n, d))
    return rng, a, b


def test_knn_distance_and_rare_words_flag_what_training_never_showed():
    rng, seen, unseen = _clusters()
    texts = [f"alpha beta gamma {i % 7}" for i in range(len(seen))]
    model = fit_signal_model(texts, seen, seen + 0.1 * rng.normal(size=seen.shape), bank_size=200, pca_dim=8)
    on = compute_signals(model, ["alpha beta"] * 50, seen[:50] + 0.01)
    off = compute_signals(model, ["zeta omega"] * 50, unseen[:50])
    assert off["knn_distance"].mean() > on["knn_distance"].mean() + 0.2
    assert on["rare_word_share"].max() == 0.0 and off["rare_word_share"].min() == 1.0
    assert on["length"][0] == 2


def test_head_disagreement_is_larger_off_the_training_pairs():
    rng = np.random.default_rng(1)
    d = 16
    # training pairs span only half the input space: heads fitted on halves disagree elsewhere
    s = np.zeros((400, d))
    s[:, :8] = rng.normal(size=(400, 8))
    s[:, 8:] = 0.01 * rng.normal(size=(400, 8))
    t = s @ rng.normal(size=(d, d)) + 0.5 * rng.normal(size=(400, d))
    model = fit_signal_model(["x"] * 400, s, t, n_heads=6, alpha=1e-3, bank_size=64, pca_dim=4)
    inside = np.zeros((50, d)); inside[:, :8] = rng.normal(size=(50, 8))
    outside = np.zeros((50, d)); outside[:, 8:] = rng.normal(size=(50, 8))
    sig_in = compute_signals(model, ["x"] * 50, inside, ["head_disagreement"])["head_disagreement"]
    sig_out = compute_signals(model, ["x"] * 50, outside, ["head_disagreement"])["head_disagreement"]
    assert sig_out.mean() > 3 * sig_in.mean()


def test_true_agreement_is_one_for_identical_vectors_and_drops_with_noise():
    rng = np.random.default_rng(2)
    docs = rng.normal(size=(200, 16))
    teacher = rng.normal(size=(40, 16))
    same = true_agreement(teacher, teacher, docs)
    assert np.allclose(same["cosine"], 1.0, atol=1e-5) and np.all(same["overlap"] == 1.0)
    noisy = true_agreement(teacher + 2.0 * rng.normal(size=teacher.shape), teacher, docs)
    assert noisy["overlap"].mean() < 0.6 and noisy["cosine"].mean() < 0.8


def test_calibration_learns_an_informative_signal_and_its_budget_quantiles():
    rng, seen, unseen = _clusters(3)
    texts = ["w"] * len(seen)
    teacher_seen = seen.copy()
    model = fit_signal_model(texts, seen, teacher_seen, bank_size=300, pca_dim=8)
    # calibration texts: a mix; the student is good on the seen cluster, poor off it
    mix = np.concatenate([seen[:100] + 0.05 * rng.normal(size=(100, seen.shape[1])), unseen[:100]])
    truth = np.concatenate([seen[:100], unseen[:100] + 1.5 * rng.normal(size=(100, seen.shape[1]))])
    docs = np.concatenate([seen[100:], unseen[100:]])
    agreement = true_agreement(mix, truth, docs)
    calibration = fit_calibration(model, ["w"] * 200, mix, agreement, signals=["knn_distance", "length"])
    from tava_core.route.calibrate import confidence

    scores = confidence(model, calibration, ["w"] * 200, mix)
    assert spearman(scores, agreement["overlap"]) > 0.5
    assert scores[:100].mean() > scores[100:].mean()
    for budget in (0.1, 0.3):
        assert abs(float((scores < calibration.threshold_for_budget(budget)).mean()) - budget) < 0.02
        assert abs(calibration.share_below(calibration.threshold_for_budget(budget)) - budget) < 0.01


def test_routing_curves_baselines_and_gap_recovered():
    rng = np.random.default_rng(4)
    n = 200
    student = rng.uniform(0, 1, n)
    gain = np.where(rng.random(n) < 0.3, rng.uniform(0.2, 0.8, n), 0.0)
    teacher = np.clip(student + gain, 0, 1)
    real_gain = teacher - student
    curves = routing_curves(student_ndcg=student, teacher_ndcg=teacher, student_overlap=1 - real_gain,
                            confidence=-real_gain, lengths=rng.integers(3, 30, n), agreement=1 - real_gain,
                            shares=(0.0, 0.1, 0.2, 1.0), bootstrap_resamples=200)
    rows = {r["share"]: r for r in curves["rows"]}
    assert rows[0.0]["router"]["gap_recovered"] == 0.0
    for method in ("router", "random", "longest_first", "label_free_oracle", "labelled_oracle"):
        assert rows[1.0][method]["gap_recovered"] == pytest.approx(1.0)
    assert rows[0.1]["random"]["gap_recovered"] == pytest.approx(0.1)
    # a perfect confidence is the labelled oracle, and beats random with an interval above zero
    assert rows[0.2]["router"]["ndcg10"] == pytest.approx(rows[0.2]["labelled_oracle"]["ndcg10"])
    assert rows[0.2]["router_vs_random"]["low"] > 0
    assert rows[0.2]["router_over_random_gap_ratio"] > 3
    assert route_lowest(np.array([3.0, 1.0, 2.0, 0.0]), 0.5).tolist() == [False, True, False, True]


@pytest.mark.parametrize("lead, meaningful", [(0.3, True), (0.0003, False), (-0.05, False)])
def test_the_report_shows_shares_of_a_gap_only_when_there_is_one(lead, meaningful):
    """A student within 0.0003 of its teacher read "1103% of the gap recovered", and one ahead of its
    teacher (a negative gap) "2.0x random" for a router below random: under MIN_GAP the markdown shows
    nDCG@10 alone and says why, and the JSON's shares, ratio and oracle distance are None."""
    from tava_core.route.report import markdown

    rng = np.random.default_rng(5)
    n = 100
    student = rng.uniform(0.2, 0.8, n)
    gain = np.zeros(n)
    gain[: n // 10] = lead * 10          # a tenth of the queries carry the whole lead
    teacher = student + gain
    curves = routing_curves(student_ndcg=student, teacher_ndcg=teacher, student_overlap=1 - gain,
                            confidence=rng.random(n), lengths=rng.integers(3, 30, n), agreement=rng.random(n),
                            shares=(0.0, 0.1), bootstrap_resamples=50)
    assert curves["gap"] == pytest.approx(lead) and curves["gap_meaningful"] is meaningful
    row = curves["rows"][1]
    shares = [row[m]["gap_recovered"] for m in ("router", "random", "labelled_oracle")]
    derived = [row["router_over_random_gap_ratio"], row["router_minus_label_free_oracle_gap"]]
    if meaningful:
        assert all(isinstance(v, float) for v in shares + derived)
    else:
        assert shares + derived == [None] * 5
    text = markdown(curves)
    said_why = "not shown" in text or "no gap to recover" in text
    assert ("%)" in text) is meaningful and said_why is not meaningful


# ----------------------------------------------------------------------------- router directory

def test_router_loads_through_load_encoder_and_routes_by_budget(router_dir, static_student):
    from tava_core.encoders import load_encoder
    from tava_core.route.router import RoutedEncoder

    router = load_encoder(str(router_dir), cache=False)
    assert isinstance(router, RoutedEncoder)
    student = load_encoder(str(static_student), cache=False)
    teacher = load_encoder("all-MiniLM-L6-v2")
    queries = TEXTS[:16]
    s, t = student.encode(queries, kind="query"), teacher.encode(queries, kind="query")
    out = router.route(queries)
    routed = out["routed"]
    assert 0 < routed.sum() < len(queries)
    assert np.allclose(out["vectors"][routed], t[routed], atol=1e-5)
    assert np.allclose(out["vectors"][~routed], s[~routed], atol=1e-5)
    # the routed ones are exactly those under the threshold, the least confident ones
    assert out["confidence"][routed].max() < out["confidence"][~routed].min()
    assert router.last_routed_share == pytest.approx(routed.mean())
    assert np.allclose(router.encode(["a document"], kind="document"), teacher.encode(["a document"]), atol=1e-5)
    none = router.with_budget(0.0).encode(queries, kind="query")
    assert np.allclose(none, s, atol=1e-5)
    everything = router.with_budget(1.0)
    assert np.allclose(everything.encode(queries, kind="query"), t, atol=1e-5) and everything.routed_share == 1.0


def test_router_bad_input_names_the_fix(router_dir, tmp_path, static_student):
    from tava_core.route.router import load_router

    with pytest.raises(ConfigError, match=r"\[0, 1\]"):
        check_budget(1.5)
    with pytest.raises(ConfigError, match="teacher-budget"):
        load_router(router_dir, teacher_budget=-0.1)
    # the student changed after calibration: fingerprint mismatch
    moved = tmp_path / "router"
    shutil.copytree(router_dir, moved)
    changed = tmp_path / "student"
    shutil.copytree(static_student, changed)
    (changed / "config.json").write_text(json.dumps({"model_type": "model2vec", "normalize": False}))
    meta = json.loads((moved / "router.json").read_text())
    meta["student"]["spec"]["model"] = str(changed)
    (moved / "router.json").write_text(json.dumps(meta))
    with pytest.raises(ModelLoadError, match="recalibrate") as err:
        load_router(moved)
    assert "fingerprint" in str(err.value) and "router.json" in str(err.value)
    # the teacher is gone
    meta["student"]["spec"]["model"] = str(static_student)
    meta["teacher"]["spec"]["model"] = str(tmp_path / "no-such-teacher")
    (moved / "router.json").write_text(json.dumps(meta))
    with pytest.raises(ModelLoadError, match="teacher") as err:
        load_router(moved)
    assert "calibrate-router" in str(err.value)
    # a damaged weights file is refused
    shutil.copy(router_dir / "router.json", moved / "router.json")
    (moved / "router.safetensors").write_bytes(b"broken")
    with pytest.raises(ModelLoadError, match="checksum"):
        load_router(moved)


# ----------------------------------------------------------------------------- end to end on a tiny BEIR set

def test_calibrate_and_evaluate_router_end_to_end(tmp_path, static_student, caplog):
    from tava_core.encoders import load_encoder
    from tava_core.evaluate.data import load_retrieval_data
    from tava_core.home import TavaHome
    from tava_core.route.config import RouterConfig, RouterSettings
    from tava_core.route.run import calibrate_router, evaluate_router

    home = TavaHome(tmp_path / "home")
    beir = tiny_topic_beir(tmp_path / "beir")
    config = RouterConfig(name="tiny", student=str(static_student), dataset=str(beir), teacher_budget=0.2,
                          calibration_texts=40, max_reference_texts=40,
                          settings=RouterSettings(bank_size=32, pca_dim=8, vector_components=2))
    with caplog.at_level("INFO", logger="tava_core.route"):
        record = calibrate_router(config, home)
    # each long stage says what it does and on how many texts (a user saw 106 s of nothing)
    said = "\n".join(caplog.messages)
    assert f"teacher vectors of the {record['dataset']['documents']} documents of" in said, said
    assert "encoding 40 reference texts (20 training texts of" in said and "and 20 span views of them)" in said, said
    views = record["calibration_texts"]
    assert f"encoding {views} calibration span views of beir's corpus with the student and the teacher" in said, said
    assert f"on 40 reference texts; calibrating it on {views} span views against the student's agreement" in said
    router_path = Path(record["directory"])
    assert router_path == home.artifacts / "routers" / "tiny"
    assert {"router.json", "router.safetensors", "tava_encoder.json"} <= {p.name for p in router_path.iterdir()}
    assert record["threshold"]["mode"] == "budget" and record["threshold"]["expected_share"] == 0.2
    assert set(record["calibration"]["spearman_with_target"]) == set(config.settings.signals)
    router = load_encoder(str(router_path), cache=False)
    data = load_retrieval_data(str(beir), "test", home)
    curves = evaluate_router(router, data, home, tmp_path / "report")
    assert [r["share"] for r in curves["rows"]] == [0.0, 0.05, 0.1, 0.2, 0.3, 0.5]
    first, last = curves["rows"][0], curves["rows"][-1]
    assert first["router"]["ndcg10"] == pytest.approx(curves["student_ndcg10"])
    assert last["labelled_oracle"]["ndcg10"] >= last["router"]["ndcg10"] - 1e-9
    assert last["cost_per_query_teacher_units"] > first["cost_per_query_teacher_units"]
    assert curves["costs"]["queries_timed"] == len(data.query_texts)      # under COST_QUERIES: all of them
    for key in ("json", "markdown", "png"):
        assert Path(curves["files"][key]).stat().st_size > 0
    assert "label-free oracle" in Path(curves["files"]["markdown"]).read_text()
    # the live share: the router's own policy (adaptive by default) replayed on the split's queries
    assert record["routing"]["mode"] == curves["routing"]["mode"] == "adaptive"
    live = curves["routed_share_live"]
    assert set(live) == {"1", "32"} and all(0.0 <= v <= 1.0 for v in live.values())
    streamed = router.with_budget(0.2)
    routed = np.concatenate([streamed.route([t])["routed"] for t in data.query_texts])
    assert live["1"] == pytest.approx(routed.mean())
    assert "in batches of 1" in Path(curves["files"]["markdown"]).read_text()
    assert "warnings" not in curves and curves["router"]["served_corpus"] == "beir"

    # Another corpus (a fifth of the documents gone): the router's bank is not its documents, and it says so
    other = tmp_path / "other"
    shutil.copytree(beir, other)
    lines = (other / "corpus.jsonl").read_text().splitlines()
    (other / "corpus.jsonl").write_text("\n".join(line for line in lines if "variant 5" not in line) + "\n")
    with caplog.at_level("WARNING", logger="tava_core.route"):
        elsewhere = evaluate_router(router, load_retrieval_data(str(other), "test", home), home, tmp_path / "other-report",
                                    measure_costs=False)
    [warning] = elsewhere["warnings"]
    assert "calibrated on 'beir' (30 documents)" in warning and "'other' (25 documents)" in warning
    assert "tava calibrate-router --dataset other" in warning and warning in caplog.text
    assert warning in Path(elsewhere["files"]["markdown"]).read_text()

    # A target agreement is a fixed threshold: saved and reported as one (it read "adaptive", routing as fixed)
    agreeing = calibrate_router(config.model_copy(update={"name": "tiny-agree", "teacher_budget": None,
                                                          "target_agreement": 0.7}), home)
    assert agreeing["threshold"]["mode"] == "agreement" and agreeing["routing"]["mode"] == "fixed"
    assert load_encoder(agreeing["directory"], cache=False).live is None


def test_calibrate_router_needs_no_labels_and_refuses_a_student_outside_the_teachers_space(tmp_path, static_student):
    from safetensors.numpy import load_file, save_file

    from tava_core.home import TavaHome
    from tava_core.route.config import RouterConfig, RouterSettings
    from tava_core.route.run import calibrate_router

    home = TavaHome(tmp_path / "home")
    beir = tiny_topic_beir(tmp_path / "beir")
    shutil.rmtree(beir / "qrels")                 # documents only: the labels were never used
    (beir / "queries.jsonl").unlink()
    settings = RouterSettings(bank_size=32, pca_dim=8, vector_components=2)
    config = RouterConfig(name="unlabelled", student=str(static_student), dataset=str(beir), teacher_budget=0.2,
                          calibration_texts=40, max_reference_texts=40, settings=settings)
    record = calibrate_router(config, home)
    assert record["threshold"]["expected_share"] == 0.2 and Path(record["directory"]).is_dir()
    # a 64-d student (say a compressor's) against the 384-d teacher: refused before anything is encoded
    narrow = tmp_path / "narrow"
    shutil.copytree(static_student, narrow)
    table = load_file(str(narrow / "model.safetensors"))["embeddings"]
    save_file({"embeddings": np.ascontiguousarray(table[:, :64])}, str(narrow / "model.safetensors"))
    with pytest.raises(ConfigError, match="makes 64-d vectors, the teacher all-MiniLM-L6-v2 384-d ones"):
        calibrate_router(config.model_copy(update={"student": EncoderSpec(model=str(narrow)), "name": "narrow"}),
                         TavaHome(tmp_path / "other-home"))
    assert not (tmp_path / "other-home" / "vectors").exists()


@pytest.mark.parametrize("count,size", [(10, 256), (256, 256), (1000, 256), (5000, 64)])
def test_router_costs_are_timed_on_all_queries_up_to_the_sample_size_else_a_seeded_sample(count, size):
    from tava_core.distill.spans import seeded_sample

    picked = np.array(seeded_sample(range(count), size, 0))    # what evaluate_router times (COST_QUERIES)
    assert len(picked) == min(count, size) and len(set(picked.tolist())) == len(picked)
    assert (np.diff(picked) > 0).all() and picked.min() >= 0 and picked.max() < count     # in the split's order
    np.testing.assert_array_equal(picked, seeded_sample(range(count), size, 0))        # the same every run
    if count > size:   # spread over the split, not its first rows
        assert picked.max() > count // 2 and not np.array_equal(picked, seeded_sample(range(count), size, 1))


def test_diagnose_separates_a_faithful_student_from_an_unrelated_one():
    from tava_core.diagnose import diagnose, markdown

    rng = np.random.default_rng(5)
    teacher = rng.normal(size=(150, 16))
    faithful = teacher + 0.2 * rng.normal(size=teacher.shape)
    unrelated = rng.normal(size=teacher.shape)
    good = diagnose({"c": (faithful, teacher)}, queries=(faithful[:20], teacher[:20]), query_docs="c")
    bad = diagnose({"c": (unrelated, teacher)})
    g, b = good["collections"]["c"], bad["collections"]["c"]
    assert g["knn_overlap"]["mean"] > 0.5 > 0.2 > b["knn_overlap"]["mean"]
    assert g["tangent_angle_degrees"]["mean"] + 20 < b["tangent_angle_degrees"]["mean"]
    assert good["queries"]["neighbour_overlap"]["mean"] > 0.5
    assert len(good["per_text"]["c"]["knn_overlap"]) == 150
    assert good["queries"]["cosine_to_teacher"]["mean"] > 0.9
    # a student outside the teacher's space (another dim): neighbourhoods compare, cosines do not exist
    narrow = diagnose({"c": (faithful[:, :8], teacher)}, queries=(faithful[:20, :8], teacher[:20]), query_docs="c")
    assert "cosine_to_teacher" not in narrow["queries"] and narrow["queries"]["neighbour_overlap"]["mean"] > 0
    assert "no cosine to the teacher's vectors" in markdown(narrow)


def test_run_diagnose_says_what_it_encodes_and_scores(tmp_path, static_student, caplog):
    from tava_core.diagnose import DiagnoseConfig, run_diagnose
    from tava_core.home import TavaHome

    beir = tiny_topic_beir(tmp_path / "beir")
    with caplog.at_level("INFO", logger="tava_core.diagnose"):
        record = run_diagnose(DiagnoseConfig(dataset=str(beir), student=str(static_student), run="said"),
                              TavaHome(tmp_path / "home"))
    documents, queries = record["collections"]["corpus"]["knn_overlap"]["n"], record["queries"]["neighbour_overlap"]["n"]
    said = "\n".join(caplog.messages)
    assert f"encoding {documents} sampled documents of" in said, said
    assert f"encoding the {queries} test queries with the student and the teacher" in said, said
    assert f"corpus: k-NN overlap and tangent angles of {documents} texts (k 10, 3 directions)" in said, said
    assert f"scoring {queries} queries' top-10 agreement over the {documents} documents of corpus" in said, said


def test_drift_report_rises_for_off_domain_batch(router_dir):
    from tava_core.route.drift import drift_report
    from tava_core.route.router import load_router

    router = load_router(router_dir, teacher_budget=0.25)
    in_domain = TEXTS[::2]
    off_domain = ["zxq vlorp 1987 kwy", "qqq rrr sss ttt", "%%% ### @@@ !!!", "bleep blorp zonk wibble",
                  "xylophone quagmire fjord", "mmmm nnnn pppp", "tktktk rrrr", "ooo ppp qqq"]
    report = drift_report(router, in_domain, off_domain)
    # nonsense: every word unseen in training. The default (retrieval) confidence may rate it either way;
    # the unseen-word share cannot miss it (7 of 8: "%%% ### @@@ !!!" has no words at all)
    assert report["new_unseen_share"] == 7 / 8 and report["previous_unseen_share"] == 0.0
    assert report["drifted"] and "rose" in report["message"]
    same = drift_report(router, in_domain, in_domain)
    assert not same["drifted"] and same["new_share"] == same["previous_share"]
    assert same["new_unseen_share"] == same["previous_unseen_share"]


def test_evaluate_router_reads_the_query_vectors_an_evaluation_kept_and_can_skip_the_teacher(
        tmp_path, static_student, monkeypatch):
    """A pipeline scores its router after evaluating the same encoders on the same queries: the vectors
    are read back, not encoded again, and with the student's speed-up given the teacher never runs (its cost
    is the student's times that ratio). Other query texts are never served from the kept shard."""
    import dataclasses

    from tava_core.encoders import load_encoder
    from tava_core.evaluate.data import load_retrieval_data
    from tava_core.evaluate.vectors import encode_queries, query_vector_path, stored_query_vectors
    from tava_core.home import TavaHome
    from tava_core.route.config import RouterConfig, RouterSettings
    from tava_core.route.run import calibrate_router, evaluate_router

    home = TavaHome(tmp_path / "home")
    beir = tiny_topic_beir(tmp_path / "beir")
    config = RouterConfig(name="tiny", student=str(static_student), dataset=str(beir), teacher_budget=0.2,
                          calibration_texts=40, max_reference_texts=40,
                          settings=RouterSettings(bank_size=32, pca_dim=8, vector_components=2))
    router = load_encoder(calibrate_router(config, home)["directory"], cache=False)
    data = load_retrieval_data(str(beir), "test", home)
    first = evaluate_router(router, data, home, tmp_path / "first")
    assert first["query_vectors"] == {"student": "encoded", "teacher": "encoded"}
    assert first["teacher_cost"] == "timed"

    # what `tava evaluate` keeps of both encoders
    for encoder in (router.student, router.teacher):
        encode_queries(data, encoder, query_vector_path(home, data, encoder), batch_size=8)

    def no_teacher(*args, **kwargs):
        raise AssertionError("the teacher ran")

    monkeypatch.setattr(router.teacher, "encode", no_teacher)
    second = evaluate_router(router, data, home, tmp_path / "second", student_speedup=4.0)
    assert second["query_vectors"] == {"student": "reused", "teacher": "reused"}
    assert second["costs"]["teacher"] == pytest.approx(4.0 * second["costs"]["student"])
    assert "4" in second["teacher_cost"]
    for a, b in zip(first["rows"], second["rows"], strict=True):
        assert b["router"]["ndcg10"] == pytest.approx(a["router"]["ndcg10"], abs=1e-6)
        assert b["labelled_oracle"]["ndcg10"] == pytest.approx(a["labelled_oracle"]["ndcg10"], abs=1e-6)

    # the same ids with another text, or another encoder: nothing is read back
    texts = list(data.query_texts)
    texts[0] = texts[0] + " changed"
    assert stored_query_vectors(dataclasses.replace(data, query_texts=texts), router.student, home) is None
    assert stored_query_vectors(data, router.student, home) is not None
    with pytest.raises(ConfigError, match="positive"):
        evaluate_router(router, data, home, tmp_path / "third", student_speedup=0.0)
