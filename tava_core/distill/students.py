"""Students: small models trained to put texts where the teacher puts them.

- ``TransformerStudent``: some of the teacher's layers (or a fresh small config), mean pooling and
  an optional linear projection to the teacher's dimension; saved as a sentence-transformers
  directory (Transformer, Pooling, [Dense], Normalize).
- ``StaticStudent``: a token-embedding table with per-token weights (initialised by model2vec's
  distillation of the teacher's vocabulary) and an optional projection; saved as a model2vec
  directory whose table has weights and projection folded in, which sentence-transformers
  (``StaticEmbedding``), model2vec (``StaticModel``) and tava (``StaticEncoder``) all load.

Both expose ``prepare(texts) -> features`` and ``forward(features) -> vectors`` (unnormalised: the
saved models normalise) so one trainer drives either.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..adapter.baselines import fit_ridge, normalize_rows
from ..encoders.word_cache import WordCache
from ..errors import ConfigError, ModelLoadError
from ..io import write_json

log = logging.getLogger(__name__)

IDENTITY = "torch.nn.modules.linear.Identity"


def _quiet_transformers() -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def teacher_max_length(teacher_dir: Path, default: int = 512) -> int:
    cfg = teacher_dir / "sentence_bert_config.json"
    if cfg.is_file():
        return int(json.loads(cfg.read_text()).get("max_seq_length") or default)
    return default


def _new_projection(in_dim: int, out_dim: int) -> nn.Linear:
    """Identity when the sizes agree (the student starts where the teacher's layers put it)."""
    linear = nn.Linear(in_dim, out_dim)
    with torch.no_grad():
        if in_dim == out_dim:
            linear.weight.copy_(torch.eye(out_dim))
            linear.bias.zero_()
    return linear


def _write_dense(directory: Path, linear: nn.Linear) -> None:
    """A sentence-transformers ``Dense`` module dir (identity activation; keys ``linear.*``,
    which is what sentence-transformers 6.2 saves and loads)."""
    from safetensors.torch import save_file

    directory.mkdir(parents=True, exist_ok=True)
    write_json(directory / "config.json", {"in_features": linear.in_features, "out_features": linear.out_features,
                                           "bias": linear.bias is not None, "activation_function": IDENTITY})
    state = {"linear.weight": linear.weight.detach().cpu().contiguous()}
    if linear.bias is not None:
        state["linear.bias"] = linear.bias.detach().cpu().contiguous()
    save_file(state, str(directory / "model.safetensors"))


# ------------------------------------------------------------------------------ transformer

class TransformerStudent(nn.Module):
    """Hugging Face encoder + mean pooling (+ linear projection to the teacher's dimension)."""

    kind = "transformer"

    def __init__(self, model: nn.Module, tokenizer: Any, projection: Optional[nn.Linear], *,
                 max_length: int, max_seq_length: int) -> None:
        super().__init__()
        # a Hugging Face PreTrainedModel (config, save_pretrained ...), which nn.Module's typing cannot see
        self.model: Any = model
        self.tokenizer = tokenizer
        self.projection = projection
        self.max_length = max_length          # training truncation
        self.max_seq_length = max_seq_length  # what the saved model uses at inference
        self.kept_layers: Optional[list[int]] = None  # the teacher layers it started from (None: fresh)

    @property
    def hidden_size(self) -> int:
        return int(self.model.config.hidden_size)

    @property
    def dim(self) -> int:
        return self.projection.out_features if self.projection is not None else self.hidden_size

    @classmethod
    def from_teacher(cls, teacher_dir: Path, *, layers: Optional[Sequence[int]], projection: bool, teacher_dim: int,
                     max_length: int = 128, hidden_size: int = 256, num_layers: int = 2,
                     seed: int = 0, freeze_embeddings: bool = False) -> "TransformerStudent":
        """Keep ``layers`` of the encoder in ``teacher_dir`` (embeddings included) — the teacher, or a
        smaller pretrained base the student starts from; ``None`` keeps ``depth_layers`` of its depth;
        with no layers (``[]``), a fresh small model of its architecture family and vocabulary.
        ``teacher_dim`` is the teacher's output dimension."""
        from transformers import AutoConfig, AutoModel, AutoTokenizer

        _quiet_transformers()
        teacher_dir = Path(teacher_dir)
        torch.manual_seed(seed)
        tokenizer = AutoTokenizer.from_pretrained(str(teacher_dir))
        kept_layers: Optional[list[int]] = None
        if layers is None or layers:
            model = AutoModel.from_pretrained(str(teacher_dir), dtype=torch.float32)
            stack = _layer_stack(model, teacher_dir)
            total = len(stack)
            layers = kept_layers = resolve_layers(depth_layers(total) if layers is None else layers, total, teacher_dir)
            kept = nn.ModuleList([stack[i] for i in layers])
            for new_idx, layer in enumerate(kept):
                # Attention modules may carry their index (used by caches); keep it consistent.
                for module in layer.modules():
                    if hasattr(module, "layer_idx"):
                        # ignore: nn.Module types every attribute as Tensor | Module; this one is an int
                        module.layer_idx = new_idx  # type: ignore[assignment]
            model.encoder.layer = kept
            model.config.num_hidden_layers = len(kept)
        else:
            config = AutoConfig.from_pretrained(str(teacher_dir))
            heads = max(1, hidden_size // 64)
            config.update({"hidden_size": hidden_size, "num_hidden_layers": num_layers,
                           "num_attention_heads": heads, "intermediate_size": hidden_size * 4})
            model = AutoModel.from_config(config)
        hidden = int(model.config.hidden_size)
        if not projection and hidden != teacher_dim:
            raise ConfigError(f"a student of dimension {hidden} cannot match the teacher's {teacher_dim} "
                              "without a projection", hint="enable --projection or choose hidden_size = the teacher's dimension")
        proj = _new_projection(hidden, teacher_dim) if projection else None
        if freeze_embeddings and layers:
            # The teacher's token table is already good; freezing it halves the optimizer's work.
            model.get_input_embeddings().weight.requires_grad_(False)
        max_seq = teacher_max_length(teacher_dir)
        student = cls(model, tokenizer, proj, max_length=min(max_length, max_seq), max_seq_length=max_seq)
        student.kept_layers = kept_layers
        return student

    def prepare(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        return dict(self.tokenizer(list(texts), padding=True, truncation=True, max_length=self.max_length,
                                   return_tensors="pt"))

    def forward(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        tokens = self.model(**features).last_hidden_state
        mask = features["attention_mask"].unsqueeze(-1).to(tokens.dtype)
        pooled = (tokens * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return self.projection(pooled) if self.projection is not None else pooled

    def save(self, directory: str | Path) -> Path:
        """Write a sentence-transformers directory (loads with ``SentenceTransformer(path)``)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(str(directory), safe_serialization=True)
        self.tokenizer.save_pretrained(str(directory))
        write_json(directory / "sentence_bert_config.json", {"max_seq_length": self.max_seq_length,
                                                             "do_lower_case": False})
        write_json(directory / "config_sentence_transformers.json", {
            "model_type": "SentenceTransformer", "similarity_fn_name": "cosine", "prompts": {},
            "default_prompt_name": None})
        (directory / "1_Pooling").mkdir(exist_ok=True)
        write_json(directory / "1_Pooling" / "config.json", {
            "word_embedding_dimension": self.hidden_size, "pooling_mode_cls_token": False,
            "pooling_mode_mean_tokens": True, "pooling_mode_max_tokens": False,
            "pooling_mode_mean_sqrt_len_tokens": False, "include_prompt": True})
        modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
                   {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]
        if self.projection is not None:
            _write_dense(directory / "2_Dense", self.projection)
            modules.append({"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"})
        norm_path = f"{len(modules)}_Normalize"
        (directory / norm_path).mkdir(exist_ok=True)
        modules.append({"idx": len(modules), "name": str(len(modules)), "path": norm_path,
                        "type": "sentence_transformers.models.Normalize"})
        write_json(directory / "modules.json", modules)
        return directory


@torch.no_grad()
def fit_projection(student: "TransformerStudent", texts: Sequence[str], targets: np.ndarray,
                   batch_size: int = 64, ridge: float = 0.01) -> float:
    """Start the projection at the ridge-regression map from the student's pooled vectors to the
    teacher's (closed form, on a sample of training texts): training then begins near the teacher's
    space instead of spending its first steps finding it. Returns the sample's mean cosine.

    ``ridge`` is relative to the mean eigenvalue of the pooled vectors' covariance. 0.01 held out
    best from 8k texts up (0.1 shrinks too much: bench/results/projection_start.json)."""
    if student.projection is None:
        return float("nan")
    projection, student.projection = student.projection, None
    was_training = student.training
    student.eval()
    try:
        pooled = torch.cat([student(student.prepare(texts[i:i + batch_size]))
                            for i in range(0, len(texts), batch_size)]).numpy()
    finally:
        student.projection = projection
        student.train(was_training)
    linear = fit_ridge(pooled, targets, alpha=ridge)  # the same scale-free ridge as Stage B's closed form
    projection.weight.copy_(torch.from_numpy(np.asarray(linear.weight).T))
    projection.bias.copy_(torch.from_numpy(np.asarray(linear.bias)))
    return float((linear(pooled) * normalize_rows(np.asarray(targets, dtype=np.float32))).sum(1).mean())


def depth_layers(depth: int) -> list[int]:
    """The layers a transformer student keeps of a ``depth``-layer encoder when none are named (the
    standard preset). Up to 6 layers: the first, the middle and the last (0 2 5 of a 6-layer MiniLM,
    chosen on SciFact dev and checked through `tava run` on the built-in data). Deeper: the first two.
    For 12-layer all-mpnet-base-v2 trained as `tava run` trains (bench/transfer.py, dev) layers 0 1
    kept 0.838 of it at 6.0x its query speed, 0 11 0.837 at 5.8x, 0 2 5 0.821 at 4.0x: a third layer
    of a deep teacher cost speed (under 5x) and bought nothing, and the first two did best off-corpus
    (0.503 / 0.472 / 0.511 on the built-in data)."""
    if depth > 6:
        return [0, 1]
    return sorted({0, max(0, depth // 2 - 1), depth - 1})


def resolve_layers(layers: Sequence[int], total: int, teacher_dir: Path | None = None) -> list[int]:
    """Teacher layer indices, a negative one counting from the end (-1 = the last layer, so one
    config names "first and last" of a 6-layer MiniLM and a 12-layer mpnet alike); they must name
    distinct layers."""
    resolved = [i + total if i < 0 else i for i in layers]
    bad = [i for i in resolved if not 0 <= i < total]
    if bad or len(set(resolved)) != len(resolved):
        raise ConfigError(f"layers {list(layers)} do not name distinct layers of a {total}-layer teacher",
                          path=teacher_dir, hint=f"pick indices in 0..{total - 1} (or -{total}..-1 from the end), "
                                                 f"e.g. --layers 0 --layers {total // 2} --layers -1")
    return resolved


def _layer_stack(model: nn.Module, teacher_dir: Path) -> nn.ModuleList:
    encoder = getattr(model, "encoder", None)
    stack = getattr(encoder, "layer", None)
    if not isinstance(stack, nn.ModuleList):
        raise ConfigError(f"cannot pick layers of a {type(model).__name__}: it has no encoder.layer list",
                          path=teacher_dir, hint="use --layers with a BERT-like teacher, or a fresh student (no layers)")
    return stack


# ----------------------------------------------------------------------------------- static

class StaticStudent(nn.Module):
    """Weighted mean of token vectors (+ projection): ``mean_t(w_t * E_t) @ W.T + b``."""

    kind = "static"

    def __init__(self, embeddings: torch.Tensor, tokenizer: Any, projection: Optional[nn.Linear], *,
                 max_length: int, base_model: str = "") -> None:
        super().__init__()
        self.embeddings = nn.Parameter(embeddings.float().clone())
        self.token_weights = nn.Parameter(torch.ones(embeddings.shape[0]))
        self.projection = projection
        self.tokenizer = tokenizer  # a `tokenizers.Tokenizer`, no padding, no special tokens
        self.tokenizer.no_padding()
        self.tokenizer.no_truncation()
        # every training batch is tokenised anew: each word's ids come from a cache where that is exact
        self.word_cache = WordCache(self.tokenizer)
        self.max_length = max_length
        self.base_model = base_model

    @property
    def dim(self) -> int:
        return self.projection.out_features if self.projection is not None else int(self.embeddings.shape[1])

    @classmethod
    def from_teacher(cls, teacher_dir: Path, *, static_dim: Optional[int], projection: bool, teacher_dim: int,
                     max_length: int = 128, seed: int = 0, init: str = "model2vec",
                     cache_dir: Optional[Path] = None, vocabulary: Sequence[str] = (),
                     texts: Sequence[str] = (), context_tokens: Optional[int] = None,
                     progress: bool = False) -> "StaticStudent":
        """Initialise the table with model2vec's distillation of the teacher's vocabulary (one
        forward pass per token, offline), kept in the teacher's space; with ``static_dim`` smaller,
        PCA-reduce it and start the projection as the inverse PCA map (so step 0 == model2vec).
        ``vocabulary``: whole words added to the teacher's vocabulary (``vocabulary.py``), each
        starting at the teacher's vector of the word (model2vec init only). ``init="context"`` then
        moves every token ``texts`` show to the mean of the teacher's vectors of it in context
        (context_table.py)."""
        _quiet_transformers()
        torch.manual_seed(seed)
        dim = static_dim or teacher_dim
        if dim > teacher_dim:
            raise ConfigError(f"static_dim {dim} is larger than the teacher's dimension {teacher_dim}",
                              hint=f"choose static_dim <= {teacher_dim}")
        if not projection and dim != teacher_dim:
            raise ConfigError(f"a static student of dimension {dim} cannot match the teacher's {teacher_dim} "
                              "without a projection", hint="enable --projection or leave static_dim empty")
        if init in ("model2vec", "context"):
            table, tokenizer = _model2vec_table(Path(teacher_dir), cache_dir, list(vocabulary))
            if init == "context":
                table = _context_start(Path(teacher_dir), table, tokenizer, texts, teacher_dim,
                                       context_tokens, seed, progress, cache_dir)
        elif vocabulary:
            raise ConfigError("vocabulary expansion needs the model2vec start (it embeds each new word with "
                              "the teacher)", hint="use static_init model2vec or static_vocabulary 0")
        else:  # the teacher's input token embeddings: instant, a weaker start
            from tokenizers import Tokenizer
            from transformers import AutoModel

            model = AutoModel.from_pretrained(str(teacher_dir), dtype=torch.float32)
            table = model.get_input_embeddings().weight.detach().clone()
            tokenizer = Tokenizer.from_file(str(Path(teacher_dir) / "tokenizer.json"))
            if table.shape[1] != teacher_dim:
                raise ConfigError("token_embeddings init needs a teacher whose token embeddings have its output "
                                  "dimension", path=teacher_dir, hint="use static_init model2vec")
        proj = None
        if dim < teacher_dim:
            mean = table.mean(0)
            _, _, vh = torch.linalg.svd(table - mean, full_matrices=False)
            components = vh[:dim]                      # (dim, teacher_dim)
            table = (table - mean) @ components.T
            proj = nn.Linear(dim, teacher_dim)
            with torch.no_grad():
                proj.weight.copy_(components.T)
                proj.bias.copy_(mean)
        elif projection:
            proj = _new_projection(dim, teacher_dim)
        return cls(table, tokenizer, proj, max_length=max_length, base_model=str(teacher_dir))

    def prepare(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        ids = [x[: self.max_length] for x in self.word_cache.ids(texts)]
        offsets = np.cumsum([0] + [len(x) for x in ids[:-1]])
        flat = [i for x in ids for i in x]
        return {"input_ids": torch.tensor(flat, dtype=torch.long),
                "offsets": torch.as_tensor(offsets, dtype=torch.long)}

    def sparse_parameters(self) -> list[nn.Parameter]:
        """The token table: its gradient is sparse (only the batch's tokens), so the trainer gives it
        SparseAdam; a dense AdamW step over the whole vocabulary would dominate every step."""
        return [self.embeddings]

    def forward(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        ids, offsets = features["input_ids"], features["offsets"]
        summed = F.embedding_bag(ids, self.embeddings, offsets, mode="sum",
                                 per_sample_weights=self.token_weights[ids], sparse=True)
        counts = torch.diff(offsets, append=offsets.new_tensor([ids.numel()])).clamp(min=1)
        pooled = summed / counts.unsqueeze(-1).to(summed.dtype)
        return self.projection(pooled) if self.projection is not None else pooled

    @torch.no_grad()
    def folded_table(self) -> np.ndarray:
        """One row per token with weight and projection folded in (the mean commutes with both)."""
        table = self.embeddings * self.token_weights.unsqueeze(-1)
        if self.projection is not None:
            table = self.projection(table)
        return table.float().cpu().numpy()

    def save(self, directory: str | Path) -> Path:
        """Write a model2vec directory + modules.json (StaticEmbedding, Normalize) + tava_encoder.json."""
        from model2vec import StaticModel

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        model = StaticModel(vectors=self.folded_table(), tokenizer=self.tokenizer, normalize=True,
                            base_model_name=self.base_model or None, max_length=None,
                            config={"model_type": "model2vec", "architectures": ["StaticModel"],
                                    "hidden_dim": self.dim, "normalize": True})
        model.save_pretrained(directory)
        (directory / "1_Normalize").mkdir(exist_ok=True)
        write_json(directory / "modules.json", [
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.StaticEmbedding"},
            {"idx": 1, "name": "1", "path": "1_Normalize", "type": "sentence_transformers.models.Normalize"}])
        write_json(directory / "config_sentence_transformers.json", {
            "model_type": "SentenceTransformer", "similarity_fn_name": "cosine", "prompts": {},
            "default_prompt_name": None})
        write_json(directory / "tava_encoder.json", {"type": "static"})
        return directory


def _model2vec_table(teacher_dir: Path, cache_dir: Optional[Path],
                     vocabulary: Optional[list[str]] = None) -> tuple[torch.Tensor, Any]:
    """model2vec's distillation of the teacher vocabulary (+ ``vocabulary``'s whole words), in the
    teacher's space (no PCA, float32), cached in ``cache_dir`` -- per word list, under a subdirectory
    named by its hash (it costs a forward pass per vocabulary token)."""
    from model2vec import StaticModel

    if cache_dir is not None and vocabulary:
        from ..io import stable_hash

        cache_dir = Path(cache_dir) / f"vocabulary-{stable_hash(vocabulary)[:16]}"
    if cache_dir is not None and (Path(cache_dir) / "model.safetensors").is_file():
        static = StaticModel.from_pretrained(Path(cache_dir))
    else:
        from model2vec.distill import distill

        try:
            static = distill(str(teacher_dir), vocabulary=vocabulary or None, pca_dims=None, quantize_to="float32",
                             device="cpu")
        except Exception as exc:  # noqa: BLE001 - model2vec / transformers errors become one message
            raise ModelLoadError(f"model2vec could not distil the teacher: {exc}", path=teacher_dir) from None
        if cache_dir is not None:
            from ..io import atomic_directory

            with atomic_directory(cache_dir) as tmp:
                static.save_pretrained(tmp)
    table = torch.from_numpy(np.asarray(static.embedding, dtype=np.float32).copy())
    if static.weights is not None:
        table = table * torch.from_numpy(np.asarray(static.weights, dtype=np.float32)).unsqueeze(-1)
    return table, static.tokenizer


def _context_start(teacher_dir: Path, table: torch.Tensor, tokenizer: Any, texts: Sequence[str], teacher_dim: int,
                   max_tokens: Optional[int], seed: int, progress: bool,
                   cache_dir: Optional[Path] = None) -> torch.Tensor:
    """The model2vec table with every token ``texts`` show moved to its mean teacher vector in context
    (the teacher's pass over ``texts`` kept in ``cache_dir``)."""
    from .context_table import cached_token_sums, contextual_table, pooling_mode

    mode = pooling_mode(teacher_dir)
    if mode not in (None, "mean"):
        # the start reproduces a mean of token vectors; a CLS pooling teacher gets a rougher start
        log.warning("static_init context assumes a mean-pooling teacher; %s pools by %s: the start is only "
                    "approximate (static_init model2vec is the alternative)", teacher_dir, mode)
    if not texts:
        raise ConfigError("static_init context needs the training texts (the teacher reads them once)",
                          hint="pass texts to build_student, or use static_init model2vec")
    # model2vec's rows are the teacher's last-layer vectors, so this also checks the context means' size
    if table.shape[1] != teacher_dim:
        raise ConfigError(f"static_init context needs a teacher whose token vectors are its output "
                          f"({table.shape[1]}-d tokens, {teacher_dim}-d output)", path=teacher_dir,
                          hint="use static_init model2vec")
    sums, counts, teacher_vocab = cached_token_sums(cache_dir, teacher_dir, texts, max_tokens=max_tokens, seed=seed,
                                                    progress=progress)
    start, _ = contextual_table(table.numpy(), tokenizer.get_vocab(), sums, counts, teacher_vocab)
    return torch.from_numpy(start)


Student = TransformerStudent | StaticStudent

