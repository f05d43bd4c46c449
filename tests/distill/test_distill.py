"""Stage A: students save to loadable directories, training improves them, and it fails safely.

The teacher here is the tiny random BERT (``tiny_model_dir``, 32-d): it makes every step cheap
while exercising the same code as the packaged teacher.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from distill_helpers import embed_toy, make_toy_dataset, toy_texts

from tava_core.distill import DistillConfig, StaticStudent, Trainer, TransformerStudent, distill
from tava_core.distill.run import work_dir_for
from tava_core.encoders import TransformerEncoder, load_encoder
from tava_core.encoders.static import StaticEncoder
from tava_core.errors import ConfigError, IntegrityError, TrainingError
from tava_core.home import TavaHome

TEXTS = ["Aspirin lowers the risk of heart attack.", "the movie was great fun", "Rain is expected in the city."]


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory, tiny_model_dir) -> Path:
    """The tiny random BERT with its weights scaled up. At init scale every text gets nearly the same
    vector and each layer is nearly the identity (a one-layer student starts at cosine 0.9999),
    which would leave a student nothing to learn; scaled, a student starts far from the teacher."""
    import shutil

    from transformers import BertModel

    out = tmp_path_factory.mktemp("toy-teacher") / "teacher"
    shutil.copytree(tiny_model_dir, out)
    model = BertModel.from_pretrained(str(tiny_model_dir))
    with torch.no_grad():
        model.embeddings.word_embeddings.weight.mul_(50)
        for weight in model.encoder.parameters():
            if weight.dim() == 2:
                weight.mul_(10)
    model.save_pretrained(str(out))
    return out


@pytest.fixture(scope="module")
def toy_home(tmp_path_factory, teacher_dir) -> Path:
    """A tava home with a 400-text dataset 'toy' and the toy teacher's vectors of it."""
    home = tmp_path_factory.mktemp("distill-home")
    make_toy_dataset(home, "toy", n=400)
    embed_toy(home, str(teacher_dir), "toy")
    return home


def _config(teacher: Path, /, **overrides) -> DistillConfig:
    base = dict(name="s", teacher=str(teacher), datasets=["toy"], layers=[1], steps=60, batch_size=16,
                warmup_steps=5, lr=2e-3, eval_every=20, checkpoint_every=20, validation_fraction=0.05,
                max_length=32, patience=0, device="cpu", threads=1, span_views=0)
    base.update(overrides)
    return DistillConfig(**base)


def test_transformer_student_is_a_sentence_transformers_dir(tmp_path, tiny_model_dir):
    student = TransformerStudent.from_teacher(tiny_model_dir, layers=[1], projection=True, teacher_dim=48)
    assert student.model.config.num_hidden_layers == 1 and student.dim == 48
    with torch.no_grad():  # move the projection off identity so the test sees it
        student.projection.weight.normal_()
    out = student.save(tmp_path / "student")
    modules = json.loads((out / "modules.json").read_text())
    assert [m["type"].rsplit(".", 1)[-1] for m in modules] == ["Transformer", "Pooling", "Dense", "Normalize"]
    tava_vectors = TransformerEncoder(out).encode(TEXTS)
    from sentence_transformers import SentenceTransformer

    st_vectors = SentenceTransformer(str(out), device="cpu").encode(TEXTS)
    assert tava_vectors.shape == (3, 48)
    np.testing.assert_allclose(tava_vectors, st_vectors, atol=1e-5)
    student.eval()
    with torch.no_grad():
        own = torch.nn.functional.normalize(student(student.prepare(TEXTS)), dim=-1).numpy()
    np.testing.assert_allclose(own, tava_vectors, atol=1e-5)


def test_static_student_saves_for_tava_sentence_transformers_and_model2vec(tmp_path, tiny_model_dir):
    student = StaticStudent.from_teacher(tiny_model_dir, static_dim=16, projection=True, teacher_dim=32,
                                         init="token_embeddings")
    assert student.embeddings.shape[1] == 16 and student.dim == 32
    with torch.no_grad():
        student.token_weights.uniform_(0.5, 1.5)  # non-trivial per-token weights must survive the save
    out = student.save(tmp_path / "static")
    encoder = load_encoder(str(out))
    assert isinstance(encoder, StaticEncoder) and encoder.dim == 32
    ours = encoder.encode(TEXTS)
    with torch.no_grad():
        own = torch.nn.functional.normalize(student(student.prepare(TEXTS)), dim=-1).numpy()
    np.testing.assert_allclose(ours, own, atol=1e-5)
    from model2vec import StaticModel
    from sentence_transformers import SentenceTransformer

    np.testing.assert_allclose(StaticModel.from_pretrained(out).encode(TEXTS), ours, atol=1e-5)
    np.testing.assert_allclose(SentenceTransformer(str(out), device="cpu").encode(TEXTS), ours, atol=1e-5)
    # a plain model2vec directory (no tava marker, as model2vec.distill writes it) loads as the same encoder
    (out / "tava_encoder.json").unlink()
    plain = load_encoder(str(out), cache=False)
    assert isinstance(plain, StaticEncoder)
    np.testing.assert_allclose(plain.encode(TEXTS), ours, atol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["transformer", "static"])
def test_short_training_lowers_loss_and_raises_held_out_cosine(toy_home, teacher_dir, kind, caplog):
    # fit_projection off: the run must earn its gain by training (the fit is tested on its own below).
    # The transformer run also trains on one span view per text (the span path end to end).
    extra = ({"student": "static", "static_init": "token_embeddings", "lr": 2e-2} if kind == "static"
             else {"fit_projection": False, "span_views": 1})
    with caplog.at_level("INFO", logger="tava_core.distill"):
        record = distill(_config(teacher_dir, name=f"short-{kind}", **extra), toy_home, progress=False)
    # the minutes before the first step are said (a user saw three minutes of nothing before the bar)
    assert any(m.startswith(f"Stage A: building a {kind} student of ") for m in caplog.messages), caplog.messages
    out = Path(record.output)
    card = json.loads(record.card_path.read_text())
    assert record.reused is False and record.best_cosine == card["validation"]["best_cosine"]
    assert out == TavaHome(toy_home).artifacts / "students" / f"short-{kind}"
    assert card["student"]["layers"] == ([1] if kind == "transformer" else None)   # the layers it kept
    for name in ("modules.json", "model.safetensors", "curves.png", "README.md", "model_card.json"):
        assert (out / name).is_file(), name
    assert not work_dir_for(out).exists()  # checkpoints are removed once the artifact is saved
    val = card["validation"]
    assert val["best_cosine"] > val["initial_cosine"] + 0.03
    assert val["saved_model_cosine"] == pytest.approx(val["best_cosine"], abs=0.05)
    history = card["training"]["steps_done"]
    sources = {(x["collection"], x["rows"]) for x in card["corpus"]["sources"]}
    if kind == "transformer":
        spans = [rows for collection, rows in sources if collection == "spans"]
        assert len(spans) == 1 and 300 <= spans[0] <= 400  # one view per text, minus per-text duplicates
        assert card["corpus"]["texts"] == 400 + spans[0]
    else:
        assert card["corpus"]["texts"] == 400 and sources == {("texts", 400)}
    assert history == 60
    losses = json.loads((out / "model_card.json").read_text())["training"]
    assert losses["best_step"] > 0 and card["speed"]["student_texts_per_second"] > 0
    # A re-run of the same config is free: the finished artifact is reused.
    again = distill(_config(teacher_dir, name=f"short-{kind}", **extra), toy_home, progress=False)
    assert again.reused is True and again.run_key == record.run_key


def test_fitted_projection_starts_nearer_the_teacher(toy_home, teacher_dir):
    from tava_core.distill.data import load_training_data, resolve_pairs
    from tava_core.distill.students import fit_projection
    from tava_core.distill.trainer import validation_cosine

    teacher = load_encoder(str(teacher_dir))
    pairs = resolve_pairs(TavaHome(toy_home), ["toy"], [], [], teacher.name, teacher.fingerprint)
    data = load_training_data(pairs, teacher_fingerprint=teacher.fingerprint, teacher_dim=teacher.dim)
    student = TransformerStudent.from_teacher(teacher_dir, layers=[1], projection=True, teacher_dim=32)
    held_out = (data.texts[300:], data.vectors[300:])
    before = validation_cosine(student, *held_out)
    fit_projection(student, data.texts[:300], data.vectors[:300])
    assert validation_cosine(student, *held_out) > before + 0.01


def test_projection_start_uses_projection_fit_texts_and_more_texts_hold_out_better(
        toy_home, teacher_dir, monkeypatch, tmp_path):
    import tava_core.distill.run as run_module
    from tava_core.distill.data import load_training_data, resolve_pairs
    from tava_core.distill.students import fit_projection
    from tava_core.distill.trainer import validation_cosine

    teacher = load_encoder(str(teacher_dir))
    pairs = resolve_pairs(TavaHome(toy_home), ["toy"], [], [], teacher.name, teacher.fingerprint)
    data = load_training_data(pairs, teacher_fingerprint=teacher.fingerprint, teacher_dim=teacher.dim)
    held_out = (data.texts[300:], data.vectors[300:])
    fitted = {}
    for count in (40, 300):
        student = TransformerStudent.from_teacher(teacher_dir, layers=[1], projection=True, teacher_dim=32)
        fit_projection(student, data.texts[:count], data.vectors[:count])
        fitted[count] = validation_cosine(student, *held_out)
    assert fitted[300] > fitted[40]
    # distill() fits the start on exactly projection_fit_texts training texts (no more).
    seen: list[int] = []
    monkeypatch.setattr(run_module, "fit_projection", lambda student, texts, targets: seen.append(len(texts)))
    distill(_config(teacher_dir, name="fit-texts", steps=2, warmup_steps=0, eval_every=1, projection_fit_texts=37,
                    output=str(tmp_path / "out")), toy_home, progress=False)
    assert seen == [37]


def _trainer(teacher_dir, toy_home, seed: int, work: Path, **overrides) -> Trainer:
    from tava_core.distill.data import load_training_data, resolve_pairs

    config = _config(teacher_dir, **{"steps": 15, "seed": seed, "checkpoint_every": 1000, "eval_every": 1000,
                                     **overrides})
    teacher = load_encoder(str(teacher_dir))
    pairs = resolve_pairs(TavaHome(toy_home), ["toy"], [], [], teacher.name, teacher.fingerprint)
    data = load_training_data(pairs, teacher_fingerprint=teacher.fingerprint, teacher_dim=teacher.dim)
    student = TransformerStudent.from_teacher(teacher_dir, layers=[1], projection=True, teacher_dim=32,
                                              max_length=32, seed=seed)
    return Trainer(student, data.texts, data.vectors, config, work, progress=False)


def test_training_is_reproducible_with_a_seed(tmp_path, toy_home, teacher_dir):
    runs = [_trainer(teacher_dir, toy_home, seed, tmp_path / f"w{i}").train()
            for i, seed in enumerate([7, 7, 8])]
    losses = [[h["loss"] for h in r.history] for r in runs]
    assert losses[0] == losses[1]
    assert losses[0] != losses[2]
    assert runs[0].best_validation_cosine == runs[1].best_validation_cosine


def test_neighbour_ranking_term_trains_on_each_texts_nearest_training_texts(tmp_path, toy_home, teacher_dir):
    # the term alone (no cosine, no MSE): the student learns the order of each text's hard candidates
    trainer = _trainer(teacher_dir, toy_home, 0, tmp_path / "w", alpha_cos=0.0, alpha_mse=0.0, alpha_rank=1.0,
                       rank_candidates=8, steps=40, lr=5e-3)
    held_out = set(trainer.split.validation.tolist())
    assert trainer.neighbours is not None and trainer.neighbours.shape == (len(trainer.texts), 8)
    assert not held_out & set(trainer.neighbours.ravel().tolist())
    assert all(row not in trainer.neighbours[row] for row in range(len(trainer.texts)))
    history = trainer.train().history
    first, last = np.mean([h["rank_kl"] for h in history[:5]]), np.mean([h["rank_kl"] for h in history[-5:]])
    assert set(history[0]) >= {"loss", "rank_kl"} and "cos" not in history[0]
    assert last < 0.7 * first, (first, last)
    # unused, the term leaves a run's key (and so its checkpoints and artifacts) as before it existed
    assert "alpha_rank" not in _config(teacher_dir).training_key()
    assert _config(teacher_dir, alpha_rank=1.0).training_key()["rank_candidates"] == 32


def test_nan_loss_stops_training_and_saves_nothing(toy_home, teacher_dir, monkeypatch):
    from tava_core.distill import trainer as trainer_module
    from tava_core.distill.losses import DistillationLoss

    class BreaksAtStep3(DistillationLoss):
        calls = 0

        def forward(self, student, teacher, candidates=None):
            loss, parts = super().forward(student, teacher, candidates)
            BreaksAtStep3.calls += 1
            return (loss * float("nan") if BreaksAtStep3.calls >= 3 else loss), parts

    monkeypatch.setattr(trainer_module, "DistillationLoss", BreaksAtStep3)
    config = _config(teacher_dir, name="nan", checkpoint_every=1)
    with pytest.raises(TrainingError, match="loss became nan at step 3"):
        distill(config, toy_home, progress=False)
    out = TavaHome(toy_home).artifacts / "students" / "nan"
    assert not out.exists()
    state = json.loads((work_dir_for(out) / "checkpoint" / "training_state.json").read_text())
    assert state["step"] == 2  # only the last good step was checkpointed


def test_bad_inputs_fail_before_training(toy_home, teacher_dir):
    with pytest.raises(ConfigError, match="memorise"):
        distill(_config(teacher_dir, name="bad1", steps=100000), toy_home, progress=False)
    with pytest.raises(ConfigError, match="fewer than one batch"):
        distill(_config(teacher_dir, name="bad2", batch_size=1000), toy_home, progress=False)
    with pytest.raises(ConfigError, match="without a projection"):
        distill(_config(teacher_dir, name="bad3", layers=[], hidden_size=16, projection=False), toy_home,
                progress=False)
    with pytest.raises(ConfigError, match="larger than the teacher"):
        distill(_config(teacher_dir, name="bad4", student="static", static_dim=64), toy_home, progress=False)
    with pytest.raises(ConfigError, match="do not name distinct layers"):
        distill(_config(teacher_dir, name="bad5", layers=[0, 5]), toy_home, progress=False)
    # Vectors of the tiny model offered as the packaged teacher's: refused by fingerprint.
    vector_dir = next((TavaHome(toy_home).vectors / "toy" / "texts").iterdir())
    with pytest.raises(IntegrityError, match="not by the teacher named"):
        distill(_config(teacher_dir, name="bad6", teacher="all-MiniLM-L6-v2", teacher_vectors=[str(vector_dir)]),
                toy_home, progress=False)
    assert not (TavaHome(toy_home).artifacts / "students").exists() or not any(
        p.name.startswith("bad") for p in (TavaHome(toy_home).artifacts / "students").iterdir())


@pytest.mark.parametrize("steps, fit_steps, expected", [
    (1000, True, 47),    # 20 passes... here max_epochs 2: 2 x 380 training texts // 16 = 47 steps
    (40, True, 40),      # fits: unchanged
    (1000, False, 1000),  # not asked to fit: unchanged (check_corpus_size refuses it)
])
def test_fitted_to_corpus_cuts_only_a_preset_step_count(teacher_dir, steps, fit_steps, expected):
    from tava_core.distill.trainer import fitted_to_corpus

    config = _config(teacher_dir, steps=steps, fit_steps=fit_steps, max_epochs=2, warmup_steps=100,
                     eval_every=200, checkpoint_every=200)
    fitted = fitted_to_corpus(400, config)   # 20 of 400 held out (5%)
    assert fitted.steps == expected
    if expected == steps:
        assert fitted is config
    else:  # the schedule keeps its shape: warm-up and intervals scaled by 47/1000
        assert (fitted.warmup_steps, fitted.eval_every, fitted.checkpoint_every) == (4, 9, 9)


@pytest.mark.parametrize("steps, fit_steps, min_epochs, factor, expected", [
    (10, True, 1.0, 3.0, 24),    # one pass over 380 training texts of 16: ceil(23.75) = 24 steps
    (10, True, 1.0, 2.0, 20),    # ... at most 2 x the preset's 10
    (10, True, 0.5, 3.0, 12),    # half a pass
    (10, True, 0.0, 3.0, 10),    # growth off
    (10, False, 1.0, 3.0, 10),   # a step count you give is kept
    (30, True, 1.0, 3.0, 30),    # already more than a pass: unchanged
])
def test_fitted_to_corpus_grows_a_preset_step_count_on_a_big_corpus(teacher_dir, steps, fit_steps, min_epochs, factor,
                                                                    expected):
    from tava_core.distill.trainer import fitted_to_corpus

    config = _config(teacher_dir, steps=steps, fit_steps=fit_steps, max_epochs=20, min_epochs=min_epochs,
                     max_fitted_steps_factor=factor, warmup_steps=2, eval_every=5, checkpoint_every=5)
    fitted = fitted_to_corpus(400, config)   # 380 training texts, batches of 16
    assert fitted.steps == expected
    if expected == steps:
        assert fitted is config
    else:   # the warm-up keeps its share of the schedule; the intervals stay (more validations, not fewer)
        assert fitted.warmup_steps == round(2 * expected / steps)
        assert (fitted.eval_every, fitted.checkpoint_every) == (5, 5)
    # growth never changes what identifies the run beyond the steps it trains
    assert {k: v for k, v in fitted.training_key().items() if k not in ("steps", "warmup_steps")} == \
        {k: v for k, v in config.training_key().items() if k not in ("steps", "warmup_steps")}


def test_a_preset_step_count_is_fitted_to_a_small_corpus(toy_home, teacher_dir):
    config = _config(teacher_dir, name="fitted", steps=1000, max_epochs=2, fit_steps=True)
    with pytest.raises(ConfigError, match="memorise"):  # the same run without fit_steps is refused
        distill(config.model_copy(update={"fit_steps": False, "name": "unfitted"}), toy_home, progress=False)
    record = distill(config, toy_home, progress=False)
    card = json.loads(record.card_path.read_text())
    assert record.steps == card["training"]["steps_done"] == card["training"]["config"]["steps"] == 47
    assert card["training"]["config"]["warmup_steps"] == 0 and record.best_cosine > record.initial_cosine
    # the fitted run is the run: the same request again is reused, not retrained
    assert distill(config, toy_home, progress=False).reused


_RUN_SCRIPT = """
import json, sys
from tava_core.distill import DistillConfig, distill
config = DistillConfig.model_validate_json(sys.argv[1])
print(json.dumps(distill(config, sys.argv[2], progress=False).steps))
"""


@pytest.mark.slow
def test_resume_after_a_real_kill(toy_home, teacher_dir):
    config = _config(teacher_dir, name="killed", steps=400, checkpoint_every=20, eval_every=200,
                     max_epochs=1000, lr=5e-4)
    out = TavaHome(toy_home).artifacts / "students" / "killed"
    state_file = work_dir_for(out) / "checkpoint" / "training_state.json"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.Popen([sys.executable, "-c", _RUN_SCRIPT, config.model_dump_json(), str(toy_home)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    while not state_file.is_file():
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)  # no handler runs: only the checkpoint on disk survives
    proc.wait()
    killed_at = json.loads(state_file.read_text())["step"]
    assert 0 < killed_at < 400 and not out.exists()
    card = json.loads(distill(config, toy_home, progress=False).card_path.read_text())
    assert card["training"]["resumed_from"] >= killed_at
    assert card["training"]["steps_done"] == 400
    assert (out / "model.safetensors").is_file() and not work_dir_for(out).exists()


@pytest.mark.slow
def test_a_home_copied_elsewhere_finds_its_students_and_old_records_are_still_found(toy_home, teacher_dir, tmp_path,
                                                                                    monkeypatch):
    """Stage A's key names the training data by content, not by directory: `tava run` fills the datasets
    with absolute paths under the home, and a home copied (or mounted) at another path used to train every
    student again. A record written under the key runs had before (directories in it) is still found."""
    import shutil

    from tava_core.distill.data import TrainingData

    def config(home: Path, name: str) -> DistillConfig:
        return _config(teacher_dir, name=name, steps=6, eval_every=3, checkpoint_every=3, warmup_steps=1,
                       datasets=[str(TavaHome(home).dataset_dir("toy"))])

    first = distill(config(toy_home, "moved"), toy_home, progress=False)
    moved = tmp_path / "moved-home"
    shutil.copytree(toy_home, moved)
    again = distill(config(moved, "moved"), moved, progress=False)
    assert again.reused and again.run_key == first.run_key
    # the key before session 43: as the old code wrote it (directories in the config, the partner's path)
    real_key = DistillConfig.training_key
    monkeypatch.setattr(DistillConfig, "training_key", lambda self, portable=True: real_key(self, portable=False))
    monkeypatch.setattr(TrainingData, "portable_key", property(lambda self: self.key))
    old = distill(config(toy_home, "legacy"), toy_home, progress=False)
    monkeypatch.undo()
    found = distill(config(toy_home, "legacy"), toy_home, progress=False)
    assert not old.reused and found.reused and found.run_key == old.run_key != first.run_key


@pytest.fixture(scope="module")
def two_source_home(tmp_path_factory, teacher_dir) -> Path:
    """A home with 'toy' (400 texts) and a small second source 'log' (60 texts), both embedded."""
    home = tmp_path_factory.mktemp("weights-home")
    make_toy_dataset(home, "toy", n=400)
    make_toy_dataset(home, "log", n=60, seed=1)
    for name in ("toy", "log"):
        embed_toy(home, str(teacher_dir), name)
    return home


def test_dataset_weights_draw_a_source_and_its_span_views_that_many_times(two_source_home, teacher_dir):
    from tava_core.distill.run import prepare_training, row_draws
    from tava_core.distill.trainer import BatchPlan, split_indices

    config = _config(teacher_dir, datasets=["toy", "log"], dataset_weights=[1, 4], span_views=1)
    home = TavaHome(two_source_home)
    data = prepare_training(config, home, load_encoder(str(teacher_dir)), embed_missing=True)
    names = [s["dataset"] for s in data.sources]
    assert names == ["toy", "log", "toy.spans1-s0", "log.spans1-s0"]
    draws = row_draws(config, home, data)
    assert draws is not None and len(draws) == len(data.texts)
    expected = np.concatenate([np.full(s["rows"], 4 if s["dataset"].startswith("log") else 1) for s in data.sources])
    np.testing.assert_array_equal(draws, expected)
    # one pass of the batch plan draws each training text of 'log' (and its views) four times, 'toy''s once
    split = split_indices(len(data.texts), 0.05, 0)
    split.draws = draws
    plan = BatchPlan(split.drawn(), batch_size=1, seed=0)
    counts = np.bincount(np.concatenate([plan(step) for step in range(plan.per_epoch)]), minlength=len(data.texts))
    np.testing.assert_array_equal(counts[split.train], draws[split.train])
    assert counts[split.validation].sum() == 0
    # all weights 1 is no weighting: the same draws, the same key as before the option existed
    assert row_draws(config.model_copy(update={"dataset_weights": [1, 1]}), home, data) is None
    assert "dataset_weights" not in config.model_copy(update={"dataset_weights": [1, 1]}).training_key()
    assert config.training_key()["dataset_weights"] == [1, 4]


def test_a_weighted_run_draws_its_batches_by_weight_and_records_them(two_source_home, teacher_dir, monkeypatch):
    from tava_core.distill import trainer as trainer_module

    drawn: list[np.ndarray] = []

    class RecordingPlan(trainer_module.BatchPlan):
        def __call__(self, step: int) -> np.ndarray:
            rows = super().__call__(step)
            drawn.append(rows)
            return rows

    monkeypatch.setattr(trainer_module, "BatchPlan", RecordingPlan)
    runs = {}
    for name, weights in (("plain", []), ("weighted", [1, 8])):
        drawn.clear()
        runs[name] = distill(_config(teacher_dir, name=name, datasets=["toy", "log"], dataset_weights=weights,
                                     steps=40), two_source_home, progress=False)
        rows = np.concatenate(drawn)
        runs[name + "-share"] = float(np.mean(rows >= 400))   # rows 400.. are the 60 'log' texts
    # 60 of 460 texts: ~13% of the draws unweighted, 60 x 8 / (400 + 480) = ~55% at weight 8
    assert 0.08 < runs["plain-share"] < 0.19, runs["plain-share"]
    assert 0.45 < runs["weighted-share"] < 0.65, runs["weighted-share"]
    assert runs["plain"].run_key != runs["weighted"].run_key
    card = json.loads((Path(runs["weighted"].output) / "model_card.json").read_text())
    assert card["training"]["config"]["dataset_weights"] == [1, 8]


@pytest.mark.parametrize("weights, message", [([1], "1 dataset weights for 2 datasets"),
                                              ([1, 0], "whole numbers >= 1")])
def test_bad_dataset_weights_fail_before_training(two_source_home, teacher_dir, weights, message):
    with pytest.raises(ConfigError, match=message):
        distill(_config(teacher_dir, name="badw", datasets=["toy", "log"], dataset_weights=weights), two_source_home,
                progress=False)


def test_a_transformer_student_records_its_window_and_an_older_one_gets_it_on_reuse(toy_home, teacher_dir):
    """window.json (tava_core/encoders/windows.py): the 95th percentile of the training texts' token counts
    as trained (cut at max_length); a student saved before windows existed gets it when its run is reused."""
    from transformers import AutoTokenizer

    from tava_core.encoders.windows import WINDOW_FILE, window_from_lengths

    config = _config(teacher_dir, name="windowed", steps=6, eval_every=3, checkpoint_every=3, warmup_steps=1,
                     max_length=16)
    record = distill(config, toy_home, progress=False)
    out = Path(record.output)
    saved = json.loads((out / WINDOW_FILE).read_text())
    texts = toy_texts(400, 0)          # what make_toy_dataset wrote, the only training texts (no span views)
    counts = [len(ids) for ids in AutoTokenizer.from_pretrained(str(out))(texts, truncation=True,
                                                                          max_length=16)["input_ids"]]
    assert saved["window_tokens"] == window_from_lengths(counts, 16) and saved["training_texts"] == record.texts
    assert json.loads(record.card_path.read_text())["window"] == saved
    assert load_encoder(str(out), cache=False).window == saved["window_tokens"]
    (out / WINDOW_FILE).unlink()
    before = load_encoder(str(out), cache=False).fingerprint
    again = distill(config, toy_home, progress=False)
    assert again.reused and json.loads((out / WINDOW_FILE).read_text()) == saved
    assert load_encoder(str(out), cache=False).fingerprint != before


@pytest.mark.parametrize("best_step, steps, said", [(0, 20, True), (12, 20, False), (0, 0, False)])
def test_a_run_that_never_beat_its_start_says_so(best_step, steps, said):
    from tava_core.distill.run import no_gain_note
    from tava_core.records import StudentRecord

    record = StudentRecord(name="s", kind="transformer", output="/x", run_key="k", reused=False, texts=100,
                           validation_texts=10, sources=[], steps=steps, stopped="max_steps", initial_cosine=0.7506,
                           best_cosine=0.7506 if best_step == 0 else 0.8, best_step=best_step,
                           student_texts_per_second=1.0, teacher_texts_per_second=1.0, speedup=1.0)
    note = no_gain_note(record)
    assert (note is not None) is said
    if said:
        assert "20 training steps never beat the untrained start" in note and "0.7506" in note
