"""One torch module for a whole transformer encoder — transformer, pooling, Dense projection,
L2 normalisation, an optional vector map (a Stage B adapter), optional static students blended in
(a ``tava blend`` of the two) and an optional confidence score (a router's, ``router_graph.py``) —
and its export to ONNX.

The module computes exactly what ``TransformerEncoder._forward`` computes (then the map), so the
exported graph and the torch path agree to float precision; inputs are ``input_ids`` and
``attention_mask`` with dynamic batch and sequence axes, the outputs are ``embeddings`` (and
``confidence`` when the graph has a router's score). ``WindowedEncoderGraph`` is the same for a student
that reads long texts in windows (``encoders/windows.py``): its rows are the texts' pieces, and a third
input pools them per text.
"""
from __future__ import annotations

import contextlib
import inspect
import logging
import os
import warnings
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

import torch
from torch import nn

from ..errors import ModelLoadError

log = logging.getLogger(__name__)

INPUT_NAMES = ("input_ids", "attention_mask")
PIECE_WEIGHTS_NAME = "piece_weights"    # a windowed graph's: (texts, pieces) content-token counts
STATIC_IDS_NAME = "static_ids"          # a windowed blend's: (texts, tokens) whole-text ids, -1 = padding
OUTPUT_NAME = "embeddings"
CONFIDENCE_NAME = "confidence"
OPSET = 17


class StaticMember(nn.Module):
    """A static student inside the graph, reading the transformer's token ids: ``weight`` x the unit
    mean of its token vectors over the text's tokens -- what ``StaticEncoder`` computes from its own
    tokenizer. ``table`` is indexed by the *transformer's* ids (a static student's vocabulary may number
    the same tokens differently: model2vec drops the unused slots); ``counts`` is 1 for a token the static
    student has and 0 for the rest. Which positions are the text's own tokens is the mask the graph passes
    (``text_token_mask`` of ``input_ids``, or a windowed graph's ``static_ids``): every token there is read,
    [UNK] and special tokens written in the text included, as ``StaticEncoder`` reads them (it tokenises
    without special tokens and drops nothing)."""

    table: torch.Tensor    # buffers: saved in the graph as constants
    counts: torch.Tensor

    def __init__(self, table: torch.Tensor, counts: torch.Tensor, weight: float,
                 max_length: Optional[int] = None) -> None:
        super().__init__()
        self.register_buffer("table", table.detach().float().clone())
        self.register_buffer("counts", counts.detach().float().reshape(-1, 1).clone())
        self.weight = float(weight)
        self.max_length = max_length    # the static student's own cut (None: it reads the whole text)

    def forward(self, input_ids: torch.Tensor, text_mask: torch.Tensor) -> torch.Tensor:
        """``text_mask``: where ``input_ids`` hold the text's own tokens (in order); the member reads the
        first ``max_length`` of them."""
        mask = text_mask.to(self.table.dtype)
        if self.max_length is not None:
            mask = mask * (mask.cumsum(1) <= self.max_length).to(mask.dtype)
        weights = nn.functional.embedding(input_ids, self.counts) * mask.unsqueeze(-1)
        summed = (nn.functional.embedding(input_ids, self.table) * weights).sum(1)
        mean = summed / weights.sum(1).clamp(min=1.0)
        return self.weight * nn.functional.normalize(mean, dim=-1)


def text_token_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """Where ``input_ids`` hold the text's own tokens: the attended positions but the first and the last,
    which the tokenizer's template adds ([CLS] ... [SEP], <s> ... </s>; ``static_members`` checks the
    template is that). By position, not by id: a static student reads [UNK] and a special token written
    in the text. Either padding side: the count of attended positions up to each one is its rank."""
    rank = attention_mask.cumsum(1)
    return (attention_mask > 0) & (rank > 1) & (rank < attention_mask.sum(1, keepdim=True))


class EncoderGraph(nn.Module):
    """``(input_ids, attention_mask) -> float32 vectors``: transformer, pooling, dense, normalise,
    then ``tail`` (e.g. an adapter, which normalises its own output); with ``statics`` (a blend) the
    unit result weighs ``weight`` beside each ``StaticMember``'s and the sum is normalised, as
    ``BlendEncoder`` does; with ``confidence`` (a module from the final vectors to one score per row)
    ``-> (vectors, confidence)``."""

    def __init__(self, model: nn.Module, dense: nn.Module, *, pooling: str, normalize: bool,
                 tail: Optional[nn.Module] = None, confidence: Optional[nn.Module] = None,
                 statics: Sequence[StaticMember] = (), weight: float = 1.0) -> None:
        super().__init__()
        self.model = model
        self.dense = dense
        self.pooling = pooling
        self.normalize = normalize
        self.tail = tail
        self.confidence = confidence
        self.statics = nn.ModuleList(statics)
        self.weight = float(weight)
        # BERT-family models take token_type_ids; a single sequence has all zeros, which is what
        # the torch path's tokenizer passes, so the graph makes them instead of taking an input.
        self._takes_token_types = "token_type_ids" in inspect.signature(model.forward).parameters

    @property
    def input_names(self) -> list[str]:
        return list(INPUT_NAMES)

    @property
    def output_names(self) -> list[str]:
        return [OUTPUT_NAME] + ([CONFIDENCE_NAME] if self.confidence is not None else [])

    def example_inputs(self, vocab_size: int) -> tuple[torch.Tensor, ...]:
        """Inputs to trace the graph with (their sizes are dynamic axes in the file)."""
        return (torch.randint(0, max(vocab_size, 2), (2, 16), dtype=torch.long),
                torch.ones(2, 16, dtype=torch.long))

    def dynamic_axes(self) -> dict[str, dict[int, str]]:
        return {"input_ids": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "sequence"},
                **{name: {0: "batch"} for name in self.output_names}}

    def forward(self, input_ids: torch.Tensor,
                attention_mask: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        pooled = self._embed(input_ids, attention_mask)
        if not len(self.statics):
            return self._finish(pooled, None, None)
        return self._finish(pooled, input_ids, text_token_mask(attention_mask))

    def _embed(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Each row's transformer vector: pooling, dense, normalisation (``TransformerEncoder._forward``)."""
        kwargs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if self._takes_token_types:
            kwargs["token_type_ids"] = torch.zeros_like(input_ids)
        token_vectors = self.model(**kwargs).last_hidden_state
        if self.pooling == "cls":
            pooled = token_vectors[:, 0]
        else:
            mask = attention_mask.unsqueeze(-1).to(token_vectors.dtype)
            pooled = (token_vectors * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        pooled = self.dense(pooled).float()
        if self.normalize:
            pooled = nn.functional.normalize(pooled, dim=-1)
        return pooled

    def _finish(self, pooled: torch.Tensor, static_ids: Optional[torch.Tensor],
                static_mask: Optional[torch.Tensor]) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """The tail, the static members (reading ``static_ids`` where ``static_mask``) and the confidence."""
        if self.tail is not None:
            pooled = self.tail(pooled)
        if len(self.statics):
            assert static_ids is not None and static_mask is not None, "static members need token ids"
            blended = self.weight * nn.functional.normalize(pooled, dim=-1)
            for member in self.statics:
                blended = blended + member(static_ids, static_mask)
            pooled = nn.functional.normalize(blended, dim=-1)
        if self.confidence is not None:
            return pooled, self.confidence(pooled)
        return pooled


class WindowedEncoderGraph(EncoderGraph):
    """``EncoderGraph`` of a student that reads long texts in windows (``TransformerEncoder.encode``):
    ``(input_ids, attention_mask, piece_weights[, static_ids])``. ``input_ids`` / ``attention_mask`` hold
    the texts' pieces (one row each, as ``windows.split_windows`` cuts them, each tokenised with its special
    tokens and prefix); ``piece_weights`` (texts x pieces, float) holds in row t the content-token counts
    of text t's pieces and zeros elsewhere. Each text's vector is ``pool_windows``': the weighted mean of
    its pieces' vectors, L2-normalised when the student normalises; then the tail, the blend and the
    confidence act on it, as tava's wrappers act on the pooled student vector. A blend's static members
    read the *whole* text as tava's static students do: ``static_ids`` (texts x tokens) are the
    transformer tokenizer's ids of prefix + text without special tokens or truncation, -1 after the end."""

    @property
    def input_names(self) -> list[str]:
        return list(INPUT_NAMES) + [PIECE_WEIGHTS_NAME] + ([STATIC_IDS_NAME] if len(self.statics) else [])

    def example_inputs(self, vocab_size: int) -> tuple[torch.Tensor, ...]:
        ids = torch.randint(0, max(vocab_size, 2), (3, 16), dtype=torch.long)
        weights = torch.tensor([[14.0, 3.0, 0.0], [0.0, 0.0, 9.0]])
        static_ids = torch.randint(0, max(vocab_size, 2), (2, 24), dtype=torch.long)
        static_ids[1, 10:] = -1
        return (ids, torch.ones(3, 16, dtype=torch.long), weights) + ((static_ids,) if len(self.statics) else ())

    def dynamic_axes(self) -> dict[str, dict[int, str]]:
        return {"input_ids": {0: "pieces", 1: "sequence"}, "attention_mask": {0: "pieces", 1: "sequence"},
                PIECE_WEIGHTS_NAME: {0: "batch", 1: "pieces"}, STATIC_IDS_NAME: {0: "batch", 1: "tokens"},
                **{name: {0: "batch"} for name in self.output_names}}

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,  # type: ignore[override]
                piece_weights: torch.Tensor,
                static_ids: Optional[torch.Tensor] = None) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        pieces = self._embed(input_ids, attention_mask)
        pooled = (piece_weights @ pieces) / piece_weights.sum(1, keepdim=True).clamp(min=1e-12)
        if self.normalize:
            pooled = nn.functional.normalize(pooled, dim=-1)
        if static_ids is None:
            return self._finish(pooled, None, None)
        return self._finish(pooled, static_ids.clamp(min=0), static_ids >= 0)


@contextlib.contextmanager
def eager_attention(model: nn.Module) -> Iterator[None]:
    """Export with the plain (eager) attention: its traced pattern is what ONNX Runtime fuses
    into one Attention op (the SDPA trace is not), ~1.2x faster on 2 CPU cores; restored after."""
    config = getattr(model, "config", None)
    before = getattr(config, "_attn_implementation", None)
    setter = getattr(model, "set_attn_implementation", None)
    switched = False
    if before not in (None, "eager") and setter is not None:
        try:
            setter("eager")
            switched = True
        except Exception:  # noqa: BLE001 - a model that cannot switch is exported as it is
            switched = False
    try:
        yield
    finally:
        if switched and setter is not None:
            setter(before)


def export_graph(graph: EncoderGraph, path: Path, *, vocab_size: int) -> Path:
    """Write ``graph`` as one self-contained ONNX file at ``path`` (weights inside, no external
    data file). No offline fusions: ONNX Runtime still fuses at session start (GELU, MatMul + bias,
    ...), and run with ``standalone.SESSION_SETTINGS`` the plain graph was as fast or faster than
    onnxruntime.transformers' fused one (its SkipLayerNormalization CPU kernel is slow; the query
    encoder: bench/int8_amx.py; the teacher: bench/teacher_onnx_graphs.py). The one offline fusion
    that pays, BERT attention, is ``fuse_attention``'s, applied by the backend's cache on top of this
    graph. The caller makes it atomic (a temp name, then ``os.replace``) and checks agreement with torch."""
    graph = graph.float().eval()
    example = graph.example_inputs(vocab_size)
    names = graph.input_names
    axes = {name: axis for name, axis in graph.dynamic_axes().items() if name in names or name in graph.output_names}
    path = Path(path)
    try:
        with torch.no_grad(), warnings.catch_warnings(), eager_attention(graph.model):
            warnings.simplefilter("ignore")  # the tracer's notes on shapes are for torch developers
            torch.onnx.export(graph, example, str(path), input_names=names,
                              output_names=graph.output_names, dynamic_axes=axes, opset_version=OPSET,
                              dynamo=False, do_constant_folding=True)
    except Exception as exc:  # noqa: BLE001 - any exporter failure means: this encoder stays on torch
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        for leftover in (path, Path(str(path) + ".data")):
            if leftover.exists():
                os.unlink(leftover)
        raise ModelLoadError(f"the encoder cannot be exported to ONNX: {first}",
                             hint="use --encoder-backend torch (custom model code may not be exportable)") from None
    return path


# Model families whose attention ONNX Runtime's offline optimizer can fuse into its ``Attention`` op
# (the BERT pattern). Others (e.g. MPNet, whose relative position bias breaks the pattern) keep the
# plain graph, which ran as fast as any partly fused one (bench/teacher_onnx_graphs.py).
ATTENTION_FUSION_MODEL_TYPES = frozenset({"bert"})


def bert_fusions(path: Path, config: Any, **options: bool) -> Any:
    """ONNX Runtime's offline BERT fusions of the graph at ``path`` (``options``: ``FusionOptions``
    switches, e.g. ``enable_skip_layer_norm=False``), returned as its optimizer's model, not saved.
    Raises ImportError on an onnxruntime build without its transformers tools."""
    from onnxruntime.transformers import optimizer
    from onnxruntime.transformers.fusion_options import FusionOptions

    fusion_options = FusionOptions("bert")
    for key, value in options.items():
        setattr(fusion_options, key, value)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return optimizer.optimize_model(str(path), model_type="bert", num_heads=int(config.num_attention_heads),
                                        hidden_size=int(config.hidden_size), opt_level=1,
                                        optimization_options=fusion_options)


def fuse_attention(source: Path, out: Path, config: Any) -> int:
    """Write to ``out`` the graph at ``source`` with ONNX Runtime's BERT attention fusion (plus the
    GELU / LayerNorm / embedding fusions that come with it, but not SkipLayerNormalization, whose CPU
    kernel was slow); returns the number of fused ``Attention`` nodes, 0 when ``out`` was not written.
    ``source`` is left as it is (the caller's fallback when the fused graph disagrees with torch).

    Why: on long inputs the unfused attention (MatMul, Softmax, MatMul per layer, with the mask added
    in between) dominates what is not a dense product; the fused CPU kernel ran the teacher on SciFact
    documents faster than the plain graph (bench/int8_amx.py, teacher_onnx). The graph is written only
    when every layer's attention fused; the caller's agreement check with torch gates it as always."""
    model_type = str(getattr(config, "model_type", ""))
    layers = int(getattr(config, "num_hidden_layers", 0) or 0)
    if model_type not in ATTENTION_FUSION_MODEL_TYPES or layers <= 0:
        return 0
    try:
        fused = bert_fusions(source, config, enable_skip_layer_norm=False, enable_bias_skip_layer_norm=False)
    except Exception as exc:  # noqa: BLE001 - the fusion is an optimisation: any failure keeps the plain graph
        log.info("attention fusion skipped (%s); keeping the plain graph", exc)
        return 0
    attention_nodes = sum(1 for node in fused.model.graph.node if node.op_type == "Attention")
    if attention_nodes != layers:
        return 0
    fused.save_model_to_file(str(out), use_external_data_format=False)
    return attention_nodes
