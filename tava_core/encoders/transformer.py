"""Encoder over a Hugging Face / sentence-transformers directory, run with plain transformers.

Reads the sentence-transformers layout where present (``modules.json``: pooling mode, Dense
projection, Normalize; ``sentence_bert_config.json``: max length) so a directory saved by
sentence-transformers, or by tava's Stage A, encodes exactly as sentence-transformers would.
"""
from __future__ import annotations

import json
import logging
import threading
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch

from ..config import EncoderSpec
from ..errors import ModelLoadError
from ..interrupt import raise_if_stop_requested
from ..model_dims import transformer_output_dim
from .base import Encoder, TextKind, combine_fingerprint, hash_model_files, length_sorted_order
from .device import is_out_of_memory, resolve_device, resolve_dtype
from .onnx_backend import OnnxSession, resolve_backend
from .windows import SPECIAL_TOKENS, pool_windows, read_window, split_windows

log = logging.getLogger(__name__)


# What sentence-transformers' Pooling config names each mode in its older boolean keys (before v6).
_LEGACY_POOLING_KEYS = {"pooling_mode_cls_token": "cls", "pooling_mode_max_tokens": "max",
                        "pooling_mode_mean_tokens": "mean", "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
                        "pooling_mode_weightedmean_tokens": "weightedmean", "pooling_mode_lasttoken": "lasttoken"}
POOLING_MODES = ("mean", "cls")   # what tava computes (both backends and the ONNX export)
# Module types tava runs. Any other one changes the vectors, so a directory holding it is refused rather
# than encoded without it.
_KNOWN_MODULES = {"Transformer", "Pooling", "Dense", "Normalize"}
# The prompt names sentence-transformers' encode_query / encode_document use, in its order of preference.
_PROMPT_NAMES = {"query": ("query",), "document": ("document", "passage", "corpus")}


def _pooling_mode(cfg: dict[str, Any]) -> str:
    """The pooling mode of a Pooling config: ``pooling_mode`` (sentence-transformers >= 6 writes it; a
    string or a list of modes to concatenate) or the older ``pooling_mode_*`` booleans."""
    mode = cfg.get("pooling_mode")
    if mode is None:
        modes = [name for key, name in _LEGACY_POOLING_KEYS.items() if cfg.get(key)]
        mode = modes if len(modes) != 1 else modes[0]
    if isinstance(mode, (list, tuple)):
        mode = mode[0] if len(mode) == 1 else "+".join(mode)
    return str(mode or "none")


def read_prompts(directory: Path) -> dict[str, str]:
    """The query and document prompts a sentence-transformers directory defines
    (``config_sentence_transformers.json``), chosen as its ``encode_query`` / ``encode_document`` choose
    them: ``query``; the first of ``document``, ``passage``, ``corpus``; else the default prompt, if any.
    e5, bge, gte and nomic models score below their published figures without them."""
    cfg_file = directory / "config_sentence_transformers.json"
    if not cfg_file.is_file():
        return {"query": "", "document": ""}
    cfg = json.loads(cfg_file.read_text())
    prompts = {k: v for k, v in (cfg.get("prompts") or {}).items() if isinstance(v, str)}
    default = prompts.get(cfg.get("default_prompt_name") or "", "")
    return {kind: next((prompts[name] for name in names if name in prompts), default)
            for kind, names in _PROMPT_NAMES.items()}


def read_sentence_transformers_layout(directory: Path) -> dict[str, Any]:
    """Pooling, max length, Dense layers, normalisation and prompts from a sentence-transformers dir
    (the configs of sentence-transformers 2 to 6). Returns ``{}`` for a plain Hugging Face directory.
    A module or pooling mode tava cannot compute is a ModelLoadError naming it."""
    modules_file = directory / "modules.json"
    if not modules_file.is_file():
        return {}
    layout: dict[str, Any] = {"dense": [], "normalize": False, "include_prompt": True}
    for module in json.loads(modules_file.read_text()):
        kind = module.get("type", "").rsplit(".", 1)[-1]
        module_dir = directory / module.get("path", "")
        if kind not in _KNOWN_MODULES:
            raise ModelLoadError(f"module {module.get('type')!r} is not supported (tava runs "
                                 f"{', '.join(sorted(_KNOWN_MODULES))})", path=modules_file,
                                 hint="encode with sentence-transformers, or save the model without that module")
        if kind == "Pooling":
            cfg = json.loads((module_dir / "config.json").read_text())
            layout["pooling_mode"] = _pooling_mode(cfg)
            layout["pooling_config"] = module_dir / "config.json"
            layout["include_prompt"] = bool(cfg.get("include_prompt", True))
        elif kind == "Dense":
            if json.loads((module_dir / "config.json").read_text()).get("use_residual"):
                raise ModelLoadError("a Dense module with use_residual is not supported", path=module_dir / "config.json",
                                     hint="encode with sentence-transformers, or save the model without that module")
            layout["dense"].append(module_dir)
        elif kind == "Normalize":
            layout["normalize"] = True
    sbert_cfg = directory / "sentence_bert_config.json"
    if sbert_cfg.is_file():
        max_len = json.loads(sbert_cfg.read_text()).get("max_seq_length")
        if max_len:
            layout["max_length"] = int(max_len)
    layout["prompts"] = read_prompts(directory)
    return layout


def _load_dense(module_dir: Path) -> torch.nn.Module:
    from safetensors.torch import load_file

    cfg = json.loads((module_dir / "config.json").read_text())
    linear = torch.nn.Linear(cfg["in_features"], cfg["out_features"], bias=cfg.get("bias", True))
    weights_file = module_dir / "model.safetensors"
    if not weights_file.is_file():
        raise ModelLoadError("Dense module has no model.safetensors (tava never unpickles .bin files)",
                             path=module_dir)
    state = load_file(str(weights_file))
    linear.load_state_dict({k.removeprefix("linear."): v for k, v in state.items()})
    activation = cfg.get("activation_function", "torch.nn.modules.linear.Identity")
    if activation.endswith("Tanh"):
        return torch.nn.Sequential(linear, torch.nn.Tanh())
    if not activation.endswith("Identity"):
        raise ModelLoadError(f"Dense activation {activation!r} is not supported", path=module_dir)
    return linear


class TransformerEncoder(Encoder):
    """Transformer + pooling (+ Dense) (+ L2 normalisation), batched and length-sorted.

    Weights load on first ``encode``: planning a run (name, dim, fingerprint) reads config files only.
    """

    def __init__(self, directory: str | Path, spec: EncoderSpec | None = None, *, name: str | None = None) -> None:
        spec = spec or EncoderSpec(model=str(directory))
        self.spec = spec
        self.directory = Path(directory)
        self.name = name or self.directory.name
        if not self.directory.exists():
            raise ModelLoadError("model directory does not exist", path=self.directory,
                                 hint="give a local model directory or the alias 'all-MiniLM-L6-v2'")
        if not (self.directory / "config.json").is_file():
            raise ModelLoadError("not a Hugging Face model directory (no config.json)", path=self.directory)
        layout = read_sentence_transformers_layout(self.directory)
        self.pooling = spec.pooling or layout.get("pooling_mode", "mean")
        if self.pooling not in POOLING_MODES:
            raise ModelLoadError(f"pooling mode {self.pooling!r} is not supported (tava pools by mean or cls)",
                                 path=layout.get("pooling_config", self.directory),
                                 hint="tava cannot encode this model as sentence-transformers does; --pooling mean|cls "
                                      "(e.g. --teacher-pooling) overrides it, with different vectors")
        # An empty prefix means the model's own prompt (as sentence-transformers' encode_query /
        # encode_document and mteb use it); the spec then names it, so every reader of encoder.spec
        # (fingerprint, export card, fused router) sees the text actually put before a query.
        prompts = layout.get("prompts", {})
        if any(prompts.values()) and not layout.get("include_prompt", True):
            log.warning("%s defines prompts but pools without their tokens (include_prompt false), which tava "
                        "does not do: its prompts are not applied; pass the prefixes to apply them anyway",
                        self.directory)
        elif any(prompts.values()):
            spec = spec.model_copy(update={"query_prefix": spec.query_prefix or prompts["query"],
                                           "document_prefix": spec.document_prefix or prompts["document"]})
            self.spec = spec
        self.normalized = spec.normalize if spec.normalize is not None else layout.get("normalize", True)
        self.max_length = spec.max_length or layout.get("max_length", 512)
        self._configured_max_length = self.max_length  # what the fingerprint names (known before loading)
        # Tokens read at a time (windows.py): the spec's, else the directory's window.json (a Stage A student's)
        self._directory_window = read_window(self.directory)
        window = spec.window if spec.window is not None else self._directory_window
        self.window: Optional[int] = window or None
        self.device = resolve_device(spec.device)
        self.dtype = resolve_dtype(spec.dtype, self.device)
        self.dense_dirs: list[Path] = layout.get("dense", [])
        self.dim = self._output_dim()
        self.batch_size = spec.batch_size
        self._fingerprint: str | None = None
        self._model: torch.nn.Module | None = None
        self._tokenizer: Any = None
        self._load_lock = threading.RLock()
        self.backend = resolve_backend(spec.backend, self.device.type)  # "torch" or "onnx"
        self._onnx_session: Optional[OnnxSession] = None
        self._onnx_resolved = self.backend == "torch"

    def _output_dim(self) -> int:
        return transformer_output_dim(self.directory, self.dense_dirs)

    def _load_failure(self, exc: Exception) -> ModelLoadError:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return ModelLoadError(f"cannot load the model: {first_line}", path=self.directory,
                              hint="check the directory holds config.json, weights and tokenizer files")

    def _load_tokenizer(self) -> None:
        try:
            from transformers import AutoTokenizer
            from transformers.utils import logging as hf_logging

            hf_logging.set_verbosity_error()
            hf_logging.disable_progress_bar()
            tokenizer = AutoTokenizer.from_pretrained(str(self.directory))
        except Exception as exc:  # noqa: BLE001 - any loader failure becomes one clear message
            raise self._load_failure(exc) from None
        self.max_length = min(self.max_length, getattr(tokenizer, "model_max_length", None) or self.max_length)
        self._tokenizer = tokenizer

    def _load(self) -> None:
        self.tokenizer  # noqa: B018 - the tokenizer settles max_length
        try:
            from transformers import AutoModel

            model = AutoModel.from_pretrained(str(self.directory), dtype=self.dtype)
        except Exception as exc:  # noqa: BLE001 - any loader failure becomes one clear message
            raise self._load_failure(exc) from None
        self.dense = torch.nn.Sequential(*[_load_dense(d) for d in self.dense_dirs])
        model.to(self.device).eval()
        self.dense.to(self.device, dtype=self.dtype).eval()
        self._model = model

    @property
    def tokenizer(self) -> Any:
        """The Hugging Face tokenizer (loaded on first use; the ONNX backend needs only this)."""
        if self._tokenizer is None:
            with self._load_lock:
                if self._tokenizer is None:
                    self._load_tokenizer()
        return self._tokenizer

    @property
    def model(self) -> torch.nn.Module:
        """The transformer (loaded on first use, once, even from several threads)."""
        if self._model is None:
            with self._load_lock:
                if self._model is None:
                    self._load()
        assert self._model is not None  # _load() sets it or raises
        return self._model

    @property
    def fingerprint(self) -> str:
        if self._fingerprint is None:
            parts: list[Any] = [hash_model_files(self.directory), self.pooling, self.normalized,
                                self._configured_max_length, self.spec.query_prefix, self.spec.document_prefix]
            # window.json is hashed with the directory; an override of it is named (and no window adds
            # nothing, so every encoder without one keeps the fingerprint it had before windows existed)
            if self.spec.window is not None and self.window != self._directory_window:
                parts.append(f"window={self.window or 0}")
            self._fingerprint = combine_fingerprint(*parts)
        return self._fingerprint

    def _prefix(self, kind: TextKind) -> str:
        return self.spec.query_prefix if kind == "query" else self.spec.document_prefix

    def prefix_tokens(self, kind: TextKind) -> int:
        """Tokens the prefix of ``kind`` adds to every text (and to every window of a long one)."""
        prefix = self._prefix(kind)
        return len(self.tokenizer(prefix, add_special_tokens=False)["input_ids"]) if prefix else 0

    def tokenize(self, texts: Sequence[str], *, tensors: str = "np") -> dict[str, Any]:
        """The features both backends feed the model (one tokenisation, so they cannot drift)."""
        return self.tokenizer(list(texts), padding=True, truncation=True, max_length=self.max_length,
                              return_tensors=tensors)

    def forward_torch(self, texts: Sequence[str]) -> np.ndarray:
        """Vectors of ``texts`` (already prefixed) on the torch path, whatever the backend."""
        return self._forward(texts).cpu().numpy()

    def onnx_session(self) -> Optional[OnnxSession]:
        """The ONNX Runtime session when the backend is onnx and the graph agrees with torch; else
        None (resolved once: an export that failed or was refused is not retried per batch)."""
        if not self._onnx_resolved:
            with self._load_lock:
                if not self._onnx_resolved:
                    from ..export.cache import onnx_session_for

                    self._onnx_session = onnx_session_for(self)
                    if self._onnx_session is None:
                        self.backend = "torch"
                    else:
                        self._model = None  # loaded only to export: free its memory
                    self._onnx_resolved = True
        return self._onnx_session

    def _forward(self, texts: Sequence[str]) -> torch.Tensor:
        batch = self.tokenize(texts, tensors="pt")
        batch = {k: v.to(self.device) for k, v in batch.items()}
        token_vectors = self.model(**batch).last_hidden_state
        if self.pooling == "cls":
            pooled = token_vectors[:, 0]
        else:
            # summed in float32: under float16 a sum over 512 tokens overflows (inf, then NaN after
            # normalising) where the mean itself fits
            mask = batch["attention_mask"].unsqueeze(-1).float()
            pooled = ((token_vectors.float() * mask).sum(1) / mask.sum(1).clamp(min=1e-9)).to(token_vectors.dtype)
        pooled = self.dense(pooled)
        pooled = pooled.float()
        if self.normalized:
            pooled = torch.nn.functional.normalize(pooled, dim=-1)
        return pooled

    def _forward_with_oom_retry(self, texts: Sequence[str]) -> np.ndarray:
        try:
            return self._forward(texts).cpu().numpy()
        except Exception as exc:  # noqa: BLE001
            if not is_out_of_memory(exc) or len(texts) <= 1:
                raise
        # Retried here, outside the except block: inside it the traceback keeps the failed batch's
        # activations alive, so the cache cannot be emptied and the halves would run out of memory too.
        # Halve the batch for this and every later batch; the memory is not coming back.
        self.batch_size = max(1, len(texts) // 2)
        log.warning("out of memory on a batch of %d; retrying with batches of %d", len(texts), self.batch_size)
        if self.device.type == "cuda":
            with torch.cuda.device(self.device):  # the encoder's GPU, not the current one
                torch.cuda.empty_cache()
        half = len(texts) // 2
        return np.concatenate([self._forward_with_oom_retry(texts[:half]),
                               self._forward_with_oom_retry(texts[half:])])

    def encode(self, texts: Sequence[str], *, kind: TextKind = "document", batch_size: int | None = None,
               show_progress: bool = False) -> np.ndarray:
        texts = list(texts)
        if not self.window or not texts:
            return self._encode_whole(texts, kind=kind, batch_size=batch_size, show_progress=show_progress)
        offsets = self.tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True,
                                 return_attention_mask=False)["offset_mapping"]
        prefix_tokens = self.prefix_tokens(kind)
        # the windows cover what reading the text whole covers: its first max_length tokens (the teacher's
        # own limit, for a student), so a long text means the same to both
        limit = max(1, self.max_length - SPECIAL_TOKENS - prefix_tokens)
        offsets = [spans[:limit] for spans in offsets]
        pieces, owner, weight = split_windows(texts, offsets, min(self.window, self.max_length), prefix_tokens)
        if len(pieces) == len(texts):       # every text fits in one window
            return self._encode_whole(texts, kind=kind, batch_size=batch_size, show_progress=show_progress)
        # pieces are short: batch as many tokens per pass as whole texts would (64 pieces of 37 tokens per pass
        # were slower, per-pass overhead); what an out-of-memory retry settles on is kept
        requested = batch_size or self.batch_size
        piece_batch = max(requested, requested * self.max_length // max(1, min(self.window, self.max_length)))
        vectors = self._encode_whole(pieces, kind=kind, batch_size=piece_batch, show_progress=show_progress)
        self.batch_size = min(requested, self.batch_size)
        return pool_windows(vectors, owner, weight, len(texts), normalize=self.normalized)

    @torch.inference_mode()
    def _encode_whole(self, texts: list[str], *, kind: TextKind, batch_size: int | None,
                      show_progress: bool) -> np.ndarray:
        session = self.onnx_session()
        if session is None:
            self.model  # noqa: B018 - load weights and tokenizer before the first batch
        if batch_size is not None:
            self.batch_size = batch_size
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        prefix = self._prefix(kind)
        order = length_sorted_order(texts)
        progress = None
        if show_progress:
            from ..progress import progress_bar

            progress = progress_bar(total=len(texts), desc=f"encode {self.name}", unit="text")
        start = 0
        try:
            while start < len(order):
                raise_if_stop_requested()   # on a worker thread, an interrupt reaches the process only here
                idx = order[start:start + self.batch_size]
                batch = [prefix + texts[i] for i in idx]
                if session is not None:
                    features = self.tokenize(batch)
                    out[idx] = session.run(features["input_ids"], features["attention_mask"])
                else:
                    out[idx] = self._forward_with_oom_retry(batch)
                start += len(idx)
                if progress is not None:
                    progress.update(len(idx))
        finally:
            # closed here, by this thread, also when a stop ends the loop: a bar left to the garbage
            # collector is closed by whichever thread collects it, under tqdm's process-wide lock
            if progress is not None:
                progress.close()
        return out
