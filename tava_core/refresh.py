"""Nightly adapter refresh, the pure-Python steps (flows/refresh.py tells the story with them).

    new files in the drop zone (by sha256, against the state file)  ->  ingest them as one batch
    ->  embed the batch with the student and the teacher  ->  pairs (+ a replay sample of earlier
    batches)  ->  continue training the current adapter  ->  evaluate candidate vs current
    ->  recalibrate a confidence router for the candidate (inside its directory: published with it)
    ->  promote only if not worse than current - threshold (plain and routed nDCG@10)
    ->  drift: low-confidence share of the new batch against the previous one (the first night: against
        the router's calibration share)  ->  record what was consumed

State lives in ``<home>/refresh/<name>/state.json`` (written only when a run finishes, so a
failed run leaves its files pending); candidates are staged in ``<home>/refresh/<name>/candidates``
and enter the registry (``adapters/<name>``) only when promoted.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal, Optional

import numpy as np
from pydantic import Field

from .config import EncoderSpec, TavaModel
from .errors import ConfigError, InputError
from .home import TavaHome, slug
from .io import atomic_directory, read_json, sha256_file, write_json
from .manifest import Collection, DatasetManifest, now_iso, save_manifest
from .registry import Registry
from .route.config import RouterSettings, ThresholdPolicy

if TYPE_CHECKING:
    from .route.drift import DriftTexts

log = logging.getLogger(__name__)

DROP_SUFFIXES = (".jsonl", ".jsonl.gz", ".ndjson", ".parquet", ".txt")
BATCH_COLLECTION = "texts"
EVAL_MODE: Final = "adapted/teacher"  # Final: its Literal type fits EvalConfig.modes


class RefreshConfig(TavaModel):
    """What the nightly adapter refresh watches, trains and how it decides to promote."""

    name: str = Field("nightly", description=(
        "Registry name of the adapter: versions live in <home>/registry/adapters/<name>/versions, "
        "the promoted one is <name>/current."))
    drop_zone: Optional[str] = Field(None, description=(
        "Folder where new texts arrive (.jsonl, .jsonl.gz, .parquet, .txt files, searched recursively); "
        "a file is new until its sha256 was consumed by a finished run. Empty = <home>/dropzone/<name>."))
    text_field: str = Field("text", description="Field/column holding the text in .jsonl and .parquet files.")
    on_bad_record: Literal["error", "skip"] = Field("error", description=(
        "'error': a malformed record stops the run (naming file and line; its files stay pending); "
        "'skip': count and skip it (counts land in the batch's manifest and the report)."))
    student: Optional[EncoderSpec] = Field(None, description=(
        "The student encoder; empty = the current version of the registry student <student-name> "
        "(registry/students/<student-name>)."))
    student_name: str = Field("student", description="Registry name of the student used when --student is empty.")
    teacher: EncoderSpec = Field(default_factory=EncoderSpec, description="The teacher encoder.")
    evaluation: list[str] = Field(default_factory=list, description=(
        "Ingested BEIR datasets (names or directories) on which candidate and current are compared "
        "(adapted/teacher: student+adapter queries against teacher documents, nDCG@10). Empty = compare "
        "on the held-out pairs of the new batch (mean cosine to the teacher vector)."))
    split: str = Field("test", description="Qrels split of the evaluation datasets.")
    threshold: float = Field(0.0, description=(
        "Promote when candidate >= current - threshold on every evaluation set (a negative value "
        "demands an improvement)."))
    replay_pairs: int = Field(1000, ge=0, description=(
        "Pairs sampled (seeded) from earlier batches and trained on together with the new ones, so "
        "the adapter does not forget (0 = new pairs only)."))
    max_steps: int = Field(300, ge=1, description="Training steps of one refresh.")
    batch_size: int = Field(64, ge=2, description="Pairs per training step.")
    lr: float = Field(5e-5, gt=0.0, description="Learning rate (small: this continues a trained adapter).")
    warmup_steps: int = Field(10, ge=0, description="Learning-rate warm-up steps.")
    eval_every: int = Field(25, ge=1, description="Steps between held-out evaluations (early stopping).")
    hidden_dims: list[int] = Field(default_factory=lambda: [256], description=(
        "Widths of the adapter's blocks when there is no current adapter to continue from."))
    seed: int = Field(0, description="Seed of training and of the replay sample.")
    adapter_options: dict[str, Any] = Field(default_factory=dict, description=(
        "Further AdapterConfig fields for the training (config file / UI only), e.g. {\"contrastive_weight\": 0.5}."))
    lock_timeout_seconds: float = Field(0.0, description=(
        "How long to wait for another refresh of the same adapter to finish (0 = stop at once, "
        "-1 = wait forever)."))
    keep_versions: int = Field(5, ge=2, description="Adapter versions kept in the registry (older ones are pruned).")
    run_mteb: bool = Field(False, description="Score evaluation sets through mteb as well (slower; numpy metrics agree).")
    router: bool = Field(True, description=(
        "Recalibrate a confidence router for the candidate (over its blend, when the current version has one) on "
        "the new batch, publish it inside the adapter's version (router/), compare routed nDCG@10 in the promotion "
        "gate and report drift."))
    router_budget: float = Field(0.1, ge=0.0, le=1.0, description=(
        "Share of queries (0-1) the router sends to the teacher: its saved threshold, and the share at which "
        "candidate and current are compared routed."))
    router_calibration_texts: int = Field(300, ge=32, description=(
        "Span views of the served corpus (the first evaluation set's, else the new batch) encoded to calibrate."))
    router_settings: RouterSettings = Field(default_factory=RouterSettings, description="Confidence score settings.")
    router_routing: ThresholdPolicy = Field(default_factory=ThresholdPolicy, description=(
        "How the router's budget becomes a threshold on live queries (saved with it; drift is always measured "
        "against the calibrated threshold)."))
    drift_tolerance: float = Field(0.05, ge=0.0, le=1.0, description=(
        "The report flags drift when the new batch's low-confidence share exceeds the previous batch's (on a "
        "first run: the router's calibration share, its budget) by more than this (absolute share)."))
    drift_texts: int = Field(500, ge=10, description=(
        "Texts sampled (seeded) from each batch to measure drift; each is scored as one span view, cut as the "
        "router's calibration texts were."))


@dataclass
class NewFile:
    path: str
    relative: str
    sha256: str
    bytes: int


# ----------------------------------------------------------------------------- places and state

def refresh_dir(home: TavaHome, name: str) -> Path:
    return home.root / "refresh" / slug(name)


def drop_zone(config: RefreshConfig, home: TavaHome) -> Path:
    return Path(config.drop_zone).expanduser().resolve() if config.drop_zone else home.root / "dropzone" / slug(config.name)


def state_path(home: TavaHome, name: str) -> Path:
    return refresh_dir(home, name) / "state.json"


def load_state(home: TavaHome, name: str) -> dict[str, Any]:
    path = state_path(home, name)
    state = read_json(path) if path.is_file() else {}
    return {"consumed": {}, "batches": [], "runs": [], **state}


def save_state(home: TavaHome, name: str, state: dict[str, Any]) -> None:
    state["runs"] = state["runs"][-50:]
    write_json(state_path(home, name), state)


def record_run(home: TavaHome, name: str, record: dict[str, Any], new_files: list[dict[str, Any]],
               batch: dict[str, Any]) -> None:
    """Mark the run's files consumed (by sha256) and remember its batch for replay."""
    state = load_state(home, name)
    for f in new_files:
        state["consumed"][f["sha256"]] = {"file": f["relative"], "run": record["run"], "time": now_iso()}
    state["batches"].append({k: batch[k] for k in ("dataset", "path", "rows", "student_vectors", "teacher_vectors",
                                                   "student_fingerprint", "teacher_fingerprint")})
    state["runs"].append({"run": record["run"], "status": record["status"],
                          "promoted_version": record.get("promoted_version")})
    save_state(home, name, state)


def run_lock_path(home: TavaHome, name: str) -> Path:
    """One refresh per adapter name at a time (held with ``tava_core.locks.file_lock``, the lock
    every shared resource uses)."""
    return refresh_dir(home, name) / "run.lock"


# ----------------------------------------------------------------------------- stage: scan

def scan_drop_zone(config: RefreshConfig, home: TavaHome) -> list[NewFile]:
    """Files in the drop zone whose sha256 no finished run consumed (sorted by path)."""
    zone = drop_zone(config, home)
    if not zone.is_dir():
        raise InputError("drop zone folder does not exist", path=zone,
                         hint="create it and put .jsonl/.parquet/.txt files there, or set --drop-zone")
    consumed = load_state(home, config.name)["consumed"]
    found = []
    for path in sorted(p for p in zone.rglob("*") if p.is_file() and not p.name.startswith(".")):
        if not path.name.lower().endswith(DROP_SUFFIXES):
            continue
        digest = sha256_file(path)
        if digest not in consumed:
            found.append(NewFile(path=str(path), relative=path.relative_to(zone).as_posix(), sha256=digest,
                                 bytes=path.stat().st_size))
    return found


# ----------------------------------------------------------------------------- stage: resolve

def resolve_student(config: RefreshConfig, registry: Registry) -> tuple[EncoderSpec, dict[str, Any]]:
    """The student spec: --student, else the registry's current student (raises when neither)."""
    if config.student is not None:
        from .encoders import ALIASES

        spec = config.student
        if spec.model not in ALIASES and Path(spec.model).expanduser().exists():
            # the adapter's tava_encoder.json names its student: a relative path would break there
            spec = spec.model_copy(update={"model": str(Path(spec.model).expanduser().resolve())})
        return spec, {"source": "configured", "model": spec.model}
    path = registry.current_path("students", config.student_name)
    if path is None:
        raise ConfigError(f"no student given and the registry has no current student {config.student_name!r}",
                          path=registry.slot("students", config.student_name),
                          hint="pass --student MODEL, or publish a student: "
                               "Registry(home).publish('students', NAME, STUDENT_DIR, promote=True)")
    record = registry.record("students", config.student_name)
    return EncoderSpec(model=str(path)), {"source": f"registry students/{config.student_name}",
                                          "version": record.version, "model": str(path)}


def resolve_current_adapter(config: RefreshConfig, registry: Registry, student_fingerprint: str,
                            teacher_fingerprint: str, student_dir: Optional[str | Path] = None) -> dict[str, Any]:
    """The current adapter (if any) and whether training can continue from it: trained for this teacher
    and for this student (``student_fingerprint``; or, for a version that bundles its own copy of the
    student, as `tava run` publishes, the same model files as ``student_dir``)."""
    version = registry.current_version("adapters", config.name)
    if version is None:
        return {"version": None, "path": None, "warm_start": False, "note": "no current adapter: training a first one"}
    record = registry.record("adapters", config.name, version)
    student, teacher = _trained_for(record.lineage, record.path)
    same = teacher == teacher_fingerprint and (student == student_fingerprint
                                               or _bundles_this_student(record.path, student_dir))
    note = ("continuing from the current adapter" if same else
            "the current adapter was trained for another student or teacher: training a new one")
    return {"version": version, "path": record.path, "warm_start": same, "note": note,
            "metrics": record.metrics}


def _trained_for(lineage: dict[str, Any], version_dir: str | Path) -> tuple[Optional[str], Optional[str]]:
    """(student, teacher) fingerprints the published adapter was trained for. A refresh's lineage records
    them; `tava run` / `tava demo` record the student's path and the teacher's name instead, so the
    adapter's own config (which always records both) answers where the lineage does not."""
    def fingerprint(entry: Any) -> Optional[str]:
        return entry.get("fingerprint") if isinstance(entry, dict) else None

    student, teacher = fingerprint(lineage.get("student")), fingerprint(lineage.get("teacher"))
    if student is None or teacher is None:
        from .adapter.io import read_adapter_config

        own = read_adapter_config(version_dir).get("lineage", {})
        student, teacher = student or fingerprint(own.get("student")), teacher or fingerprint(own.get("teacher"))
    return student, teacher


def _bundles_this_student(version_dir: str | Path, student_dir: Optional[str | Path]) -> bool:
    """Whether the adapter version's own copy of its student (``BUNDLED_STUDENT``) holds the same model
    files as ``student_dir``. `tava run` trains the adapter on its student artifact and publishes that
    student twice: inside the adapter's version and as the registry's current student, whose fingerprint
    also covers its registry.json (a record, not the model), so the fingerprints of the two copies differ."""
    from .encoders.base import hash_model_files
    from .registry import BUNDLED_STUDENT, RECORD_FILE

    own = Path(version_dir) / BUNDLED_STUDENT
    if student_dir is None or not own.is_dir() or not Path(student_dir).is_dir():
        return False
    skip = frozenset({RECORD_FILE})
    return hash_model_files(own, skip) == hash_model_files(student_dir, skip)


# ----------------------------------------------------------------------------- stage: ingest

def _records(new_file: NewFile, fields, bad):
    from .ingest.readers import RawRecord, read_jsonl, read_parquet

    path = Path(new_file.path)
    name = path.name.lower()
    if name.endswith(".parquet"):
        yield from read_parquet(path, fields, bad)
    elif name.endswith(".txt"):
        raw = path.read_bytes()
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            bad.bad("wrong encoding", f"not UTF-8 (byte {raw[exc.start]:#04x})", path=str(path),
                    line=raw.count(b"\n", 0, exc.start) + 1, hint="convert the file to UTF-8")
            return
        yield RawRecord(id=None, text=text, title="", source=new_file.relative, path=str(path), line=1)
    else:
        yield from read_jsonl(path, fields, bad)


def ingest_batch(files: list[NewFile], dataset: str, home: TavaHome, *, text_field: str = "text",
                 on_bad_record: str = "error", shard_size: int = 5000) -> dict[str, Any]:
    """Ingest the new files as one dataset (collection ``texts``) with ingest's readers,
    normalisation and de-duplication; ids are prefixed by the file so files cannot collide."""
    from .ingest.pipeline import CollectionWriter, content_id
    from .ingest.readers import BadRecords, Fields

    fields = Fields(text=text_field, id="_id", title="title", source=None)
    bad = BadRecords(on_bad_record)  # type: ignore[arg-type]
    with atomic_directory(home.dataset_dir(dataset)) as tmp:
        writer = CollectionWriter(tmp, BATCH_COLLECTION, shard_size=shard_size, bad=bad, dedupe_texts=True)
        for new_file in files:
            for record in _records(new_file, fields, bad):
                record.id = f"{new_file.relative}:{record.id or content_id(record.title, record.text)}"
                writer.add(record)
        writer.flush()
        if writer.rows == 0:
            raise InputError("the new files hold no usable texts", path=files[0].path if files else dataset,
                             hint=f"records need a non-empty {text_field!r} field")
        manifest = DatasetManifest(name=dataset, source="refresh drop zone",
                                   collections={BATCH_COLLECTION: Collection(shards=writer.shards)},
                                   skipped=bad.report(), info={"files": [f.__dict__ for f in files]})
        save_manifest(tmp, manifest)
    path = home.dataset_dir(dataset)
    return {"dataset": dataset, "path": str(path), "rows": writer.rows, "manifest_sha256": sha256_file(path / "manifest.json"),
            "skipped": bad.report().count}


# ----------------------------------------------------------------------------- stage: train

def replay_sample(state: dict[str, Any], student_fp: str, teacher_fp: str, size: int, seed: int,
                  exclude: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Up to ``size`` pairs drawn from earlier batches embedded by the same student and teacher."""
    from .adapter.data import join_pairs, read_side

    dirs = [b for b in state.get("batches", []) if b.get("student_fingerprint") == student_fp
            and b.get("teacher_fingerprint") == teacher_fp and b.get("dataset") != exclude
            and Path(b["student_vectors"], "manifest.json").is_file() and Path(b["teacher_vectors"], "manifest.json").is_file()]
    if size == 0 or not dirs:
        return np.zeros((0, 0), np.float32), np.zeros((0, 0), np.float32), []
    _, x, y = join_pairs(read_side([b["student_vectors"] for b in dirs], "student"),
                         read_side([b["teacher_vectors"] for b in dirs], "teacher"))
    rows = np.random.default_rng(seed).permutation(len(x))[:size]
    return x[rows], y[rows], [b["dataset"] for b in dirs]


def adapter_config(config: RefreshConfig, current: dict[str, Any]):
    from .adapter.config import AdapterConfig

    options = dict(config.adapter_options)
    options.update(max_steps=config.max_steps, batch_size=config.batch_size, lr=config.lr,
                   warmup_steps=config.warmup_steps, eval_every=config.eval_every, seeds=[config.seed],
                   hidden_dims=config.hidden_dims)
    return AdapterConfig(**options, warm_start=current["path"] if current.get("warm_start") else None)


def train_candidate(config: RefreshConfig, home: TavaHome, *, batch: dict[str, Any], student: dict[str, Any],
                    teacher: dict[str, Any], current: dict[str, Any], out_dir: str) -> dict[str, Any]:
    """Train (warm-started from the current adapter when compatible) on new + replay pairs and
    save the candidate to ``out_dir`` (outside the registry). Returns a small record."""
    from .adapter.data import join_pairs, read_side
    from .adapter.run import save_run, train_adapter_from_arrays

    s_side = read_side([batch["student_vectors"]], "student")
    t_side = read_side([batch["teacher_vectors"]], "teacher")
    _, x_new, y_new = join_pairs(s_side, t_side)
    x_old, y_old, replayed = replay_sample(load_state(home, config.name), s_side.fingerprint, t_side.fingerprint,
                                           config.replay_pairs, config.seed, exclude=batch["dataset"])
    x = np.concatenate([x_new, x_old]) if len(x_old) else x_new
    y = np.concatenate([y_new, y_old]) if len(y_old) else y_new
    if len(x) < 2 * config.batch_size:
        raise ConfigError(f"only {len(x)} pairs ({len(x_new)} new, {len(x_old)} replayed): fewer than two batches "
                          f"of {config.batch_size}", path=batch["student_vectors"],
                          hint="wait for more texts or lower --batch-size")
    settings = adapter_config(config, current)
    started = time.perf_counter()
    run = train_adapter_from_arrays(x, y, settings, name=config.name, student_info=student["encoder"],
                                    teacher_info=teacher["encoder"], warm_start=settings.warm_start,
                                    show_progress=True)
    save_run(run, out_dir, student_spec=student["spec"])
    heldout = run.report["metrics"].get("adapter", {})
    current_heldout = None
    if current.get("warm_start") and run.data.has_heldout:
        # the current adapter on the very same held-out pairs: the fallback comparison
        from .adapter.io import load_adapter
        from .adapter.keep import memory_for
        from .adapter.metrics import alignment_metrics

        current_adapter = load_adapter(current["path"])
        if current_adapter.memory is not None:
            # its memory may hold these very held-out pairs: rebuild it from this run's training pairs, as the
            # new adapter's held-out figures were measured
            current_adapter.attach_memory(memory_for(current_adapter, run.data.student, run.data.teacher, settings))
        current_heldout = alignment_metrics(current_adapter.map_numpy(run.data.heldout_student),
                                            run.data.heldout_teacher, k=settings.knn_k)
    return {"adapter_dir": out_dir, "pairs_new": int(len(x_new)), "pairs_replayed": int(len(x_old)),
            "replayed_from": replayed, "warm_start": settings.warm_start, "heldout": heldout,
            "current_heldout": current_heldout, "steps": run.report["training"].get("steps"),
            "best_step": run.report["training"].get("best_step"),
            "seconds": round(time.perf_counter() - started, 2)}


# ----------------------------------------------------------------------------- stage: router

ROUTER_REFERENCE_TEXTS = 2000   # batch pairs sampled for the router's signals


def batch_texts(dataset_dir: str | Path) -> tuple[list[str], list[str]]:
    """(ids, texts) of an ingested refresh batch."""
    from .distill.data import read_collection_texts
    from .manifest import load_dataset_manifest

    manifest = load_dataset_manifest(dataset_dir)
    ids, texts, _ = read_collection_texts(Path(dataset_dir), manifest.collections[BATCH_COLLECTION].shards)
    return ids, texts


def router_served(config: RefreshConfig, home: TavaHome, batch: dict[str, Any]):
    """The corpus the router is calibrated to serve: the first evaluation set's (what the gate
    scores), else the new batch itself (its teacher vectors are already on disk)."""
    from .manifest import read_vector_dir
    from .reuse import run_key
    from .route.stored import ServedCorpus, served_retrieval

    if config.evaluation:
        return served_retrieval(config.evaluation[0], config.split, config.teacher, home)[0]
    ids, texts = batch_texts(batch["path"])
    vector_ids, vectors, _ = read_vector_dir(batch["teacher_vectors"])
    row = {doc_id: i for i, doc_id in enumerate(vector_ids)}
    keep = [i for i, doc_id in enumerate(ids) if doc_id in row]
    return ServedCorpus(ids=[ids[i] for i in keep], texts=[texts[i] for i in keep],
                        teacher_vectors=vectors[[row[ids[i]] for i in keep]],
                        key=run_key([batch["manifest_sha256"], batch["teacher_fingerprint"]]))


def calibrate_candidate_router(config: RefreshConfig, home: TavaHome, batch: dict[str, Any],
                               candidate_dir: str) -> dict[str, Any]:
    """A router for the candidate adapter -- over the blend carried into it (``blend/``), when there is
    one -- fitted on the new batch's pairs and saved INSIDE the candidate (``router/``, naming the adapter
    ``..`` or the blend ``../blend``): promotion moves them into one version."""
    from .encoders.blend import attached_blend
    from .route.publish import ROUTER_SUBDIR
    from .route.stored import calibrate_stored

    routed = attached_blend(candidate_dir) or Path(candidate_dir)
    return calibrate_stored(adapted=EncoderSpec(model=str(routed)), teacher=config.teacher,
                            student_dirs=[batch["student_vectors"]], teacher_dirs=[batch["teacher_vectors"]],
                            served=router_served(config, home, batch), out=Path(candidate_dir) / ROUTER_SUBDIR,
                            home=home, settings=config.router_settings, teacher_budget=config.router_budget,
                            routing=config.router_routing,
                            calibration_texts=config.router_calibration_texts,
                            max_reference_texts=ROUTER_REFERENCE_TEXTS)


def previous_batch(state: dict[str, Any], exclude: str) -> Optional[dict[str, Any]]:
    """The latest earlier batch whose texts are still ingested."""
    for entry in reversed(state.get("batches", [])):
        if entry.get("dataset") != exclude and Path(entry["path"], "manifest.json").is_file():
            return entry
    return None


def batch_drift_texts(entry: dict[str, Any], n: int, teacher_fingerprint: str) -> "DriftTexts":
    """A batch as drift scores it (``route.drift.span_views``): one span view of each of ``n`` of its
    texts, cut and sampled as the router's calibration cut its texts, with the teacher's vectors of
    their documents (the batch's, when they were embedded by the router's teacher) for its bank."""
    from .manifest import read_vector_dir
    from .route.drift import span_views

    ids, texts = batch_texts(entry["path"])
    vector_dir = entry.get("teacher_vectors")
    if entry.get("teacher_fingerprint") != teacher_fingerprint or not vector_dir or not Path(vector_dir).is_dir():
        return span_views(ids, texts, n)
    vector_ids, vectors, _ = read_vector_dir(vector_dir)
    row = {doc_id: i for i, doc_id in enumerate(vector_ids)}
    keep = [i for i, doc_id in enumerate(ids) if doc_id in row]
    return span_views([ids[i] for i in keep], [texts[i] for i in keep], n,
                      documents=vectors[[row[ids[i]] for i in keep]])


def measure_drift(config: RefreshConfig, home: TavaHome, batch: dict[str, Any], *, current_router: Optional[str],
                  candidate_router: Optional[str]) -> dict[str, Any]:
    """Low-confidence share of the new batch against the previous batch (``route.drift.drift_report``),
    judged by the router that served the previous traffic (the current version's), else the
    candidate's. Each batch is scored as the router's threshold was calibrated (``batch_drift_texts``: span
    views of ``drift_texts`` texts, their documents in the bank); without a previous batch, against
    the router's own calibration share (its budget)."""
    from .route.drift import drift_report
    from .route.router import load_router

    previous = previous_batch(load_state(home, config.name), exclude=batch["dataset"])
    router_path = current_router or candidate_router
    if router_path is None:
        return {"drifted": False, "message": "drift not measured: no router (--no-router, and none in the current "
                                             "version)"}
    router = load_router(router_path)
    teacher = router.teacher.fingerprint
    report = drift_report(router, None if previous is None else batch_drift_texts(previous, config.drift_texts, teacher),
                          batch_drift_texts(batch, config.drift_texts, teacher), tolerance=config.drift_tolerance)
    return {**report, "previous_batch": None if previous is None else previous["dataset"], "router": str(router_path),
            "judged_by": "the current version's router" if current_router else "the candidate's router"}


# ----------------------------------------------------------------------------- stage: evaluate

def evaluation_configs(adapter_dir: str, config: RefreshConfig, tag: str) -> dict[str, Any]:
    """dataset -> the EvalConfig scoring student+adapter queries against teacher documents on it
    (the flow runs each and reads its ``EVAL_MODE`` nDCG@10)."""
    from .evaluate import EvalConfig

    return {dataset: EvalConfig(dataset=dataset, split=config.split, teacher=config.teacher,
                                adapted=EncoderSpec(model=adapter_dir), modes=[EVAL_MODE], matryoshka_dims=[],
                                quantization=[], run_mteb=config.run_mteb,
                                run=f"refresh-{slug(config.name)}-{tag}-{slug(Path(dataset).name)}")
            for dataset in config.evaluation}


def routed_set(dataset: str, budget: float) -> str:
    """The gate's row name of a routed score (read by name)."""
    return f"{dataset} (routed, {budget:.0%} to teacher)"


def blended_set(dataset: str) -> str:
    """The gate's row name of a blend's score (read by name)."""
    return f"{dataset} (blend)"


def compare(config: RefreshConfig, candidate: dict[str, Any], current: Optional[dict[str, Any]],
            trained: dict[str, Any], routed: Optional[dict[str, Any]] = None,
            blended: Optional[dict[str, Any]] = None) -> dict[str, Any]:
    """Candidate vs current, per evaluation set; promote only if none is worse than current - threshold.
    ``routed`` = {"candidate": {dataset: nDCG}, "current": {dataset: nDCG} or None}: each router
    sends exactly ``router_budget`` of the queries to the teacher, and the same rule applies.
    ``blended``, of the same shape, scores the blend published with the adapter (rebuilt around the
    candidate): when there is one it is the query encoder users are served, so it is judged too."""
    if config.evaluation:
        metric = "nDCG@10 (adapted/teacher)"
        cand, curr = dict(candidate), None if current is None else dict(current)
        extras = ((routed, lambda k: routed_set(k, config.router_budget),
                   f"routed nDCG@10 at {config.router_budget:.0%} of queries to the teacher"),
                  (blended, blended_set, "the published blend's nDCG@10"))
        for extra, row, what in extras:
            if extra is None:
                continue
            metric += f"; {what}"
            cand.update({row(k): v for k, v in extra["candidate"].items()})
            if curr is not None and extra.get("current") is not None:
                curr.update({row(k): v for k, v in extra["current"].items()})
    else:
        metric = "held-out mean cosine"
        cand = {"held-out pairs": trained["heldout"].get("mean_cosine")}
        curr = None if trained.get("current_heldout") is None else {
            "held-out pairs": trained["current_heldout"].get("mean_cosine")}
    rows, reasons = [], []
    for key, score in cand.items():
        base = None if curr is None else curr.get(key)
        ok = base is None or score >= base - config.threshold
        rows.append({"set": key, "candidate": score, "current": base, "delta": None if base is None else score - base,
                     "ok": ok})
        if not ok:
            reasons.append(f"{Path(key).name}: candidate {score:.4f} < current {base:.4f} - threshold "
                           f"{config.threshold:g}")
    promote = not reasons
    if curr is None:
        why = "no comparable current adapter: the candidate becomes the first current version"
    elif promote:
        why = (f"no worse than the current adapter on every set ({metric}"
               + (f", by at most {config.threshold:g})" if config.threshold else ")"))
    else:
        why = "the candidate is worse (" + "; ".join(reasons) + ")"
    return {"metric": metric, "rows": rows, "promote": promote, "why": why}


# ----------------------------------------------------------------------------- report

def report_markdown(record: dict[str, Any]) -> str:
    lines = [f"# Adapter refresh `{record['name']}` — {record['status']}", "", record.get("message", ""), ""]
    facts = [("run", record.get("run")), ("new files", len(record.get("new_files", [])))]
    if record.get("batch"):
        facts.append(("new texts", record["batch"].get("rows")))
    if record.get("training"):
        t = record["training"]
        facts += [("pairs (new + replayed)", f"{t['pairs_new']} + {t['pairs_replayed']}"),
                  ("warm start", f"`{t['warm_start']}`" if t.get("warm_start") else "no (first adapter)"),
                  ("steps (best) / seconds", f"{t.get('steps')} ({t.get('best_step')}) / {t.get('seconds')}")]
        if t.get("warm_start") and t.get("best_step") == 0:
            facts.append(("note", "no held-out improvement over the warm start: candidate weights = current"))
    if "current_version" in record:
        facts.append(("current before", record["current_version"] or "none"))
        facts.append(("current after", record.get("promoted_version") or record["current_version"] or "none"))
    if record.get("failed_stage"):
        facts.append(("failed stage", record["failed_stage"]))
    lines += ["| | |", "|---|---|"] + [f"| {k} | {v} |" for k, v in facts]
    decision = record.get("decision")
    if decision:
        lines += ["", f"**{decision['why']}**", "", "| set | candidate | current | delta | ok |",
                  "|---|---:|---:|---:|---|"]
        fmt = lambda v: "–" if v is None else f"{v:.4f}"  # noqa: E731
        lines += [f"| {Path(r['set']).name} | {fmt(r['candidate'])} | {fmt(r['current'])} | {fmt(r['delta'])} | "
                  f"{'yes' if r['ok'] else 'no'} |" for r in decision["rows"]]
        lines += ["", f"metric: {decision['metric']}"]
    router = record.get("router")
    if router:
        t = router["threshold"]
        lines += ["", f"router: calibrated on {router['reference_texts']} pairs of the new batch and "
                  f"{router['calibration_texts']} span views; threshold {t['threshold']:.4f} "
                  f"({t['value']:.0%} budget), published inside the adapter version (router/) when promoted"]
    blend = record.get("blend")
    if blend:
        lines += ["", f"blend: rebuilt around the candidate ({' + '.join(blend['members'])}, weights "
                  f"{' / '.join(f'{w:.2f}' for w in blend['weights'])}), published inside the adapter version "
                  "(blend/) when promoted"]
        lines += [f"- blend nDCG@10, {Path(name).name}: {value:.4f}" for name, value in blend.get("evaluation", {}).items()]
    drift = record.get("drift")
    if drift:
        lines += ["", f"**drift: {drift['message']}**" if drift.get("drifted") else f"drift: {drift['message']}"]
    return "\n".join(lines) + "\n"


def write_report(home: TavaHome, record: dict[str, Any]) -> str:
    """The run's record as JSON + markdown under <home>/reports/refresh/<name>/<run>.*"""
    base = home.reports / "refresh" / slug(record["name"])
    write_json(base / f"{record['run']}.json", record)
    from .io import atomic_path

    with atomic_path(base / f"{record['run']}.md") as tmp:
        tmp.write_text(report_markdown(record))
    return str(base / f"{record['run']}.json")


def new_run_id() -> str:
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + f"-{int(time.time() * 1000) % 1000:03d}"


__all__ = ["RefreshConfig", "NewFile", "scan_drop_zone", "resolve_student", "resolve_current_adapter", "ingest_batch",
           "train_candidate", "calibrate_candidate_router", "batch_drift_texts", "measure_drift", "routed_set", "blended_set", "evaluation_configs", "compare", "report_markdown", "write_report", "load_state",
           "save_state", "refresh_dir", "drop_zone", "run_lock_path", "now_iso"]
