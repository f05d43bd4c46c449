"""Stage A steps: ``plan_distillation`` (teacher, datasets, span views; config checks) and
``distill`` (join texts with the teacher's vectors once, train, save the artifact), each returning a
typed record. The flow (flows/distill.py) embeds the teacher's vectors between the two.

The saved directory holds the student (sentence-transformers / model2vec layout), ``curves.png``,
``README.md`` (model card) and ``model_card.json`` (teacher, corpus, steps, validation, speed).
Nothing is written to the output until training has finished cleanly.
"""
from __future__ import annotations

import logging
import platform
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from ..encoders import Encoder, load_encoder, resolve_model_path
from ..encoders.windows import WINDOW_FILE, window_record
from ..errors import ConfigError
from ..home import TavaHome, find_dataset
from ..io import atomic_directory, write_json
from ..manifest import load_dataset_manifest, now_iso
from ..records import DistillPlan, StudentRecord, TrainingDataset
from ..reuse import finished_record
from ..reuse import run_key as make_run_key
from .config import DistillConfig
from .data import TrainingData, load_training_data, resolve_pairs, training_collections
from .plots import plot_curves
from .spans import SPAN_COLLECTION, write_span_dataset
from .students import StaticStudent, Student, TransformerStudent, fit_projection
from .trainer import Trainer, TrainResult, check_corpus_size, fitted_to_corpus, passes

CARD_JSON = "model_card.json"
log = logging.getLogger(__name__)


def output_dir(config: DistillConfig, home: TavaHome) -> Path:
    return Path(config.output).expanduser().resolve() if config.output else home.artifacts / "students" / config.name


def work_dir_for(out: Path) -> Path:
    """Checkpoints live beside the output (never inside it: the output is swapped in whole)."""
    return out.parent / f".{out.name}.checkpoints"


def check_student_config(config: DistillConfig, teacher_dim: int) -> None:
    """Catch configs that cannot work before anything is loaded or trained."""
    projection = config.projection
    if config.student == "transformer" and config.layers == [] and not projection and config.hidden_size != teacher_dim:
        raise ConfigError(f"a fresh student of hidden size {config.hidden_size} cannot match the teacher's "
                          f"{teacher_dim} dimensions without a projection",
                          hint=f"enable --projection, or set --hidden-size {teacher_dim}")
    if config.student == "static" and config.static_dim is not None:
        if config.static_dim > teacher_dim:
            raise ConfigError(f"static_dim {config.static_dim} is larger than the teacher's {teacher_dim}",
                              hint=f"choose --static-dim <= {teacher_dim}")
        if config.static_dim != teacher_dim and not projection:
            raise ConfigError(f"a static student of dimension {config.static_dim} cannot match the teacher's "
                              f"{teacher_dim} without a projection", hint="enable --projection")
    if config.student == "static" and config.student_base:
        raise ConfigError("student_base applies to a transformer student only (a static student's table is "
                          "distilled from the teacher's own vocabulary)", hint="drop --student-base or use --student transformer")
    if config.static_vocabulary and (config.student != "static" or config.static_init != "model2vec"):
        raise ConfigError("static_vocabulary expands a static student's model2vec table (each new word is "
                          "embedded by the teacher)", hint="use --student static --static-init model2vec, or "
                          "--static-vocabulary 0")
    if config.dataset_weights and len(config.dataset_weights) != len(config.datasets):
        raise ConfigError(f"{len(config.dataset_weights)} dataset weights for {len(config.datasets)} datasets",
                          hint="give one --dataset-weights per --datasets entry, in the same order (or none)")
    if any(w < 1 for w in config.dataset_weights):
        raise ConfigError(f"dataset weights must be whole numbers >= 1, got {config.dataset_weights}",
                          hint="a weight is how many times a dataset's texts are drawn per pass: 1, 2, 4, ...")
    check_schedule(config)


def no_gain_note(record: StudentRecord) -> Optional[str]:
    """What to tell a user whose training never beat the untrained start on held-out text (the start's
    weights are what was saved; the log's "0.751 -> 0.751" said it too quietly), else None."""
    if record.best_step != 0 or record.steps == 0:
        return None
    return (f"student {record.name}: {record.steps} training steps never beat the untrained start on held-out text "
            f"(cosine {record.initial_cosine:.4f}); the start's weights were kept and the trained ones discarded "
            "-- more steps (the warm-up alone may have used them), more text, or a lower learning rate may help")


def check_schedule(config: DistillConfig, option_prefix: str = "--") -> None:
    """The warm-up must end before the last step (``option_prefix``: how the command spells Stage A's
    options, '--distill-' in `tava run`, which checks this before its first stage)."""
    if config.warmup_steps >= config.steps and config.steps > 1:
        raise ConfigError(f"warmup_steps ({config.warmup_steps}) must be below steps ({config.steps})",
                          hint=f"lower {option_prefix}warmup-steps, or raise {option_prefix}steps")


def build_student(config: DistillConfig, teacher_dir: Path, teacher_dim: int, *,
                  cache_dir: Optional[Path] = None, texts: Sequence[str] = (), progress: bool = False) -> Student:
    """A fresh student; ``cache_dir`` keeps the model2vec distillation of a static student's teacher;
    ``texts`` (the training split's text) supply the words of ``config.static_vocabulary`` and the
    contexts of ``static_init="context"``."""
    projection = config.projection
    if config.student == "static":
        vocabulary: list[str] = []
        if config.static_vocabulary:
            from tokenizers import Tokenizer

            from .vocabulary import frequent_split_words

            tokenizer = Tokenizer.from_file(str(Path(teacher_dir) / "tokenizer.json"))
            vocabulary = frequent_split_words(texts, tokenizer, config.static_vocabulary)
        return StaticStudent.from_teacher(teacher_dir, static_dim=config.static_dim, projection=projection,
                                          teacher_dim=teacher_dim, max_length=config.max_length, seed=config.seed,
                                          init=config.static_init, cache_dir=cache_dir, vocabulary=vocabulary,
                                          texts=texts, context_tokens=config.static_context_tokens,
                                          progress=progress)
    base_dir = resolve_model_path(config.student_base) if config.student_base else teacher_dir
    return TransformerStudent.from_teacher(base_dir, layers=config.layers, projection=projection,
                                           teacher_dim=teacher_dim, max_length=config.max_length,
                                           hidden_size=config.hidden_size, num_layers=config.num_layers,
                                           seed=config.seed, freeze_embeddings=config.freeze_embeddings)


def measure_speed(encoder: Encoder, texts: Sequence[str], batch_size: int = 64) -> float:
    """Texts per second encoding ``texts`` as queries (one warm-up batch first)."""
    encoder.encode(list(texts[:batch_size]), kind="query", batch_size=batch_size)
    start = time.perf_counter()
    encoder.encode(list(texts), kind="query", batch_size=batch_size)
    return len(texts) / max(1e-9, time.perf_counter() - start)


def student_record(card: dict[str, Any], out: Path, *, reused: bool) -> StudentRecord:
    """The small record of a saved student, from its model card."""
    v, s, t = card["validation"], card["speed"], card["training"]
    return StudentRecord(
        name=card["name"], kind=card["kind"], output=str(out), run_key=card["run_key"], reused=reused,
        texts=card["corpus"]["texts"], validation_texts=card["corpus"]["validation"], sources=card["corpus"]["sources"],
        steps=t["steps_done"], stopped=t["stopped"], initial_cosine=v["initial_cosine"], best_cosine=v["best_cosine"],
        best_step=v["best_step"], student_texts_per_second=s["student_texts_per_second"],
        teacher_texts_per_second=s["teacher_texts_per_second"], speedup=s["speedup"])


def plan_distillation(config: DistillConfig, home: TavaHome) -> DistillPlan:
    """Teacher identity and the (dataset, collections) whose teacher vectors must exist; raises on a
    config that cannot work before anything is embedded or trained. Writes the span datasets
    (derived, cheap) so they can be embedded like the rest."""
    teacher = load_encoder(config.teacher)
    check_student_config(config, teacher.dim)
    datasets = []
    for dataset in config.datasets:
        dataset_dir = find_dataset(home, dataset)
        manifest = load_dataset_manifest(dataset_dir)
        datasets.append(TrainingDataset(dataset=str(dataset_dir), name=manifest.name, collections=training_collections(
            list(manifest.collections), config.collections, dataset_dir)))
    spans = [TrainingDataset(dataset=str(d), name=d.name, collections=[SPAN_COLLECTION])
             for d in span_datasets(config, home)]
    return DistillPlan(teacher=teacher.info(), datasets=datasets, span_datasets=spans)


def row_draws(config: DistillConfig, home: TavaHome, data: TrainingData) -> Optional[np.ndarray]:
    """Times each training text is drawn per pass (``config.dataset_weights``: a dataset's weight also
    weighs its span views), or None when every weight is 1."""
    if not config.weighted:
        return None
    weight_of = {str(find_dataset(home, d).resolve()): w for d, w in zip(config.datasets, config.dataset_weights,
                                                                       strict=True)}
    draws = np.ones(len(data.texts), np.int64)
    start = 0
    for source in data.sources:
        if source["dataset"] == "max_texts":    # load_training_data's marker of a cut, not a source
            continue
        directory = Path(source["dataset_dir"])
        if str(directory.resolve()) not in weight_of:   # a span dataset: its texts' dataset weighs it
            directory = Path(load_dataset_manifest(directory).source)
        draws[start:start + source["rows"]] = weight_of.get(str(directory.resolve()), 1)
        start += source["rows"]
    return draws


def span_datasets(config: DistillConfig, home: TavaHome) -> list[Path]:
    """Write (or reuse) the span dataset of every training dataset (none when ``span_views`` is 0).

    With ``max_texts``, spans are cut only from the texts that are kept (datasets in order)."""
    if not config.span_views:
        return []
    remaining = config.max_texts
    out = []
    for dataset in config.datasets:
        if remaining is not None and remaining <= 0:
            break
        dataset_dir = find_dataset(home, dataset)
        manifest = load_dataset_manifest(dataset_dir)
        collections = training_collections(list(manifest.collections), config.collections, dataset_dir)
        rows = sum(manifest.collections[c].rows for c in collections)
        # A limit that cuts nothing is no limit: the spans (and their cached vectors) are shared.
        limit = remaining if remaining is not None and remaining < rows else None
        out.append(write_span_dataset(home, dataset_dir, collections, config.span_views, config.seed, limit=limit,
                                      sample=config.span_documents, titles=config.title_views))
        if remaining is not None:
            remaining -= rows
    return out


def prepare_training(config: DistillConfig, home: TavaHome, teacher: Encoder, *,
                     embed_missing: bool = False, progress: bool = False) -> TrainingData:
    """Resolve and load (dataset, collection, teacher vectors) pairs, checking every contract.

    Span views come after the texts (so ``max_texts`` trims texts, not spans). With
    ``embed_missing`` the teacher's vectors of the spans are computed here when not cached (the
    flow embeds them itself, one task per shard)."""
    pairs = resolve_pairs(home, config.datasets, config.collections, config.teacher_vectors, teacher.name,
                          teacher.fingerprint)
    base = load_training_data(pairs, teacher_fingerprint=teacher.fingerprint, teacher_dim=teacher.dim,
                              max_texts=config.max_texts)
    spans = span_datasets(config, home)
    if not spans:
        return base
    if embed_missing:
        from ..embed import EmbedConfig, embed_dataset

        for dataset_dir in spans:
            embed_dataset(EmbedConfig(dataset=str(dataset_dir), encoder=config.teacher), home,
                          show_progress=progress)
    span_pairs = resolve_pairs(home, [str(d) for d in spans], [SPAN_COLLECTION], [], teacher.name, teacher.fingerprint)
    extra = load_training_data(span_pairs, teacher_fingerprint=teacher.fingerprint, teacher_dim=teacher.dim)
    return TrainingData(texts=base.texts + extra.texts, vectors=np.concatenate([base.vectors, extra.vectors]),
                        sources=base.sources + extra.sources)


def start_projection(student: Student, texts: Sequence[str], vectors: np.ndarray, train_rows: np.ndarray,
                     config: DistillConfig) -> Optional[float]:
    """Fit a transformer student's projection start (``fit_projection``) on ``config.projection_fit_texts``
    training rows drawn with the run's seed; the sample's mean cosine, or None when there is nothing to fit
    (a static student, no projection, ``fit_projection`` off)."""
    if not (config.fit_projection and isinstance(student, TransformerStudent) and student.projection is not None):
        return None
    sample = train_rows[np.random.default_rng(config.seed).permutation(len(train_rows))[:config.projection_fit_texts]]
    return fit_projection(student, [texts[i] for i in sample], vectors[sample])


def distill(config: DistillConfig, home: TavaHome | str | Path | None = None, *,
            progress: bool = True, data: TrainingData | None = None) -> StudentRecord:
    """Train and save a student (the model card is ``record.card_path``); an identical finished run
    at the output directory is reused (see tava_core.reuse). The teacher is loaded and the training
    data joined once, here."""
    home = home if isinstance(home, TavaHome) else TavaHome(home)
    if config.threads:
        import torch

        torch.set_num_threads(config.threads)
    teacher = load_encoder(config.teacher)
    teacher_dir = resolve_model_path(config.teacher.model)
    check_student_config(config, teacher.dim)
    data = data or prepare_training(config, home, teacher, embed_missing=True, progress=progress)
    partner, targets = None, None
    if config.blend_partner:
        from .residual import residual_record

        partner = load_encoder(config.blend_partner)
        targets = residual_record(partner, config.blend_partner_weight, spec=config.blend_partner,
                                  dim=data.vectors.shape[1])
    source = ", ".join(f"{s['dataset']}/{s['collection']}" for s in data.sources)
    fitted = fitted_to_corpus(len(data.texts), config)
    if fitted.steps < config.steps:
        log.warning("%d training texts are too few for %d steps of %d within %g passes: training %d steps "
                    "(fit_steps; warm-up %d)", len(data.texts), config.steps, config.batch_size, config.max_epochs,
                    fitted.steps, fitted.warmup_steps)
    elif fitted.steps > config.steps:
        log.info("%d training texts: %d steps of %d would pass over them %.2f times; training %d steps "
                 "(fit_steps: min_epochs %g, at most %g x; warm-up %d)", len(data.texts), config.steps,
                 config.batch_size, passes(len(data.texts), config), fitted.steps,
                 config.min_epochs, config.max_fitted_steps_factor, fitted.warmup_steps)
    config = fitted
    split = check_corpus_size(len(data.texts), config, source=source)
    out = output_dir(config, home)
    # the key is known before residual targets are computed (the partner encodes every text: minutes to an
    # hour), so a finished run is reused without them
    keyed = replace(data, targets=targets)
    run_key = make_run_key({"config": config.training_key(), "data": keyed.portable_key})
    # a run recorded before the keys left out directories (session 43) is still found where it was made
    legacy_key = make_run_key({"config": config.training_key(portable=False), "data": keyed.key})
    if (done := finished_record(out / CARD_JSON, [run_key, legacy_key], required=["model.safetensors"])) is not None:
        if done["kind"] == "transformer" and not (out / WINDOW_FILE).is_file():
            # a student saved before windows existed (session 51) gets its window, not a retraining
            write_json(out / WINDOW_FILE, student_window(out, data.texts, config.max_length))
        return student_record(done, out, reused=True)
    if partner is not None and config.blend_partner is not None:
        from .residual import towards_residual

        data = towards_residual(data, partner, config.blend_partner_weight, spec=config.blend_partner,
                                progress=progress, home=home)

    # building a student and its starting projection takes seconds to minutes before the first step's bar
    log.info("Stage A: building a %s student of %s and fitting its start on %d training texts (%d held out)",
             config.student, teacher.name, len(split.train), len(data.texts) - len(split.train))
    student = build_student(config, teacher_dir, teacher.dim,
                            cache_dir=home.root / "cache" / "model2vec" / teacher.fingerprint[:12],
                            texts=[data.texts[i] for i in split.train], progress=progress)
    trainer = Trainer(student, data.texts, data.vectors, config, work_dir_for(out),
                      split=replace(split, draws=row_draws(config, home, data)),
                      data_key=data.portable_key, progress=progress)
    if not (trainer.checkpoint_dir / "training_state.json").is_file():  # a resumed run has its projection
        start_projection(student, data.texts, data.vectors, split.train, config)
    result = trainer.train()
    card = save_student(student, result, config, out, teacher=teacher, data=data, run_key=run_key,
                        val_texts=trainer.val_texts)
    trainer.clear_checkpoints()
    return student_record(card, out, reused=False)


def save_student(student: Student, result: TrainResult, config: DistillConfig, out: Path, *, teacher: Encoder,
                 data: TrainingData, run_key: str, val_texts: Sequence[str]) -> dict[str, Any]:
    """Write the student, curves and model card into ``out`` atomically; returns the card."""
    from ..config import EncoderSpec
    from ..encoders import load_encoder as _load

    with atomic_directory(out) as tmp:
        student.save(tmp)
        window = student_window(tmp, data.texts, config.max_length) if isinstance(student, TransformerStudent) else None
        if window is not None:
            write_json(tmp / WINDOW_FILE, window)
        plot_curves(result.history, result.validation, tmp / "curves.png",
                    title=f"{config.name}: {student.kind} student of {teacher.name}")
        # Speed: the saved model, loaded as tava loads it, against the teacher on held-out texts.
        speed_texts = list(val_texts[:512])
        saved = _load(EncoderSpec(model=str(tmp)), cache=False)
        student_tps = measure_speed(saved, speed_texts)
        teacher_tps = measure_speed(teacher, speed_texts)
        check = saved.encode(speed_texts[:256], kind="document")
        card = {
            "name": config.name, "kind": student.kind, "created": now_iso(), "run_key": run_key,
            "teacher": {**teacher.info(), "model": config.teacher.model},
            "student": {"dim": student.dim, "layers": getattr(student, "kept_layers", None),
                        "projection": getattr(student, "projection", None) is not None,
                        "parameters": int(sum(p.numel() for p in student.parameters()))},
            "corpus": {"texts": len(data.texts), "train": len(data.texts) - len(val_texts),
                       "validation": len(val_texts), "sources": data.sources},
            # what it was trained towards: the teacher's vectors, or residual targets against a blend partner
            "targets": data.targets or {"kind": "teacher"},
            "training": {**result.summary(), "config": config.model_dump(mode="json")},
            "validation": {"curve": result.validation, "initial_cosine": result.initial_validation_cosine,
                           "best_cosine": result.best_validation_cosine, "best_step": result.best_step,
                           "saved_model_cosine": _mean_cosine(check, teacher.encode(speed_texts[:256]))},
            "speed": {"student_texts_per_second": student_tps, "teacher_texts_per_second": teacher_tps,
                      "speedup": student_tps / max(1e-9, teacher_tps), "batch_size": 64,
                      "texts": "held-out corpus texts encoded as queries", "machine": platform.machine()},
            "curves": "curves.png",
            "window": window,
        }
        write_json(tmp / CARD_JSON, card)
        (tmp / "README.md").write_text(model_card_markdown(card, out))
    return card


def student_window(student_dir: Path, texts: Sequence[str], max_length: int) -> dict[str, Any]:
    """``window.json`` of a transformer student: the longest span it reads at a time, from the token
    counts of the texts it was trained on (tava_core/encoders/windows.py says why)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(student_dir))
    counts = [len(ids) for ids in tokenizer(list(texts), truncation=True, max_length=max_length)["input_ids"]]
    return window_record(counts, max_length)


def _mean_cosine(a: np.ndarray, b: np.ndarray) -> float:
    a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
    return float((a * b).sum(1).mean())


def residual_note(card: dict[str, Any]) -> str:
    """The card's sentence on residual targets (distill.residual), empty for a student of the teacher."""
    targets = card.get("targets") or {}
    if targets.get("kind") != "residual":
        return ""
    return (f"\n\n**A blend member.** Trained towards the teacher's vectors less {targets['weight']:g} x those of "
            f"`{targets['partner']}` (fingerprint `{targets['partner_fingerprint'][:12]}`), so it is meant to be "
            "blended with that encoder (`tava blend`), not used alone; its held-out cosine below is to those targets.")


def model_card_markdown(card: dict[str, Any], path: Path) -> str:
    t, v, s, tr = card["teacher"], card["validation"], card["speed"], card["training"]
    sources = ", ".join(f"{x['dataset']}/{x['collection']} ({x['rows']})" for x in card["corpus"]["sources"])
    if card["kind"] == "static":
        usage = ("```python\nfrom sentence_transformers import SentenceTransformer\n"
                 "model = SentenceTransformer('PATH')   # StaticEmbedding + Normalize\n"
                 "# or: from model2vec import StaticModel; StaticModel.from_pretrained('PATH')\n"
                 "# or: from tava_core.encoders import load_encoder; load_encoder('PATH')\n```")
    else:
        usage = ("```python\nfrom sentence_transformers import SentenceTransformer\n"
                 "model = SentenceTransformer('PATH')\n"
                 "# or: from tava_core.encoders import load_encoder; load_encoder('PATH')\n```")
        if card.get("window"):
            usage += (f"\n\ntava reads a text longer than {card['window']['window_tokens']} tokens (`window.json`: the length of "
                      "the texts this student was trained on) in windows of that length and averages their vectors, "
                      "weighted by tokens; sentence-transformers reads it whole, which on long queries keeps less "
                      "of the teacher (tava_core/encoders/windows.py).")
    usage = usage.replace("PATH", str(path))
    return f"""---
library_name: sentence-transformers
tags: [sentence-transformers, feature-extraction, distillation, tava]
---
# {card['name']}

A **{card['kind']} student** distilled by tava (Stage A) from the teacher **{t['model']}**
(fingerprint `{t['fingerprint'][:12]}`, {t['dim']}-d) on unlabeled text, so that its vectors land
in the teacher's space: queries encoded by this student can be searched against documents
encoded by the teacher.{residual_note(card)}

| | |
|---|---|
| student dimension | {card['student']['dim']} |
| parameters | {card['student']['parameters']:,} |
| layers kept | {card['student']['layers']} |
| training corpus | {card['corpus']['texts']:,} texts: {sources} |
| steps | {tr['steps_done']} ({tr['stopped']}; best at step {v['best_step']}) |
| held-out cosine to teacher | {v['initial_cosine']:.4f} at start -> **{v['best_cosine']:.4f}** |
| speed (texts/s, batch 64) | student {s['student_texts_per_second']:.0f} vs teacher {s['teacher_texts_per_second']:.0f} (**{s['speedup']:.1f}x**) |

![training curves](curves.png)

## Use
{usage}
"""
