"""`tava export`: a query encoder (transformer student, or student + adapter, or a blend of one with
static students; optionally with the confidence router over it) as ONE ONNX file with its tokenizer and a JSON card, so a serving stack needs
neither tava nor torch.

    <out>/model.onnx       input_ids, attention_mask (int64, dynamic batch x sequence) -> embeddings
                           (+ confidence, for a router: queries under card["router"]["threshold"]
                           go to the teacher); a student that reads long texts in windows (window.json)
                           takes its texts' pieces and piece_weights (+ static_ids for a blend) instead:
                           card["window_tokens"], graph.WindowedEncoderGraph
    <out>/tokenizer.json   with the encoder's truncation and padding set inside
    <out>/card.json        written last: teacher to search against, agreement with fp32 torch, precision

The agreement is measured through the exported files exactly as a server runs them
(``standalone.ExportedQueryEncoder``), against the fp32 torch encoder on a sample; an export
whose mean cosine is under the gate is refused and nothing is saved. The directory appears
whole or not at all (built beside it, then renamed).
"""
from __future__ import annotations

import contextlib
import logging
import shutil
import time
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

import numpy as np

from ..config import EncoderSpec
from ..errors import ConfigError, InputError, TavaError
from ..home import TavaHome, slug
from ..io import atomic_directory, read_json, sha256_file, write_json
from .cache import AGREEMENT_TEXTS
from .config import ExportConfig
from .standalone import CARD_NAME, SESSION_SETTINGS, TOKENIZER_NAME, ExportedQueryEncoder, cpu_flags, full_range_warning

log = logging.getLogger(__name__)

CARD_FORMAT = "tava-onnx-query-encoder/1"
GRAPH_FILE = "model.onnx"
TOKENIZER_EXTRAS = ("tokenizer_config.json", "special_tokens_map.json", "vocab.txt")

# Query-like texts for the default agreement sample (the backend's sample adds edge cases).
DEFAULT_QUERIES = [
    "what causes antibiotic resistance in bacteria?", "how do vaccines train the immune system",
    "best way to cache vectors on disk", "is coffee bad for your heart", "python read a parquet file",
    "symptoms of vitamin d deficiency", "who wrote the declaration of independence",
    "does exercise improve memory in older adults", "transformer attention explained simply",
    "cheap flights to lisbon in march", "how to normalise embeddings for cosine search",
    "effect of sleep deprivation on reaction time", "when did the berlin wall fall",
    "protein folding prediction accuracy", "difference between a list and a tuple",
    "mitochondria produce energy for the cell", "climate change impact on coral reefs",
    "how many layers does bert base have", "gene expression in cancer cells", "what is a vector database",
]


# Max |diff| between the exported confidence and tava's compiled score of the same vectors: the
# router part stays fp32 at either precision, so anything larger is a bug, not rounding.
CONFIDENCE_TOLERANCE = 1e-4


class ExportRefused(TavaError):
    """An export whose vectors do not agree closely enough with the torch encoder (not saved)."""


@dataclass
class ExportParts:
    """What goes into the graph: the transformer student, its adapter, a router over them, and -- for a
    blend -- the static members (with their weights) beside the transformer member's ``weight``."""

    student: Any
    adapter: Any = None
    router: Any = None
    statics: list[tuple[Any, float]] = field(default_factory=list)
    weight: float = 1.0


def _split_encoder(encoder: Any) -> ExportParts:
    """The parts of an exportable encoder, or a ConfigError saying why it is not exportable."""
    from ..encoders.blend import BlendEncoder
    from ..route.router import RoutedEncoder

    if isinstance(encoder, RoutedEncoder):
        if isinstance(encoder.student, BlendEncoder):   # the graph blends, then scores the blended vector
            return replace(_split_blend(encoder.student), router=encoder)
        student, adapter = _split_vector_encoder(encoder.student)
        return ExportParts(student, adapter, encoder)
    if isinstance(encoder, BlendEncoder):
        return _split_blend(encoder)
    return ExportParts(*_split_vector_encoder(encoder))


def _split_blend(blend: Any) -> ExportParts:
    """A blend exports as one graph when it has one transformer member (+ adapter) and static members
    that cut text with the transformer's tokenizer (checked in ``static_members``): the
    statics read the transformer's token ids, so the graph takes the same two inputs."""
    from ..encoders.static import StaticEncoder

    transformers, statics = [], []
    for member, weight in zip(blend.members, blend.weights, strict=True):
        if isinstance(member, StaticEncoder):
            statics.append((member, weight))
        else:
            transformers.append((member, weight))
    if len(transformers) != 1:
        raise ConfigError(f"cannot export a blend of {len(transformers)} transformer members and {len(statics)} "
                          "static ones: the ONNX export takes one transformer student (or an adapter over one) "
                          "and static students beside it",
                          hint="blend one transformer student (+ adapter) with static students; a blend of static "
                               "students alone is already fast on the numpy path")
    (member, weight), = transformers
    student, adapter = _split_vector_encoder(member)
    return ExportParts(student, adapter, statics=statics, weight=weight)


def static_members(parts: ExportParts, texts: Sequence[str], *, whole: bool = False) -> list[Any]:
    """The blend's static members as ``graph.StaticMember``s over the transformer tokenizer's ids, once
    each is shown to cut ``texts`` into the same tokens (without special tokens, within the transformer's
    max_length) with the same query prefix; a ConfigError naming the member otherwise. A member reads every
    token of the text, [UNK] included, up to its own max_length, as tava's static students read it: of
    ``input_ids``, the positions between the template's first and last token (``graph.text_token_mask``),
    so texts past the transformer's max_length are cut; with ``whole``, the whole text's ids (a windowed
    graph's ``static_ids``: no special tokens, no cut but the static student's own max_length)."""
    import torch

    from ..distill.vocabulary import unpadded
    from .graph import StaticMember

    backend = unpadded(parts.student.tokenizer.backend_tokenizer)   # its tokenizer.json may pad to a length
    vocab = backend.get_vocab()
    limit = int(parts.student.max_length) - 2     # room for [CLS] and [SEP]
    prefix = parts.student.spec.query_prefix
    encoded = [e.ids for e in backend.encode_batch([prefix + t for t in texts], add_special_tokens=False)]
    if not whole:   # the members read input_ids between the template's first and last token (text_token_mask)
        framed = [e.ids for e in backend.encode_batch([prefix + t for t in texts], add_special_tokens=True)]
        if any(len(full) != len(ids) + 2 or full[1:-1] != ids for full, ids in zip(framed, encoded, strict=True)):
            raise ConfigError("the transformer student's tokenizer does not put one special token before and one "
                              "after the text, so the graph's static members cannot find the text's tokens in "
                              "its input ids", hint="serve the blend with tava")
    members = []
    for static, weight in parts.statics:
        if whole:
            limit = static.max_length if static.max_length is not None else max(map(len, encoded), default=0)
        ours = [ids[:limit] for ids in encoded]
        where = f"static member {static.name} ({static.directory})"
        if static.spec.query_prefix != prefix:
            raise ConfigError(f"{where} uses the query prefix {static.spec.query_prefix!r}, the transformer "
                              f"student {prefix!r}: one graph reads one tokenised text",
                              hint="blend members with the same query prefix")
        # the static id of each transformer id, by token string (-1: the static vocabulary lacks it)
        theirs_by_token = static.tokenizer.get_vocab()
        index = torch.full((max(vocab.values()) + 1,), -1, dtype=torch.long)
        pairs = [(token_id, theirs_by_token[token]) for token, token_id in vocab.items()
                 if theirs_by_token.get(token, static.table.shape[0]) < static.table.shape[0]]
        if pairs:
            index[torch.tensor([i for i, _ in pairs])] = torch.tensor([j for _, j in pairs])
        theirs = [e.ids[:limit] for e in static.tokenizer.encode_batch([prefix + t for t in texts],
                                                                       add_special_tokens=False)]
        if [[int(index[i]) for i in ids] for ids in ours] != theirs:
            raise ConfigError(f"{where} cuts text into other tokens than the transformer student's tokenizer "
                              "(another vocabulary, or one expanded with whole words), so it cannot read the "
                              "graph's input ids", hint="blend a static student of the same teacher vocabulary "
                                                        "(static_vocabulary 0), or serve the blend with tava")
        # every token of the text is read, [UNK] too, as tava's static students read it; the graph's mask says
        # which positions hold the text (input_ids also hold [CLS], [SEP], [PAD]: graph.text_token_mask)
        counts = (index >= 0).float()
        table = static.table[index.clamp(min=0)] * counts.unsqueeze(1)
        members.append(StaticMember(table, counts, weight, max_length=static.max_length))
    return members


def _split_vector_encoder(encoder: Any) -> tuple[Any, Any]:
    import torch

    from ..encoders.mapped import MappedEncoder
    from ..encoders.transformer import TransformerEncoder

    if isinstance(encoder, TransformerEncoder):
        return encoder, None
    if isinstance(encoder, MappedEncoder) and isinstance(encoder.inner, TransformerEncoder) \
            and isinstance(encoder.mapper, torch.nn.Module):
        return encoder.inner, encoder.mapper
    inner = getattr(encoder, "inner", None)
    raise ConfigError(f"cannot export a {type(encoder).__name__}"
                      + (f" over a {type(inner).__name__}" if inner is not None else "")
                      + " as an ONNX query encoder: export takes a transformer student, an adapter over one, "
                        "a blend of one with static students, or a router over any of these",
                      hint="static students are already fast on the numpy path (no export needed); "
                           "pass the student or adapter directory")


def export_window(student: Any) -> Optional[dict[str, int]]:
    """The card's keys for a student that reads long texts in windows (``encoders/windows.py``), or None:
    the window as the encoder applies it (at most max_length) and the query prefix's token count, which
    every piece carries. A server cuts texts with them as ``standalone.ExportedQueryEncoder.windows`` does."""
    if not student.window:
        return None
    prefix_tokens = student.prefix_tokens("query")      # loads the tokenizer, which settles max_length
    return {"window_tokens": int(min(student.window, student.max_length)), "window_prefix_tokens": prefix_tokens}


def read_sample(config: ExportConfig) -> list[str]:
    if not config.sample_file:
        return DEFAULT_QUERIES + AGREEMENT_TEXTS
    path = Path(config.sample_file).expanduser()
    if not path.is_file():
        raise InputError("agreement sample file not found", path=path, hint="give a text file, one text per line")
    texts = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if len(texts) < 8:
        raise InputError(f"the agreement sample has {len(texts)} non-empty lines; at least 8 are needed",
                         path=path)
    return texts[: config.max_sample]


def find_teacher(model_dir: Path, student_dir: Path) -> Optional[dict[str, Any]]:
    """What the adapter's lineage, else the student's model card, says the teacher is."""
    for candidate, keys in ((model_dir / "config.json", ("lineage", "teacher")),
                            (student_dir / "model_card.json", ("teacher",))):
        if not candidate.is_file():
            continue
        try:
            value: Any = read_json(candidate)
        except InputError:
            continue
        for key in keys:
            value = value.get(key) if isinstance(value, dict) else None
        if isinstance(value, dict) and value:
            return {k: value[k] for k in ("name", "model", "fingerprint", "dim", "encoder") if k in value}
    return None


def agreement(reference: np.ndarray, candidate: np.ndarray) -> dict[str, float]:
    cos = np.sum(reference * candidate, axis=1) / (
        np.linalg.norm(reference, axis=1) * np.linalg.norm(candidate, axis=1) + 1e-12)
    return {"mean_cosine": float(cos.mean()), "min_cosine": float(cos.min()),
            "max_abs_diff": float(np.abs(reference - candidate).max())}


def _write_tokenizer(student: Any, directory: Path) -> None:
    """The student's fast tokenizer with its truncation and padding set, so a server calls
    ``encode_batch`` and gets what tava's torch path feeds the model."""
    backend = student.tokenizer.backend_tokenizer
    tokenizer = type(backend).from_str(backend.to_str())
    tokenizer.enable_truncation(max_length=int(student.max_length))
    pad_token = student.tokenizer.pad_token or "[PAD]"
    tokenizer.enable_padding(pad_id=int(student.tokenizer.pad_token_id or 0), pad_token=pad_token)
    tokenizer.save(str(directory / TOKENIZER_NAME))
    for name in TOKENIZER_EXTRAS:
        if (student.directory / name).is_file():
            shutil.copy(student.directory / name, directory / name)


# The int8 recipe, recorded in the card. uint8 activations (quantised per call, per tensor) x int8
# weights is the one pairing ONNX Runtime's MLAS sends to its AMX kernel (U8S8) on CPUs with
# AMX-INT8, and to VNNI ones elsewhere; uint8 weights (U8U8) ran ~7x slower per product here and
# int8 activations (S8S8) fall to a generic kernel (bench/int8_amx.py). Per-channel scales: on
# all-MiniLM-L6-v2 mean cosine to fp32 was 0.961 per-tensor, 0.993 per-channel. Reduced (7-bit)
# range: as fast as full range on AMX/VNNI and within noise in agreement on the dev split, and it
# keeps the file safe on AVX2-only CPUs, where a full-range u8 x s8 pair can saturate int16.
# Weights only (MatMulConstBOnly): attention's activation x activation products stay fp32.
QUANTIZATION: dict[str, Any] = {
    "method": "onnxruntime.quantization.quantize_dynamic", "format": "QOperator",
    "op_types": ["MatMul"], "weights_only": True, "weight_type": "QInt8",
    "activation_type": "QUInt8 (dynamic, per tensor)", "per_channel": True, "reduce_range": True,
}
# The graph is exported without onnxruntime.transformers' offline fusions: ONNX Runtime still fuses
# at session start (GELU, MatMul + bias, ...), and the unfused attention (separate MatMuls, Softmax)
# ran faster than the fused Attention / QAttention ops on this CPU, fp32 and int8 alike.
GRAPH: dict[str, Any] = {"offline_fusion": False}


def int8_recipe(config: ExportConfig) -> dict[str, Any]:
    """``QUANTIZATION`` with the weight range the config asks for (``int8_range``)."""
    return {**QUANTIZATION, "reduce_range": config.int8_range == "reduced"}


def quantize_graph(fp32: Path, int8: Path, recipe: dict[str, Any] = QUANTIZATION) -> None:
    """Dynamic int8 quantisation of an exported graph by ``recipe`` (``QUANTIZATION``'s keys; a bench may
    pass variants of it). A router's confidence nodes stay fp32: its document bank and maps are
    scored against thresholds calibrated in fp32; so does an adapter's residual memory."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from .graph import CONFIDENCE_NAME

    # fp32 stays: the router's confidence nodes, and an adapter's residual memory, whose key product picks the
    # top-k neighbours (an int8 key matrix reorders near ties, and softmax at temperature 0.05 amplifies it)
    kept_fp32 = [node.name for node in onnx.load(str(fp32), load_external_data=False).graph.node
                 if node.name.startswith(f"/{CONFIDENCE_NAME}/") or "/memory/" in node.name]
    with _without_log_line(PRE_PROCESS_ADVICE):
        quantize_dynamic(str(fp32), str(int8), weight_type=getattr(QuantType, recipe["weight_type"]),
                         op_types_to_quantize=list(recipe["op_types"]), per_channel=recipe["per_channel"],
                         reduce_range=recipe["reduce_range"], nodes_to_exclude=kept_fp32,
                         extra_options={"MatMulConstBOnly": recipe.get("weights_only", True),
                                        "DefaultTensorType": onnx.TensorProto.FLOAT})


# ONNX Runtime's quantiser warns on every call that the graph was not pre-processed (shape inference + its
# graph optimisation written into the file). Measured, pre-processing gains nothing here: the session's own
# optimisation at load does the same work (bench/int8_variants.py, int8_variants_preprocess_zen2.json: 0.99x
# the shipped variant's speed, the same agreement). A user read it as something tava got wrong.
PRE_PROCESS_ADVICE = "Please consider to run pre-processing before quantization"


@contextlib.contextmanager
def _without_log_line(prefix: str) -> Iterator[None]:
    """Drop log records starting with ``prefix`` from the root logger (where ONNX Runtime's quantiser logs)
    while the block runs; every other record passes."""
    class Drop(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            return not record.getMessage().startswith(prefix)

    drop, root = Drop(), logging.getLogger()
    root.addFilter(drop)
    try:
        yield
    finally:
        root.removeFilter(drop)


def _router_teacher(router: Any) -> dict[str, Any]:
    return {"model": router.teacher.spec.model, "name": router.teacher.name,
            "fingerprint": router.teacher.fingerprint, "dim": int(router.teacher.dim)}


def _router_card(router: Any) -> dict[str, Any]:
    """What a server needs to route: the threshold rule, and what the numbers mean."""
    threshold = router.threshold
    return {
        "threshold": float(threshold.threshold), "threshold_mode": threshold.mode, "value": float(threshold.value),
        "expected_share": float(threshold.expected_share),
        "rule": "send a query to the teacher when its confidence is under threshold",
        "confidence": f"predicted {router.calibration.target} agreement of the query's result list with the teacher's",
        "signals": list(router.calibration.signals),
        # tava's own RoutedEncoder follows this policy; a server may keep the fixed threshold above
        "routing": router.routing.model_dump(mode="json"),
        "router_fingerprint": router.fingerprint,
        "from_results": _from_results_card(router),
    }


def _from_results_card(router: Any) -> dict[str, Any] | None:
    """For the default score (the cell margin alone), the numbers a server needs to compute the
    confidence from its own search of the exported vectors, without the graph's pass over the bank
    (as ``RoutedEncoder.route_searched`` does): confidence = bias + weight * cell margin of the top
    ``results_needed`` results. None for any other score (it reads more than one list)."""
    compiled = router.compiled
    if set(compiled.coef) != {"retrieval_cell_margin"} or router.calibration.vector_components:
        return None
    return {"results_needed": compiled.results_needed(), "bias": float(compiled.bias),
            "cell_margin_weight": float(compiled.coef["retrieval_cell_margin"]),
            "cell_margin": "minus the mean, over the results ranked 2..results_needed, of (best cosine - their "
                           "cosine) / |best document - their document| (unit teacher vectors)"}


def _router_agreement(router: Any, score: Any, routed: dict[str, np.ndarray], texts: list[str],
                      reference: np.ndarray) -> dict[str, Any]:
    """The exported confidence against tava's compiled score of the same (exported) vectors -- a bug
    guard: the router part is fp32 whatever the precision -- and the routing decisions against those
    the fp32 torch encoder's vectors give."""
    confidence = routed["confidence"]
    own = score(texts, routed["vectors"])
    diff = float(np.abs(confidence - own).max()) if len(texts) else 0.0
    if not diff <= CONFIDENCE_TOLERANCE:
        raise ExportRefused(f"export refused: the exported router's confidence differs from tava's by {diff:.2e} "
                            f"(> {CONFIDENCE_TOLERANCE:g}) on the same vectors; nothing was saved",
                            hint="report this as a bug; export the encoder without its router meanwhile")
    threshold = float(router.threshold.threshold)
    torch_decisions = score(texts, reference) < threshold
    return {"max_abs_diff_confidence": diff, "same_decisions_as_fp32_torch":
            float(np.mean(torch_decisions == routed["to_teacher"])) if len(texts) else 1.0,
            "sent_to_teacher": float(np.mean(routed["to_teacher"])) if len(texts) else 0.0,
            # a user read 0.79 here beside expected_share 0.1 as a broken router: the share is the agreement
            # sample's, texts the router may never have seen the like of
            "sent_to_teacher_note": "share of the agreement sample's texts (card agreement.sample), not of your "
                                    "queries: expected_share is the calibrated one; export with --sample-file "
                                    "YOUR_QUERIES to read it on queries like yours"}


def default_out(home: TavaHome, name: str, fingerprint: str, precision: str) -> Path:
    return home.artifacts / "exports" / f"{slug(name)}-{fingerprint[:12]}-{precision}"


def export_query_encoder(config: ExportConfig, home: Optional[TavaHome] = None) -> dict[str, Any]:
    """Export, measure, gate, save; returns the card (with ``path``)."""
    from ..encoders import load_encoder, resolve_model_path
    from ..encoders.finite import check_finite_vectors
    from ..encoders.onnx_backend import onnxruntime_available
    from .graph import EncoderGraph, WindowedEncoderGraph, export_graph

    if not onnxruntime_available():
        raise ConfigError("`tava export` needs onnx and onnxruntime, which are not installed",
                          hint="pip install 'tava[onnx]'")
    home = home or TavaHome()
    started = time.perf_counter()
    encoder = load_encoder(EncoderSpec(model=config.model, backend="torch", device="cpu", dtype="float32"),
                           cache=False)
    parts = _split_encoder(encoder)
    student, adapter, router = parts.student, parts.adapter, parts.router
    texts = read_sample(config)
    vector_encoder = router.student if router is not None else encoder
    reference = vector_encoder.encode(texts, kind="query")
    # NaN is no agreement question: refused at once, naming the model, before any graph is exported
    check_finite_vectors(reference, vector_encoder, model=config.model, texts="agreement sample texts",
                         outcome="nothing was exported")
    recipe = int8_recipe(config) if config.precision == "int8" else None
    label = "int8-full" if recipe is not None and not recipe["reduce_range"] else config.precision
    out = Path(config.out).expanduser().resolve() if config.out else \
        default_out(home, encoder.name, encoder.fingerprint, label)
    score, confidence_graph = None, None
    if router is not None:
        from .router_graph import ConfidenceGraph

        score = router.compiled
        confidence_graph = ConfidenceGraph(score)
    window = export_window(student)
    statics = static_members(parts, texts, whole=window is not None) if parts.statics else []
    graph_type = WindowedEncoderGraph if window is not None else EncoderGraph
    graph = graph_type(student.model, student.dense, pooling=student.pooling, normalize=student.normalized,
                       tail=adapter, confidence=confidence_graph, statics=statics, weight=parts.weight)
    model_dir = resolve_model_path(config.model)
    teacher = ({"model": config.teacher} if config.teacher else _router_teacher(router) if router is not None
               else find_teacher(model_dir, student.directory))
    if teacher is None:
        log.warning("the card names no teacher (none recorded beside %s): pass --teacher", config.model)
    with atomic_directory(out) as tmp:
        export_graph(graph, tmp / GRAPH_FILE, vocab_size=len(student.tokenizer))
        if recipe is not None:
            fp32 = tmp / GRAPH_FILE
            staged = tmp / "model.int8.onnx"
            quantize_graph(fp32, staged, recipe)
            staged.replace(fp32)
        _write_tokenizer(student, tmp)
        card: dict[str, Any] = {
            "format": CARD_FORMAT, "file": GRAPH_FILE, "precision": config.precision,
            "dim": int(encoder.dim), "normalized": True, "max_length": int(student.max_length),
            "query_prefix": student.spec.query_prefix, **(window or {}),
            "inputs": graph.input_names, "output": "embeddings", "outputs": graph.output_names,
            "encoder": {"name": encoder.name, "fingerprint": encoder.fingerprint, "model": str(model_dir),
                        "student": student.fingerprint, "adapter": adapter is not None,
                        "router": router is not None,
                        "blend": [{"member": student.name, "kind": "transformer" + (" + adapter" if adapter is not None
                                                                                   else ""), "weight": parts.weight}]
                        + [{"member": static.name, "kind": "static", "fingerprint": static.fingerprint, "weight": w,
                            "note": "reads the transformer's token ids, so texts past max_length are cut"
                            if window is None else "reads the whole text's ids (input static_ids), as tava does"}
                           for static, w in parts.statics] if parts.statics else None},
            "router": _router_card(router) if router is not None else None,
            "teacher": teacher,
            "graph": GRAPH,
            "quantization": None if recipe is None else
            {**recipe, **({"kept_fp32": "the router's confidence nodes"} if router is not None else {})},
            "session": SESSION_SETTINGS,
            "search_against": "document vectors of the teacher above (cosine = dot product: outputs are unit length)",
        }
        write_json(tmp / CARD_NAME, card)  # the runner reads it; rewritten below with the measurements
        # measured in its staging directory: a warning about the file names the saved one (below)
        exported = ExportedQueryEncoder(tmp, warn=False)
        routed = exported.route(texts) if router is not None else None
        candidate = routed["vectors"] if routed is not None else exported.encode(texts)
        # not check_finite_vectors: the torch encoder gave finite vectors above, so the model is sound and
        # the fault is the exported graph's (ExportRefused, a bug to report), not damaged weights
        if not np.isfinite(candidate).all():
            bad = int((~np.isfinite(candidate)).any(axis=1).sum())
            raise ExportRefused(
                f"{config.precision} export refused: the exported graph gives vectors holding NaN or infinite values "
                f"for {bad} of {len(texts)} sample texts where the fp32 torch encoder {encoder.name!r} gives finite "
                "ones; nothing was saved", path=config.model,
                hint="report this as a bug" + (" (and export fp32 meanwhile)" if config.precision != "fp32" else ""))
        measured = agreement(reference, candidate)
        card["agreement"] = {**measured, "texts": len(texts), "against": "fp32 torch encoder",
                             "sample": config.sample_file or "built-in",
                             "gate_min_mean_cosine": config.min_mean_cosine}
        if routed is not None:
            card["router"]["agreement"] = _router_agreement(router, score, routed, texts, reference)
        if not measured["mean_cosine"] >= config.min_mean_cosine:
            raise ExportRefused(
                f"{config.precision} export refused: mean cosine {measured['mean_cosine']:.4f} to the fp32 torch "
                f"encoder is under the gate {config.min_mean_cosine} ({len(texts)} texts); nothing was saved",
                path=config.model, hint="export fp32, or lower --min-mean-cosine if the loss is acceptable")
        card["sha256"] = sha256_file(tmp / GRAPH_FILE)
        card["bytes"] = (tmp / GRAPH_FILE).stat().st_size
        card["export_seconds"] = round(time.perf_counter() - started, 2)
        write_json(tmp / CARD_NAME, card)
    log.info("exported %s (%s) to %s: mean cosine %.5f to the fp32 torch encoder on %d %s texts%s", encoder.name,
             config.precision, out, measured["mean_cosine"], len(texts),
             "built-in" if not config.sample_file else "--sample-file",
             " (--sample-file YOUR_QUERIES measures it on texts like yours)" if not config.sample_file else "")
    if (warning := full_range_warning(card, cpu_flags())) is not None:
        warnings.warn(f"{out}: {warning}", RuntimeWarning, stacklevel=2)
    return {**card, "path": str(out)}
