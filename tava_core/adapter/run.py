"""Stage B end to end, in-process (no Prefect): vector directories in, adapter directory out.

``train_adapter_from_arrays`` is the array-level core (used by the flow and the benchmark);
``train_adapter_from_dirs`` adds reading and checking the vector directories and saving.
``check_adapter_inputs`` and ``train_adapter`` are the steps the flow (flows/adapt.py) chains.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np

from ..errors import ConfigError
from ..home import TavaHome, slug
from ..records import AdapterInputs, AdapterRecord
from .baselines import fit_baselines
from .config import AdapterConfig
from .data import (
    AdapterData,
    VectorSide,
    check_training_inputs,
    check_vectors,
    join_pairs,
    query_like_rows,
    read_side,
    split_paired,
    split_unpaired,
    unpaired_rows,
)
from .fit import train_best_of_seeds
from .io import load_adapter, read_adapter_config, save_adapter
from .keep import keep_memory, memory_for
from .metrics import alignment_metrics
from .report import markdown_report, plot_curves
from .selection import SelectionSet, retrieval_pool
from .trainer import TrainingResult


@dataclass
class AdapterRun:
    """What one training run produced (the adapter is in memory; ``directory`` once saved)."""

    result: TrainingResult
    report: dict[str, Any]
    data: AdapterData
    directory: Optional[Path] = None


MIN_BASELINE_PAIRS = 2   # fewest pairs the closed-form references (ridge, Procrustes) are fitted on


def evaluate_maps(data: AdapterData, result: TrainingResult, config: AdapterConfig,
                  baseline_x: np.ndarray, baseline_y: np.ndarray) -> tuple[dict[str, dict], dict[str, str]]:
    """Held-out metrics of the adapter and of every closed-form baseline fitted on ``baseline_x/y``."""
    if not data.has_heldout:
        return {}, {}
    pool = retrieval_pool(data, config)  # the same documents the trainer's retrieval overlap uses
    metrics = {"adapter": alignment_metrics(result.adapter.map_numpy(data.heldout_student), data.heldout_teacher,
                                            k=config.knn_k, pool=pool)}
    notes = {}
    if len(baseline_x) < MIN_BASELINE_PAIRS:   # unpaired sides sharing a few texts, all held out: nothing to fit on
        return metrics, {"baselines": f"not fitted: {len(baseline_x)} pairs left beside the held-out ones"}
    for name, linear_map in fit_baselines(baseline_x, baseline_y).items():
        metrics[name] = alignment_metrics(linear_map(data.heldout_student), data.heldout_teacher, k=config.knn_k,
                                          pool=pool)
        if linear_map.note:
            notes[name] = linear_map.note
    if data.paired is False:
        notes["baselines"] = "fitted on paired vectors the unpaired adapter never saw (a paired reference)"
    return metrics, notes


def train_adapter_from_arrays(student: np.ndarray, teacher: np.ndarray, config: AdapterConfig, *,
                              name: str = "adapter", student_info: Optional[dict] = None,
                              teacher_info: Optional[dict] = None, warm_start: Optional[str | Path] = None,
                              show_progress: bool = False, split_seed: Optional[int] = None,
                              domain: Optional[tuple[np.ndarray, np.ndarray]] = None,
                              query_like: Optional[np.ndarray] = None,
                              selection: Optional[SelectionSet] = None,
                              unpaired_extra: Optional[tuple[np.ndarray, np.ndarray]] = None) -> AdapterRun:
    """Train on row-aligned ``student``/``teacher`` vectors (for unpaired mode, they are split into
    disjoint halves so no text is seen on both sides; held-out pairs only measure). ``split_seed`` draws
    the held-out pairs (default: the first training seed), so separate single-seed runs can share the
    split that best-of-N seeds compare on. ``query_like``: a bool per row, True for query-like texts (span
    views; ``query_like_rows``), which the start, early stopping and the keep-learned gate compare on.
    ``selection``: label-free in-domain rows that early stopping, the best seed and the gate compare on instead
    (``SelectionSet``; never trained on). ``unpaired_extra``: unpaired mode's texts of one side only (each
    side's vectors without a partner: ``unpaired_rows``), trained on beside the halves of the pairs; with
    them the pairs may be none at all (then nothing is held out and the unsupervised criterion alone chooses)."""
    extra_student, extra_teacher = unpaired_extra if unpaired_extra is not None else (None, None)
    if unpaired_extra is not None and config.mode != "unpaired":
        raise ConfigError("texts of one side only (unpaired_extra) train an unpaired adapter only")
    check_vectors(student if extra_student is None else np.concatenate([student, extra_student]), "student vectors")
    check_vectors(teacher if extra_teacher is None else np.concatenate([teacher, extra_teacher]), "teacher vectors")
    if len(student) != len(teacher):
        raise ConfigError(f"{len(student)} student rows but {len(teacher)} teacher rows; arrays must be row-aligned")
    if query_like is not None and len(query_like) != len(student):
        raise ConfigError(f"query_like has {len(query_like)} entries for {len(student)} rows; one per row")
    warm = None
    if warm_start is not None:
        warm = load_adapter(warm_start)
        if (warm.input_dim, warm.output_dim) != (student.shape[1], teacher.shape[1]):
            raise ConfigError(f"warm-start adapter maps {warm.input_dim}-d -> {warm.output_dim}-d, the vectors are "
                              f"{student.shape[1]}-d -> {teacher.shape[1]}-d", path=warm_start,
                              hint="warm-start only from an adapter of the same student and teacher")
        warm.attach_memory(None)  # trains as a map; its memory is rebuilt from this run's pairs afterwards
        warm.train()
    split_seed = config.seeds[0] if split_seed is None else split_seed
    data = (split_paired(student, teacher, config, split_seed, query_like) if config.mode == "paired"
            else split_unpaired(student, teacher, config, split_seed, query_like=query_like,
                                extra_student=extra_student, extra_teacher=extra_teacher))
    data.selection = selection
    if min(len(data.student), len(data.teacher)) < config.batch_size:
        raise ConfigError(f"after holding out {len(data.heldout_student)} pairs only "
                          f"{min(len(data.student), len(data.teacher))} training vectors are left, fewer than a "
                          f"batch of {config.batch_size}", hint="give more texts or lower --batch-size")
    result, runs = train_best_of_seeds(data, config, warm_start=warm, show_progress=show_progress, domain=domain)
    memory = keep_memory(result.adapter, data, config)
    if data.paired:
        fit_x, fit_y = data.student, data.teacher
    else:  # baselines need pairs: the same held-out split, all other pairs (a paired reference)
        reference = split_paired(student, teacher, config, split_seed)
        fit_x, fit_y = reference.student, reference.teacher
    metrics, notes = evaluate_maps(data, result, config, fit_x, fit_y)
    if memory["memory_kept"]:
        # measured on the training pairs' memory; saved with every pair (a held-out document is a query's
        # likely neighbour too)
        every_pair = memory_for(result.adapter, np.concatenate([data.student, data.heldout_student]),
                                np.concatenate([data.teacher, data.heldout_teacher]), config)
        result.adapter.attach_memory(every_pair)
        memory["rows"] = every_pair.rows
    report = {
        "name": name, "mode": config.mode,
        "student": {"name": "student", "dim": int(student.shape[1]), **(student_info or {})},
        "teacher": {"name": "teacher", "dim": int(teacher.shape[1]), **(teacher_info or {})},
        "data": {"train_student": len(data.student), "train_teacher": len(data.teacher),
                 "heldout_pairs": len(data.heldout_student),
                 "heldout_query_like": (0 if data.heldout_query_like is None
                                        else int(np.sum(data.heldout_query_like))),
                 "selection_queries": 0 if selection is None else len(selection.queries),
                 "selection_documents": 0 if selection is None else len(selection.documents),
                 # each side's in-domain vectors for the unsupervised start's last step (--domain-*-vectors)
                 "domain_student": 0 if domain is None else len(domain[0]),
                 "domain_teacher": 0 if domain is None else len(domain[1])},
        "selection": {"rows": config.selection_rows, **result.keep}, "memory": memory,
        "training": result.summary(), "seed_runs": runs, "metrics": metrics, "baseline_notes": notes,
        "warm_start": str(warm_start) if warm_start else None,
        "config": config.model_dump(mode="json"),
    }
    return AdapterRun(result=result, report=report, data=data)


def save_run(run: AdapterRun, directory: str | Path, *, student_spec: Optional[dict] = None) -> Path:
    """Save adapter + report (JSON, markdown, PNG) atomically into ``directory``."""
    import json

    report = run.report
    # identity is far off in any real pair of spaces and would squash the plot's scale
    baselines = {k: v for k, v in report["metrics"].items() if k not in {"adapter", "identity"}}
    files = {
        "report.json": lambda p: p.write_text(json.dumps(report, indent=2, sort_keys=True, default=str) + "\n"),
        "report.md": lambda p: p.write_text(markdown_report(report)),
        "curves.png": lambda p: plot_curves(run.result.history, run.result.evals, p, baselines),
    }
    if run.result.reverse is not None:  # the inverse map (teacher -> student), for `tava translate --direction inverse`
        from .io import write_adapter_files

        reverse = run.result.reverse
        files["reverse"] = lambda p: write_adapter_files(p, reverse, metadata={"direction": "inverse"})
    metadata = {"lineage": {"student": report["student"], "teacher": report["teacher"],
                            "warm_start": report.get("warm_start"), "data": report["data"]},
                "metrics": report["metrics"].get("adapter", {}), "training": report["training"],
                "config": report["config"]}
    run.directory = save_adapter(directory, run.result.adapter, metadata=metadata, student=student_spec,
                                 extra_files=files)
    return run.directory


def default_name(student: VectorSide, teacher: VectorSide) -> str:
    return slug(f"{student.encoder.get('name', 'student')}-to-{teacher.encoder.get('name', 'teacher')}")


def student_spec_for(config: AdapterConfig, student: VectorSide) -> Optional[dict]:
    """The student's EncoderSpec for tava_encoder.json: --student, else the manifest's encoder name
    when it is an existing path or alias."""
    from ..config import EncoderSpec
    from ..encoders import ALIASES

    model = config.student
    if model is None:
        name = str(student.encoder.get("name", ""))
        model = name if (name in ALIASES or Path(name).is_dir()) else None
    if model is None:
        return None
    if model not in ALIASES and Path(model).exists():
        model = str(Path(model).resolve())
    return EncoderSpec(model=model).model_dump(mode="json")


def load_training_vectors(config: AdapterConfig) -> tuple[VectorSide, VectorSide, list[str], np.ndarray, np.ndarray]:
    """Read and check both sides, join pairs; raises before any training on bad input."""
    student = read_side(config.student_vectors, "student")
    teacher = read_side(config.teacher_vectors, "teacher")
    keys, x, y = join_pairs(student, teacher)
    check_training_inputs(student, teacher, len(keys), config.batch_size, config.mode)
    if config.warm_start:
        arch = read_adapter_config(config.warm_start)["architecture"]
        if (arch["input_dim"], arch["output_dim"]) != (student.dim, teacher.dim):
            raise ConfigError(f"warm-start adapter maps {arch['input_dim']}-d -> {arch['output_dim']}-d, the vectors "
                              f"are {student.dim}-d -> {teacher.dim}-d", path=config.warm_start,
                              hint="warm-start only from an adapter of the same student and teacher")
    return student, teacher, keys, x, y


def _read_other_texts(student_dirs: list[str], teacher_dirs: list[str], student: VectorSide, teacher: VectorSide,
                      what: str) -> tuple[VectorSide, VectorSide]:
    """Each side's vectors of further texts (``what``: "domain" or "selection"), checked to come from the
    same encoder as that side's training vectors."""
    pairs = ((read_side(student_dirs, f"{what} student"), student, f"--{what}-student-vectors"),
             (read_side(teacher_dirs, f"{what} teacher"), teacher, f"--{what}-teacher-vectors"))
    for other, side, option in pairs:
        if other.fingerprint != side.fingerprint or other.dim != side.dim:
            raise ConfigError(f"{option} come from encoder {other.fingerprint[:12] or '?'} ({other.dim}-d), the "
                              f"training vectors of that side from {side.fingerprint[:12] or '?'} ({side.dim}-d)",
                              path=other.dirs[0], hint=f"embed the {what} texts with the same encoder as that side")
        check_vectors(other.vectors, other.dirs[0])
    return pairs[0][0], pairs[1][0]


def load_domain_vectors(config: AdapterConfig, student: VectorSide, teacher: VectorSide
                        ) -> Optional[tuple[np.ndarray, np.ndarray]]:
    """The in-domain vectors of each side (``domain_*_vectors``), checked to come from the same encoder
    as that side's training vectors; None when not given."""
    if not config.domain_student_vectors:
        return None
    domain_student, domain_teacher = _read_other_texts(config.domain_student_vectors, config.domain_teacher_vectors,
                                                       student, teacher, "domain")
    return domain_student.vectors, domain_teacher.vectors


def load_selection_vectors(config: AdapterConfig, student: VectorSide, teacher: VectorSide
                           ) -> Optional[SelectionSet]:
    """The in-domain selection rows (``selection_*_vectors``: documents and their span views embedded by both
    encoders, joined by id), checked against each side's encoder; None when not given."""
    if not config.selection_student_vectors:
        return None
    chosen_student, chosen_teacher = _read_other_texts(config.selection_student_vectors,
                                                       config.selection_teacher_vectors, student, teacher, "selection")
    keys, x, y = join_pairs(chosen_student, chosen_teacher)
    return SelectionSet.from_rows(x, y, query_like_rows(keys))


def train_adapter_from_dirs(config: AdapterConfig, home: TavaHome | None = None, *,
                            show_progress: bool = False) -> AdapterRun:
    """Read the vector directories, train, and save under ``<home>/artifacts/adapters/<name>/``."""
    home = home or TavaHome()
    run, student = _train_from_vector_dirs(config, name=None, show_progress=show_progress)
    save_run(run, home.artifacts / "adapters" / slug(run.report["name"]), student_spec=student_spec_for(config, student))
    return run


def _train_from_vector_dirs(config: AdapterConfig, *, name: Optional[str], show_progress: bool
                            ) -> tuple[AdapterRun, VectorSide]:
    """Read and check the vector directories ``config`` names and train (not saved); also returns the student side."""
    student, teacher, keys, x, y = load_training_vectors(config)
    run = train_adapter_from_arrays(x, y, config, name=name or config.name or default_name(student, teacher),
                                    student_info=dict(student.encoder, dirs=student.dirs),
                                    teacher_info=dict(teacher.encoder, dirs=teacher.dirs),
                                    warm_start=config.warm_start, show_progress=show_progress,
                                    domain=load_domain_vectors(config, student, teacher),
                                    query_like=query_like_rows(keys),
                                    selection=load_selection_vectors(config, student, teacher),
                                    unpaired_extra=unpaired_rows(student, teacher, keys) if config.mode == "unpaired"
                                    else None)
    return run, student


# ----------------------------------------------------------------------------- steps the flow chains

def inputs_checksum(config: AdapterConfig) -> str:
    """Hash of every input shard's sha256 (from the manifests) and the warm-start weights."""
    from ..io import stable_hash
    from ..manifest import load_vector_manifest
    from .io import adapter_weights_hash

    shards = []
    for directory in [*config.student_vectors, *config.teacher_vectors, *config.domain_student_vectors,
                      *config.domain_teacher_vectors, *config.selection_student_vectors,
                      *config.selection_teacher_vectors]:
        manifest = load_vector_manifest(directory)
        shards.append([manifest.fingerprint, [s.sha256 for s in manifest.shards]])
    warm = adapter_weights_hash(config.warm_start) if config.warm_start else None
    return stable_hash([shards, warm])


def check_adapter_inputs(config: AdapterConfig) -> AdapterInputs:
    """Read both sides, join pairs and raise on bad input (dims, fingerprints, NaN, too few pairs)."""
    student, teacher, keys, _, _ = load_training_vectors(config)
    return AdapterInputs(name=config.name or default_name(student, teacher), pairs=len(keys),
                         student={"encoder": student.encoder, "rows": len(student.keys)},
                         teacher={"encoder": teacher.encoder, "rows": len(teacher.keys)},
                         inputs_checksum=inputs_checksum(config))


# Settings that name directories: their content is in the inputs checksum (shard sha256s, warm-start weights),
# and the student is only what tava_encoder.json names (pointed at the home's own copy on reuse).
_PATH_FIELDS = ("student_vectors", "teacher_vectors", "domain_student_vectors", "domain_teacher_vectors",
                "selection_student_vectors", "selection_teacher_vectors", "warm_start", "student")


def adapter_run_key(config: AdapterConfig, checksum: str, *, portable: bool = True) -> str:
    """The run's key. ``portable`` (written since session 43): the settings without the directories they name,
    plus how many directories each list holds (the checksum lists their shards in one sequence), so a home
    copied or mounted elsewhere finds its adapters; ``portable=False``: the key reports held before."""
    from ..io import stable_hash

    if not portable:
        return stable_hash([checksum, config.model_dump(mode="json")])
    lists = {name: len(getattr(config, name)) for name in _PATH_FIELDS if isinstance(getattr(config, name), list)}
    return stable_hash([checksum, config.model_dump(mode="json", exclude=set(_PATH_FIELDS)), lists,
                        config.warm_start is not None])


def _point_at_student(out: Path, student: str) -> None:
    """A reused adapter names the student given now (the same student by content -- its fingerprint is
    checked at load -- where this home keeps it) rather than where the home was when it was trained."""
    from ..encoders.mapped import rename_inner_encoder

    if (out / "tava_encoder.json").is_file() and Path(student).exists():
        rename_inner_encoder(out, "student", str(Path(student).resolve()))


def train_adapter(config: AdapterConfig, inputs: AdapterInputs, out_dir: str | Path, *,
                  show_progress: bool = False) -> AdapterRecord:
    """Train (best of the configured seeds) and save adapter + report atomically into ``out_dir``;
    an identical finished run there is reused (tava_core.reuse). A diverged run raises
    TrainingError and leaves ``out_dir`` as it was."""
    from ..reuse import finished_record

    out = Path(out_dir)
    key = adapter_run_key(config, inputs.inputs_checksum)
    # a run recorded before the key left out directories (session 43) is still found where it was made
    report = finished_record(out / "report.json", [key, adapter_run_key(config, inputs.inputs_checksum, portable=False)],
                             required=["model.safetensors"])
    reused = report is not None
    if report is not None:
        key = str(report.get("run_key", key))
        if config.student is not None:
            _point_at_student(out, config.student)
    if report is None:
        run, student = _train_from_vector_dirs(config, name=inputs.name, show_progress=show_progress)
        run.report["run_key"] = key
        save_run(run, out, student_spec=student_spec_for(config, student))
        report = run.report
    return AdapterRecord(name=inputs.name, adapter_dir=str(out), run_key=key, metrics=report["metrics"],
                         training=report["training"], loadable_encoder=(out / "tava_encoder.json").is_file(),
                         reused=reused)
