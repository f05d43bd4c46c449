"""Flow: the whole pipeline — `tava demo` on the built-in data, `tava run` with your settings.

    ingest  ->  embed every collection with the teacher  ->  FAISS index of the corpus
        ->  Stage A: distil a student on the label-free collections (+ short span views)
        ->  embed the same texts with the student  ->  Stage B: adapter student -> teacher space
        ->  evaluate teacher, student alone, student queries vs teacher documents (with and
            without the adapter)
        ->  (blend_static: on for `tava run`'s transformer student, off for `tava demo`) distil a
            static student from the same texts, blend it with student + adapter into one query
            encoder (the weight chosen label-free on span views) and score it
        ->  calibrate a confidence router over the blend, or student + adapter without one (from the
            stored Stage B pairs + a few hundred span views) and score it at a few teacher budgets
        ->  publish student and adapter (+ its router and blend, same version) as the registry's current
            versions (what the nightly refresh continues)  ->  one table: quality, speed-ups, paths
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import NamedTuple, Optional

from prefect import flow
from prefect.artifacts import create_markdown_artifact
from pydantic import BaseModel

from tasks.blend import choose_blend_weight_task, save_blend_task
from tasks.registry import publish_current_task
from tasks.route import calibrate_stored_task, evaluate_router_at_task
from tava_core.config import EncoderSpec, IngestConfig
from tava_core.embed import EmbedConfig
from tava_core.encoders.blend import BlendConfig
from tava_core.evaluate.config import EvalConfig, JudgeConfig
from tava_core.evaluate.judgements import JUDGED_SPLIT
from tava_core.home import TavaHome, slug
from tava_core.index import IndexConfig
from tava_core.ingest.query_log import other_split_queries, write_query_log
from tava_core.io import read_json, sha256_file
from tava_core.manifest import load_dataset_manifest
from tava_core.records import AdapterRecord, EmbedResult, EvaluationReport, Record, StudentRecord
from tava_core.reuse import run_key

from .adapt import train_adapter
from .distill import distill_student
from .embed import embed_dataset_flow
from .evaluate import evaluate_flow, judge_flow
from .index import rebuild_index
from .ingest import ingest_corpus
from .pipeline_config import PipelineConfig, blend_static_distill, stage_a_config


class QualityRow(Record):
    """One way of answering queries: its retrieval quality and speed against the teacher's."""

    system: str                     # teacher, student alone, student no adapter, student + adapter, router ...
    queries_documents: str          # which encoder encodes the queries / the documents
    ndcg_at_10: float
    retention: Optional[float]      # share of the teacher's nDCG@10
    queries_per_second: float
    speedup: float                  # queries per second over the teacher's


class PipelineResult(BaseModel):
    dataset: str
    dataset_dir: str
    split: str = "test"                # the qrels split scored, or JUDGED_SPLIT (label-free)
    scored_queries: Optional[int] = None   # queries of that split with judgements (what every row averages)
    judgements: Optional[str] = None   # label-free: the teacher's own top 10 stood in for qrels (judgements.py)
    rows: dict[str, int]
    teacher: dict
    index: dict
    student_dir: str
    adapter_dir: str
    registry: list[dict]       # what was published (or was already current)
    router_dir: Optional[str] = None   # the confidence router (None when config.router.enabled is off)
    blend_dir: Optional[str] = None    # student + adapter blended with a static student (config.blend_static)
    quality: list[QualityRow]  # one row per way of answering queries
    report_dirs: list[str]     # the evaluations' reports, in REPORT_LABELS' order (the blend's last)
    seconds: dict[str, float]
    work: dict[str, str] = {}  # step -> what it computed and what it reused from earlier runs

    def system(self, name: str) -> QualityRow:
        """The quality row of one system (KeyError naming the systems there are)."""
        for row in self.quality:
            if row.system == name:
                return row
        raise KeyError(f"no system {name!r}; have {[r.system for r in self.quality]}")


TEACHER, STUDENT_ALONE, NO_ADAPTER, WITH_ADAPTER = ("teacher", "student alone", "student, no adapter",
                                                    "student + adapter")
BLEND = "blend: student + adapter, static student"
# what each of result.report_dirs scored, in order
REPORT_LABELS = (f"{TEACHER}, {STUDENT_ALONE}, {WITH_ADAPTER}", NO_ADAPTER, "blend")
LABEL_FREE_NOTE = ("**Label-free**: the dataset has no qrels for the split, so nDCG@10 is measured against the teacher's "
                   "own top 10 for query-like texts (`{judgements}`): the teacher scores 1.0 by construction, and a "
                   "system's score is its rank-weighted agreement with the teacher's results.")


def quality_row(system: str, modes: str, score: float, speed: float, teacher_score: float,
                teacher_speed: float) -> QualityRow:
    """One table row: nDCG@10 and query speed, as shares of the teacher's. The speed-up keeps 4 decimals
    (the table prints one): a router row's is derived from its encoder's, and at 2 decimals a slow tiny
    student's 0.128 and 0.133 both read 0.13, so the rows' order by cost was lost."""
    return QualityRow(system=system, queries_documents=modes, ndcg_at_10=round(score, 4),
                      retention=round(score / teacher_score, 4) if teacher_score else None,
                      queries_per_second=round(speed, 1), speedup=round(speed / teacher_speed, 4))


def quality_rows(full: EvaluationReport, asymmetric: EvaluationReport) -> list[QualityRow]:
    """Teacher, student alone, student queries vs teacher docs, and with the adapter."""
    qps = {**asymmetric.throughput, **full.throughput}
    rows = [(TEACHER, "teacher / teacher", full.ndcg("teacher/teacher"), qps["teacher"]),
            (STUDENT_ALONE, "student / student", full.ndcg("student/student"), qps["student"]),
            # asymmetric's "adapted" role is the bare student (no adapter): see the pipeline
            (NO_ADAPTER, "student / teacher", asymmetric.ndcg("adapted/teacher"), asymmetric.throughput["adapted"]),
            (WITH_ADAPTER, "student+adapter / teacher", full.ndcg("adapted/teacher"), qps["adapted"])]
    return [quality_row(system, modes, score, speed, full.ndcg("teacher/teacher"), qps["teacher"])
            for system, modes, score, speed in rows]


def blend_row(scored: EvaluationReport, teacher: QualityRow) -> QualityRow:
    """The blend's row: its queries (both students) against the teacher's documents; its speed-up is over
    the teacher's query speed measured in the same evaluation (side by side, not against an earlier run's),
    and its queries/s that speed-up times the table's ``teacher`` row's, as the router rows' are: its own
    evaluation's absolute speed (229 q/s beside a teacher row timed at 30 under other load) read as 7.6x."""
    speedup = scored.throughput["adapted"] / scored.throughput["teacher"]
    return quality_row(BLEND, "blend / teacher", scored.ndcg("adapted/teacher"), speedup * teacher.queries_per_second,
                       scored.ndcg("teacher/teacher"), teacher.queries_per_second)


def _recall(index: dict) -> str:
    """The index's measured recall@10 as the summary prints it ('not measured' when no query sample was drawn)."""
    recall = index.get("recall_at_10")
    return "not measured" if recall is None else f"{recall:.3f}"


def router_system(budget: float) -> str:
    """The table's name of the router row at ``budget`` (rows are read by this name)."""
    return f"router, {budget:.0%} to teacher"


def router_rows(curves: dict, budgets: list[float], quality: dict[str, QualityRow], *,
                over: str = WITH_ADAPTER) -> list[QualityRow]:
    """One row per budget: the router sends exactly that share of the queries (its least confident)
    to the teacher. Its cost in teacher units is the row ``over``'s (the query encoder the router sits
    on: its speed-up, measured beside the teacher in its own evaluation), the confidence's (measured
    beside that encoder when the router was scored, so a share of it, and through its speed-up a share of
    the teacher) and the budget's teacher calls; ratios only, so rows timed in different evaluations --
    under different load -- still compare."""
    from tava_core.route.stored import curve_row

    teacher, routed = quality[TEACHER], quality[over]
    confidence = curves["costs"]["confidence"] / curves["costs"]["teacher"]
    rows = []
    for budget in budgets:
        score = curve_row(curves, budget)["router"]["ndcg10"]
        speedup = 1.0 / (1.0 / routed.speedup + confidence + budget)
        rows.append(quality_row(router_system(budget), "routed / teacher", score,
                                speedup * teacher.queries_per_second, teacher.ndcg_at_10, teacher.queries_per_second))
    return rows


class QueryLogSource(NamedTuple):
    """A collection's queries of the splits a run does not score, written as an unlabeled source."""

    path: str        # the JSONL file under <home>/sources
    name: str        # the dataset it is ingested as
    note: str        # what the run's table says it took


def other_split_query_log(dataset_dir: str, dataset_name: str, split: str, root: str,
                          sample: Optional[int]) -> Optional[QueryLogSource]:
    """The queries of the splits ``split`` does not score, written under ``<home>/sources``; None when there
    are none (one split, no queries, or a label-free run). ``sample``: the unlabeled sources' sample size,
    which ingestion applies to this source too."""
    log = other_split_queries(dataset_dir, split)
    if not len(log):
        return None
    name = f"{slug(dataset_name)}-query-log-{slug(split)}"
    path = write_query_log(log, TavaHome(root).root / "sources" / f"{name}.jsonl")
    sampled = f", a seeded sample of {sample:,} trained on" if sample is not None and len(log) > sample else ""
    note = (f"query log: {len(log):,} texts of the {', '.join(log.splits)} queries{sampled} (held out: the "
            f"{', '.join(log.held_out_splits)} queries{f', and {log.same_text_dropped} of their text' if log.same_text_dropped else ''}"
            "; --no-other-split-queries leaves them out)")
    print(note)
    return QueryLogSource(path=str(path), name=name, note=note)


def shard_work(results: list[EmbedResult]) -> str:
    """'N shards computed, M reused' over every collection of these embedding runs."""
    collections = [c for result in results for c in result.collections]
    return (f"{sum(c.computed_shards for c in collections)} shards computed, "
            f"{sum(c.reused_shards for c in collections)} reused")


def student_work(student: StudentRecord) -> str:
    """What Stage A trained on and how far it got (or that an identical earlier run was reused)."""
    sources = ", ".join(f"{s['dataset']}/{s['collection']} {s['rows']:,}" if s["collection"] else
                        f"the first {s['rows']:,} of those kept" for s in student.sources)   # "max_texts" cuts the rest
    return (f"{'reused' if student.reused else 'trained'}: {student.texts:,} texts ({sources}); held-out cosine "
            f"{student.initial_cosine:.3f} -> {student.best_cosine:.3f} at step {student.best_step:,} of "
            f"{student.steps:,}")


def adapter_work(adapter: AdapterRecord) -> str:
    """Whether Stage B's learned part beat its closed-form start (the keep gate), or its best step."""
    keep = adapter.training.get("keep") or {}
    verdict = (f"learned part {'kept' if keep['learned_kept'] else 'not kept'} ({keep['why']})"
               if "learned_kept" in keep else
               f"best step {adapter.training.get('best_step', 0):,} of {adapter.training.get('steps', 0):,}")
    return f"{'reused' if adapter.reused else 'trained'}: {verdict}"


def router_above_teacher_note(result: PipelineResult) -> str:
    """Where the encoder the router sits on scores above the teacher, why its rows score under it: each
    query it sends to the teacher lowers the score (a user read the falling router rows as a fault)."""
    names = {row.system for row in result.quality}
    if not any(name.startswith("router,") for name in names):
        return ""
    routed = result.system(BLEND if BLEND in names else WITH_ADAPTER)
    if routed.retention is None or routed.retention <= 1.0:
        return ""
    return (f"Here `{routed.system}` scores above the teacher ({routed.retention:.1%} of it), so each query the "
            "router sends to the teacher lowers the score: on this corpus, serve it without the router.")


def summary_markdown(result: PipelineResult) -> str:
    scored = (f"Scored: split `{result.split}`" + (f", {result.scored_queries:,} queries" if result.scored_queries else "")
              + (" (judged by the teacher)." if result.judgements else " (the queries its qrels judge)."))
    lines = ["# tava pipeline", "", f"Dataset `{result.dataset}` ({', '.join(f'{k} {v:,}' for k, v in result.rows.items())})"
             f" in `{result.dataset_dir}`; teacher `{result.teacher['name']}` ({result.teacher['dim']}-d). {scored}", "",
             *([LABEL_FREE_NOTE.format(judgements=result.judgements), ""] if result.judgements else []),
             "| system | queries / documents | nDCG@10 | of teacher | queries/s | speed-up |",
             "| --- | --- | ---: | ---: | ---: | ---: |"]
    for row in result.quality:
        lines.append(f"| {row.system} | {row.queries_documents} | {row.ndcg_at_10:.4f} | "
                     f"{row.retention:.1%} | {row.queries_per_second:.0f} | {row.speedup:.1f}x |")
    lines += ["", "queries/s: the teacher row's, times each row's speed-up; every speed-up is measured side by side "
              "with the teacher in its own evaluation (the blend's and the routers' in later ones), so the rows "
              "compare even when the machine's load changed between them."]
    if any(row.system.startswith("router,") for row in result.quality):
        lines += ["", "router rows: exactly that share of the queries, the least confident, goes to the teacher. Served, "
                  "the router's threshold decides, and the share it routes can differ (the routed report's route.md "
                  "says what it routed on these queries)."]
    if note := router_above_teacher_note(result):
        lines += ["", note]
    lines += ["", "| artifact | where |", "| --- | --- |",
              f"| student (Stage A) | `{result.student_dir}` |", f"| adapter (Stage B) | `{result.adapter_dir}` |",
              *([f"| confidence router | `{result.router_dir}` |"] if result.router_dir else []),
              *([f"| blend (student + adapter, static student) | `{result.blend_dir}` |"] if result.blend_dir else []),
              f"| FAISS index ({result.index['factory']}, recall@10 {_recall(result.index)}) | "
              f"`{result.index['index_dir']}` |"]
    lines += [f"| evaluation report ({label}) | `{d}` |" for label, d in zip(REPORT_LABELS, result.report_dirs,
                                                                           strict=False)]
    lines += [f"| registry {r['kind']}/{r['name']} v{r['version']}{' (new)' if r['published'] else ''} | "
              f"`{r['path']}` |" for r in result.registry]
    lines += ["", "| step | seconds | computed / reused |", "| --- | ---: | --- |"]
    lines += [f"| {step} | {seconds:.1f} | {result.work.get(step, '')} |" for step, seconds in result.seconds.items()]
    return "\n".join(lines) + "\n"


# The flow's default parameters, built once: Prefect shows them in the deployment's form, and
# the flows only read their config.
DEFAULT_PIPELINE_CONFIG = PipelineConfig()


@flow(name="tava-pipeline", log_prints=True)
def tava_pipeline(config: PipelineConfig = DEFAULT_PIPELINE_CONFIG, home: Optional[str] = None) -> PipelineResult:
    """Run the pipeline end to end: ingest, teacher vectors, index, Stage A, Stage B, evaluation.

    Args:
        config: Corpus, teacher, index type, and the Stage A / Stage B settings.
        home: tava home directory (data, vectors, artifacts, reports); empty = $TAVA_HOME, else ./.tava.
    """
    root = str(TavaHome(home).root)
    seconds: dict[str, float] = {}
    work: dict[str, str] = {}

    def timed(step: str, start: float) -> None:
        seconds[step] = round(time.perf_counter() - start, 1)

    start = time.perf_counter()
    ingested = ingest_corpus(IngestConfig(source=config.source, name=config.name, shard_size=config.shard_size),
                             home=root)
    timed("ingest", start)

    start = time.perf_counter()
    documents = load_dataset_manifest(Path(ingested.path)).document_collection or "corpus"
    if config.teacher_document_vectors:   # the store's vectors: the documents need no teacher pass
        embed_dataset_flow(EmbedConfig(dataset=ingested.path, collections=[documents], encoder=config.teacher,
                                       import_vectors=config.teacher_document_vectors), home=root)
    embedded: EmbedResult = embed_dataset_flow(EmbedConfig(dataset=ingested.path, encoder=config.teacher), home=root)
    timed("embed (teacher)", start)
    work["embed (teacher)"] = shard_work([embedded])

    # Extra unlabeled sources: ingested and embedded like the corpus; Stage A trains on their texts and span
    # views, Stage B pairs their span views (below) but not their full texts. The collection's queries of
    # the splits not scored are one more, a query log it already has (texts only; query_log.py).
    start = time.perf_counter()
    sources: list[tuple[str, Optional[str]]] = [(source, None) for source in config.unlabeled]
    extra_datasets, notes = [], []
    if config.other_split_queries:
        logged = other_split_query_log(ingested.path, ingested.name, config.split, root, config.unlabeled_sample)
        if logged is not None:
            sources.append((logged.path, logged.name))
            notes.append(logged.note)
    for source, name in sources:
        extra = ingest_corpus(IngestConfig(source=source, name=name, shard_size=config.shard_size,
                                           sample_records=config.unlabeled_sample), home=root)
        if repeated := extra.skipped.repeated_texts:
            # a log written several times over to weigh it would otherwise look weighed and not be (session 48)
            note = f"{repeated:,} repeated texts dropped (--unlabeled-weight weighs a source)"
            notes.append(f"{extra.name}: {note}")
            print(f"{source}: {note}; Stage A trains on each text once")
        embed_dataset_flow(EmbedConfig(dataset=extra.path, encoder=config.teacher), home=root)
        extra_datasets.append(extra.path)
    if sources:
        timed("ingest + embed (unlabeled)", start)
        work["ingest + embed (unlabeled)"] = "; ".join(notes)

    start = time.perf_counter()
    index = rebuild_index(IndexConfig(vectors=embedded.vectors(documents), factory=config.index_factory), home=root)
    timed("index", start)
    work["index"] = f"{'reused' if index.skipped else 'built'} version {index.version}"

    # No qrels for the split (a user's own corpus): the teacher judges its documents -- its own top 10
    # for query-like texts stand in for relevance labels, and every evaluation below runs unchanged.
    split, judgements = config.split, None
    if config.split not in ingested.qrels:
        start = time.perf_counter()
        split = JUDGED_SPLIT
        judged = judge_flow(JudgeConfig(dataset=ingested.path, teacher=config.teacher,
                                        queries=config.label_free_queries), home=root)
        judgements = judged["directory"]
        print(f"no qrels for split {config.split!r}: quality is measured label-free, against the teacher's own top 10 "
              f"for {judged['queries_from']} ({judgements})")
        timed("judge (teacher)", start)
        work["judge (teacher)"] = "reused" if judged["reused"] else f"{judged['queries']} queries judged"

    start = time.perf_counter()
    distill = stage_a_config(config, ingested.path, extra_datasets)
    student = distill_student(distill, home=root)
    timed("Stage A (student)", start)
    work["Stage A (student)"] = student_work(student)

    # Stage B pairs, embedded by both: the corpus's own texts (never the queries) and the span views of every
    # training dataset -- an extra source's too (a query log's views are mostly its queries, whole).
    start = time.perf_counter()
    trained_on = [c for c in ingested.collections if c != "queries"]
    student_spec = EncoderSpec(model=student.output)
    student_embedded = [embed_dataset_flow(
        EmbedConfig(dataset=ingested.path, collections=trained_on, encoder=student_spec), home=root)]
    student_dirs = [c.vectors_dir for c in student_embedded[0].collections]
    teacher_dirs = [embedded.vectors(c) for c in trained_on]
    for span_dataset in student.span_datasets:
        student_embedded.append(embed_dataset_flow(EmbedConfig(dataset=span_dataset, encoder=student_spec), home=root))
        student_dirs += [c.vectors_dir for c in student_embedded[-1].collections]
        teacher_dirs += [d for key, d in student.teacher_vectors.items() if key.startswith(span_dataset + "/")]
    timed("embed (student)", start)
    work["embed (student)"] = shard_work(student_embedded)

    start = time.perf_counter()
    adapter = train_adapter(config.adapter.model_copy(update={
        "student_vectors": student_dirs, "teacher_vectors": teacher_dirs, "student": student.output,
        "warm_start": None}), home=root)
    timed("Stage B (adapter)", start)
    work["Stage B (adapter)"] = adapter_work(adapter)

    start = time.perf_counter()
    adapted = EncoderSpec(model=adapter.adapter_dir)
    full = evaluate_flow(EvalConfig(dataset=ingested.path, split=split, judgements=judgements, teacher=config.teacher,
                                    student=student_spec, adapted=adapted,
                                    modes=["teacher/teacher", "student/student", "adapted/teacher"]), home=root)
    # The student's own queries against teacher documents: possible because its projection
    # already aims at the teacher's space; the adapter's gain is the difference.
    asymmetric = evaluate_flow(EvalConfig(dataset=ingested.path, split=split, judgements=judgements, teacher=config.teacher,
                                          adapted=student_spec, modes=["adapted/teacher"], matryoshka_dims=[],
                                          quantization=[], run_mteb=False), home=root)
    timed("evaluate", start)
    reused_reports = sum(report.reused for report in (full, asymmetric))
    work["evaluate"] = f"{2 - reused_reports} evaluations computed, {reused_reports} reused"

    quality = {row.system: row for row in quality_rows(full, asymmetric)}

    # Optionally a static student from the same texts (its teacher vectors and span views are the ones
    # Stage A already embedded), blended with student + adapter into one query encoder.
    blend_dir, blend_fingerprint, blend_report = None, "", None
    if config.blend_static:
        start = time.perf_counter()
        static = distill_student(blend_static_distill(distill, adapter.adapter_dir), home=root)
        weight = config.blend_weight
        if weight is None:    # chosen for this corpus, label-free: span views against the teacher
            chosen = choose_blend_weight_task(adapter.adapter_dir, static.output, config.teacher, ingested.path,
                                              split, config.registry_adapter, root, judgements)
            weight = chosen["weight"]
        blended = save_blend_task(BlendConfig(members=[adapter.adapter_dir, static.output], weights=[weight, 1.0 - weight],
                                              name=config.registry_adapter), root)
        blend_dir, blend_fingerprint = blended.directory, blended.fingerprint
        scored = evaluate_flow(EvalConfig(dataset=ingested.path, split=split, judgements=judgements, teacher=config.teacher,
                                          adapted=EncoderSpec(model=blend_dir),
                                          # the teacher again: its query speed measured beside the blend's
                                          modes=["teacher/teacher", "adapted/teacher"],
                                          matryoshka_dims=[], quantization=[], run_mteb=False), home=root)
        quality[BLEND] = blend_row(scored, quality[TEACHER])
        blend_report = scored.directory
        timed("blend (static student)", start)
        work["blend (static student)"] = (f"static student {static.output}, blend {blend_dir} "
                                          f"(student + adapter {weight:g}, static {1.0 - weight:g}"
                                          f"{', chosen on span views' if config.blend_weight is None else ''})")

    # The router: its "seen" texts are the Stage B pairs already on disk (no encoding), only a few
    # hundred span views of the corpus are encoded to calibrate it; scored at each budget. It sits on
    # the best query encoder the run made -- the blend when there is one: routed over student + adapter
    # it scored under the blend alone at a lower speed (mpnet, SciFact test: 0.941 / 0.944 against 0.955).
    router_dir = None
    if config.router.enabled:
        start = time.perf_counter()
        routing = config.router
        routed_row, routed_student = (BLEND, EncoderSpec(model=blend_dir)) if blend_dir else (WITH_ADAPTER, adapted)
        calibrated = calibrate_stored_task(
            routed_student, config.teacher, student_dirs, teacher_dirs, ingested.path, split,
            str(TavaHome(root).artifacts / "routers" / config.registry_adapter), routing.settings,
            routing.budgets[0], routing.calibration_texts, routing.max_reference_texts, root, routing=routing.routing,
            judgements=judgements)
        router_dir = calibrated["directory"]
        # scored on the query vectors the evaluations kept, its teacher cost from the routed row's speed-up
        # (measured beside the teacher there): the teacher does not run again
        curves = evaluate_router_at_task(router_dir, ingested.path, split,
                                         str(TavaHome(root).reports / "route" / config.registry_adapter),
                                         [0.0, *routing.budgets], True, root, judgements,
                                         student_speedup=quality[routed_row].speedup)
        quality.update({row.system: row for row in router_rows(curves, routing.budgets, quality, over=routed_row)})
        timed("router", start)
        work["router"] = (f"over the {'blend' if routed_row == BLEND else 'student + adapter'}, "
                          f"calibration {'reused' if calibrated['reused'] else 'computed'} "
                          f"({calibrated['calibration_texts']} span views), scores "
                          f"{'reused' if curves['reused'] else 'computed'}")

    # The registry's current student and adapter (+ its router and blend, in the same version): what
    # the nightly refresh continues from.
    attached_identity = ""
    if router_dir is not None:
        # the routing policy and the threshold (the budget) are in router.json only: a new policy or
        # budget is a new version too (a re-run with another --router-budgets left the registry's router
        # on the old threshold while the artifact moved)
        attached_identity = ("+router-" + sha256_file(Path(router_dir) / "router.safetensors")
                             + "-" + run_key({"routing": config.router.routing.model_dump(mode="json"),
                                              "threshold": read_json(Path(router_dir) / "router.json")["threshold"]},
                                             12))
    if blend_dir is not None:
        # a blend published with the adapter: a new static member or weights is a new version too
        attached_identity += "+blend-" + blend_fingerprint
    lineage = {"dataset": ingested.name, "dataset_dir": ingested.path, "teacher": embedded.encoder}
    registry = [
        publish_current_task("students", config.registry_student, student.output, student.run_key, root,
                             lineage={**lineage, "source": student.output},
                             metrics={name: quality[name].ndcg_at_10 for name in (STUDENT_ALONE, NO_ADAPTER)}),
        publish_current_task("adapters", config.registry_adapter, adapter.adapter_dir,
                             sha256_file(Path(adapter.adapter_dir) / "model.safetensors") + attached_identity, root,
                             lineage={**lineage, "source": adapter.adapter_dir, "student": student.output,
                                      "router": router_dir, "blend": blend_dir},
                             metrics={"nDCG@10 " + split: quality[WITH_ADAPTER].ndcg_at_10,
                                      **({f"nDCG@10 {split} {BLEND}": quality[BLEND].ndcg_at_10} if blend_dir else {}),
                                      **{f"nDCG@10 {split} {router_system(b)}": quality[router_system(b)].ndcg_at_10
                                         for b in (config.router.budgets if router_dir else [])}},
                             router_dir=router_dir, blend_dir=blend_dir,
                             # its own copy of the student: the artifact directory is retrained in place
                             student_dir=student.output)]

    result = PipelineResult(
        dataset=ingested.name, dataset_dir=ingested.path, split=split, judgements=judgements, rows=ingested.collections, teacher=embedded.encoder,
        index=index.model_dump(include={"index_dir", "factory", "count", "recall_at_10", "version"}),
        student_dir=student.output, adapter_dir=adapter.adapter_dir, registry=registry, router_dir=router_dir,
        blend_dir=blend_dir,
        quality=list(quality.values()),
        scored_queries=read_json(Path(full.files["json"]))["dataset"].get("queries"),
        report_dirs=[full.directory, asymmetric.directory, *([blend_report] if blend_report else [])],
        seconds=seconds, work=work)
    create_markdown_artifact(summary_markdown(result), key="tava-pipeline-summary",
                             description="tava pipeline: quality, speed-ups, artifacts")
    return result


if __name__ == "__main__":
    tava_pipeline()
