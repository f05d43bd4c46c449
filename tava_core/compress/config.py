"""``CompressConfig``: everything `tava compress` needs, one described field per knob."""
from __future__ import annotations

from typing import Literal, Optional

from pydantic import Field, model_validator

from ..config import EncoderSpec, TavaModel
from ..errors import ConfigError

COMPRESSOR_FORMAT = "tava-compressor/1"   # config.json "format" of a compressor directory (compress/io.py writes it)

Method = Literal["dive", "dive-label-free", "pca", "truncate", "matryoshka-adaptor", "search-adaptor"]
DEFAULT_BASELINES: tuple[Method, ...] = ("pca", "truncate", "matryoshka-adaptor", "search-adaptor")
METHODS: tuple[str, ...] = ("dive", "dive-label-free", "pca", "truncate", "matryoshka-adaptor", "search-adaptor")
LABELED_METHODS = {"dive", "search-adaptor"}
TRAINED_METHODS = {"dive", "dive-label-free", "matryoshka-adaptor", "search-adaptor"}


class CompressConfig(TavaModel):
    """How `tava compress` learns projections of an encoder's vectors to fewer dimensions."""

    # ---------------------------------------------------------------- inputs and output
    dataset: str = Field(..., description=(
        "Retrieval dataset with qrels: an ingested BEIR dataset (name or directory) or a raw BEIR "
        "directory. Its corpus and the training split's queries are what the compressor learns from."))
    encoder: EncoderSpec = Field(default_factory=EncoderSpec, description=(
        "The encoder whose vectors are compressed (the teacher, or an adapted student directory); "
        "recorded in the compressor so `load_encoder(<compressor dir>)` runs encoder then compressor."))
    corpus_vectors: Optional[str] = Field(None, description=(
        "Precomputed corpus vectors (a `tava embed` directory) instead of encoding the corpus."))
    query_vectors: Optional[str] = Field(None, description=(
        "Precomputed query vectors (a `tava embed` directory of the dataset's queries, all splits)."))
    train_split: str = Field("train", description="qrels split whose queries train (and validate) the compressor.")
    eval_split: Optional[str] = Field("test", description=(
        "qrels split scored in the report (never trained or tuned on); empty = no test score."))
    dims: list[int] = Field(default_factory=lambda: [128], description=(
        "Target dimensions; one compressor per dimension (e.g. 192 128 64 32 for 384-d vectors)."))
    method: Method = Field("dive", description=(
        "Compressor to train: 'dive' (residual adapter, hinge triplets + head-wise NT-Xent, labeled), "
        "'dive-label-free' (same, on pseudo-triplets from the encoder's own neighbourhoods), or a baseline."))
    baselines: list[Method] = Field(default_factory=lambda: list(DEFAULT_BASELINES), description=(
        "Methods fitted on the same data and reported side by side (and saved, so any is usable)."))
    name: Optional[str] = Field(None, description=(
        "Run name: output goes to <home>/artifacts/compressors/<name>/ (default: dataset + encoder)."))

    # ---------------------------------------------------------------- labels and validation
    validation_fraction: float = Field(0.2, gt=0.0, lt=0.9, description=(
        "Share of the labeled training queries held out for early stopping and model choice."))
    max_labeled_queries: Optional[int] = Field(None, ge=2, description=(
        "Use only this many labeled queries in total (train + validation): the few-label setting."))
    seed: int = Field(0, description="Seed of the split, the sampling and the initialisation.")

    # ---------------------------------------------------------------- DIVE
    hidden_dim: int = Field(512, ge=0, description="Width of the residual MLP of trained compressors (0 = linear only).")
    pca_center: Optional[bool] = Field(None, description=(
        "Subtract the corpus mean before the PCA projection; empty = choose on the validation split."))
    margin: float = Field(0.1, gt=0.0, le=2.0, description=(
        "Hinge margin of DIVE's triplet loss on cosines: a triplet whose positive beats its negatives by "
        "this much gives no gradient. 0.1 with the soft-max hinge (with the mean hinge 0.5 validated best "
        "on SciFact: a small margin left too few triplets active)."))
    triplet_temperature: Optional[float] = Field(0.1, gt=0.0, description=(
        "DIVE: one hinge per anchor against the soft maximum (logsumexp at this temperature) of its "
        "negatives, so the gradient goes to the negatives that outrank the positive; empty = the mean "
        "hinge over every negative, which easy in-batch negatives dominate (SciFact 192 dims, validation "
        "0.780 -> 0.79-0.81). 0.1 validated above 0.05 at every dimension on SciFact."))
    triplet_weight: float = Field(1.0, ge=0.0, description="Weight of the hinge triplet loss.")
    pseudo_triplet_weight: float = Field(0.3, ge=0.0, description=(
        "Labeled DIVE: also a hinge on label-free pseudo-triplets of the corpus documents (each document's "
        "teacher-nearest document against its ranks pseudo_negative_ranks), at this weight: keeps the "
        "corpus' own neighbourhoods where the few labeled queries say nothing (SciFact 64 dims: test 0.69 "
        "-> 0.72-0.73 over seeds). 0 = labeled triplets only."))
    ntxent_weight: float = Field(0.01, ge=0.0, description=(
        "Weight of DIVE's head-wise NT-Xent loss (0.1 pulled SciFact's space apart early in bench/compress.py)."))
    ntxent_temperature: float = Field(0.1, gt=0.0, description="Temperature of the head-wise NT-Xent loss.")
    heads: int = Field(4, ge=2, description="Projection heads (views) of the NT-Xent loss (training only).")
    ntxent_items: int = Field(64, ge=2, description=(
        "At most this many documents (and anchors) of a batch enter the NT-Xent loss (its cost grows with the square)."))
    negative_depth: int = Field(30, ge=1, description=(
        "Hard negatives: the encoder's top-N documents of a query that are not judged relevant."))
    negatives_per_anchor: int = Field(4, ge=1, description="Hard negatives sampled per triplet per step.")
    in_batch_negatives: bool = Field(True, description="Also use the other positives of a batch as negatives.")
    refresh_negatives_every: int = Field(100, ge=0, description=(
        "Labeled triplets (DIVE and the Search-Adaptor style adapter alike): re-mine the hard negatives every "
        "N steps with the compressor being trained (its own top documents minus the judged-relevant ones) "
        "instead of keeping only the encoder's; 0 = never."))
    projection_lr_scale: float = Field(1.0, ge=0.0, description=(
        "DIVE: learning rate of the projection matrix relative to the residual MLP (0 = frozen projection)."))
    pseudo_positive_top: int = Field(1, ge=1, description="Label-free: positives from the encoder's top-N documents.")
    pseudo_negative_ranks: list[int] = Field(default_factory=lambda: [10, 50], description=(
        "Label-free: negatives from the encoder's ranks [start, end)."))

    # ---------------------------------------------------------------- baselines
    ranking_temperature: float = Field(0.05, gt=0.0, description="Search-Adaptor style: softmax temperature of the ranking loss.")
    regularization_weight: float = Field(0.1, ge=0.0, description=(
        "Matryoshka-/Search-Adaptor: weight of the penalty on the residual's size (keeps the adaptor near identity)."))
    similarity_top_k: int = Field(10, ge=1, description="Matryoshka-Adaptor: neighbours of the top-k similarity loss.")
    pairwise_weight: float = Field(1.0, ge=0.0, description="Matryoshka-Adaptor: weight of the all-pairs similarity loss.")

    # ---------------------------------------------------------------- optimisation
    lr: float = Field(1e-3, gt=0.0, description="Learning rate (AdamW) of the residual MLP and heads.")
    weight_decay: float = Field(1e-4, ge=0.0, description="AdamW weight decay.")
    batch_size: int = Field(64, ge=2, description="Triplets (or vectors) per step.")
    max_steps: int = Field(900, ge=1, description="Upper bound on optimisation steps per compressor.")
    eval_every: int = Field(50, ge=1, description="Steps between validation nDCG@10 evaluations.")
    patience: int = Field(5, ge=1, description="Evaluations without improvement before early stopping.")
    min_gain_confidence: float = Field(0.95, ge=0.0, lt=1.0, description=(
        "A trained state replaces the frozen (untrained) start only when its per-query validation gain is "
        "positive at this one-sided confidence (paired t-test): with a handful of validation queries a lucky "
        "early-stopping pick is not trusted. 0 = always keep the best validation state."))
    device: str = Field("cpu", description=(
        "Training device: 'cpu', 'cuda', 'cuda:1', 'auto' (a GPU when there is one). The saved compressor is "
        "loaded on the CPU either way."))

    @model_validator(mode="after")
    def _check(self) -> "CompressConfig":
        if not self.dims or min(self.dims) < 1:
            raise ConfigError("dims needs at least one positive dimension", hint="e.g. --dims 128 --dims 64")
        if len(self.pseudo_negative_ranks) != 2 or not (
                self.pseudo_positive_top < self.pseudo_negative_ranks[0] < self.pseudo_negative_ranks[1]):
            raise ConfigError(f"pseudo_negative_ranks {self.pseudo_negative_ranks} must be [start, end) with "
                              f"pseudo_positive_top < start < end", hint="e.g. [10, 50]")
        return self

    @property
    def negative_rank_range(self) -> tuple[int, int]:
        """``pseudo_negative_ranks`` as the [start, end) pair the validator checked."""
        return self.pseudo_negative_ranks[0], self.pseudo_negative_ranks[1]

    @property
    def methods(self) -> list[str]:
        """The trained method first, then the baselines (no repeats)."""
        return list(dict.fromkeys([self.method, *self.baselines]))
