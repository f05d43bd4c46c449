"""``AdapterConfig``: everything `tava adapt` needs, one field per knob, each described for the UI."""
from __future__ import annotations

from typing import Literal, Optional

from pydantic import Field, model_validator

from ..config import TavaModel
from ..errors import ConfigError

ADAPTER_FORMAT = "tava-adapter/1"   # config.json "format" of an adapter directory (adapter/io.py writes it)

# What `mode: unpaired` changes unless set explicitly: no supervision, strong geometry losses. The paired
# selection defaults (query-like rows, the keep-learned gate) were chosen on paired runs only; unpaired
# mode keeps comparing on all rows without the gate (its GAN starts have their own criterion check).
UNPAIRED_DEFAULTS = dict(init="auto", adversarial_weight=1.0, cycle_weight=1.0, vsp_weight=1.0,
                         paired_cosine_weight=0.0, paired_mse_weight=0.0, contrastive_weight=0.0, ranking_weight=0.0,
                         lr=2e-4,
                         discriminator_lr=2e-4, warmup_steps=200, patience=20,
                         selection_rows="all", keep_learned_margin=None)


class AdapterConfig(TavaModel):
    """How Stage B trains an adapter from student vectors into the teacher's vector space."""

    # ---------------------------------------------------------------- inputs and output
    student_vectors: list[str] = Field(default_factory=list, description=(
        "Vector directories made by `tava embed` with the student (one or more; all must share one "
        "encoder fingerprint)."))
    teacher_vectors: list[str] = Field(default_factory=list, description=(
        "Vector directories made by `tava embed` with the teacher: paired mode, of the same dataset collections "
        "(joined with the student's by dataset, collection and id); unpaired mode, of any texts (those the "
        "student side also has are held out to measure, or halved between the sides)."))
    domain_student_vectors: list[str] = Field(default_factory=list, description=(
        "Unpaired mode: vector directories of in-domain texts (e.g. half of the corpus that will be "
        "searched) made with the student's encoder; other texts than domain_teacher_vectors'. They join "
        "only the last step of the unsupervised start and pin the directions generic text barely varies in "
        "(MiniLM -> mpnet, SciFact test nDCG@10 0.273 without, 0.458 with disjoint halves of its documents; "
        "bench/translate.py --domain-docs)."))
    domain_teacher_vectors: list[str] = Field(default_factory=list, description=(
        "Unpaired mode: vector directories of other in-domain texts made with the teacher's encoder "
        "(see domain_student_vectors)."))
    domain_weight: float = Field(2.0, gt=0, description=(
        "Unpaired mode with domain vectors: how much each pseudo-pair a domain vector picks counts in the "
        "last step's Procrustes fit, against 1 for a generic vector's (generic text outnumbers domain text; "
        "1 = no up-weighting). MiniLM -> mpnet, SciFact dev nDCG@10 0.497 / 0.509 / 0.515 at 1 / 2 / 3, "
        "held-out generic cosine 0.628 / 0.619 / 0.611 (bench/translate_domain.py). Span views of the "
        "domain texts (short views, tava_core.distill.spans: the span datasets `tava distill` writes), embedded "
        "by each side and given as further domain directories, help too: 0.522 with two views at weight 2."))
    selection_student_vectors: list[str] = Field(default_factory=list, description=(
        "Label-free in-domain texts that only choose, never train: vector directories made with the student, "
        "of documents of the collection that will be searched and of their span views (`tava distill`'s span "
        "datasets; ids join them with selection_teacher_vectors). When given, early stopping, the best seed and "
        "the keep-learned gate compare maps by how well the span views, mapped, retrieve the teacher's own top-k "
        "among the teacher's vectors of those documents (selection_retrieval_overlap@k). Held-out generic pairs "
        "cannot see a map drift away from the target domain: MiniLM -> mpnet from generic text, SciFact dev "
        "nDCG@10 falls from the Procrustes start's 0.463 to 0.41-0.44 while the held-out generic overlap rises "
        "(Spearman with dev over 31 checkpoints -0.23); SciFact documents' span views against the documents "
        "fall with it (+0.52) and keep the start; trained with SciFact documents, they pick a checkpoint at "
        "0.571 against Procrustes' 0.560 (bench/adapter_cross_sweep.py, adapter_cross.py --selection scifact)."))
    selection_teacher_vectors: list[str] = Field(default_factory=list, description=(
        "The teacher's vectors of the same selection texts (see selection_student_vectors)."))
    student: Optional[str] = Field(None, description=(
        "The student encoder (alias or model directory) recorded in the adapter so that "
        "`load_encoder(<adapter dir>)` runs student then adapter; empty = taken from the student "
        "vectors' manifest when it names a path, else the adapter cannot encode texts by itself."))
    name: Optional[str] = Field(None, description=(
        "Adapter name: output goes to <home>/artifacts/adapters/<name>/ (default: from the encoders)."))
    mode: Literal["paired", "unpaired"] = Field("paired", description=(
        "'paired': student and teacher vectors of the same texts (supervised, plus the vec2vec losses); "
        "'unpaired': different texts on the two sides (pure vec2vec: adversarial, cycle, preservation); "
        "texts on both sides are used only to measure. Unpaired mode changes the defaults of the options "
        "you do not give: init auto, adversarial / cycle / VSP weights 1, paired-loss weights 0, lr and "
        "discriminator lr 2e-4, 200 warm-up steps, patience 20 (the --help defaults are paired mode's)."))
    warm_start: Optional[str] = Field(None, description=(
        "A previous adapter directory to continue training from (same dimensions); its architecture wins."))

    # ---------------------------------------------------------------- architecture
    hidden_dims: list[int] = Field(default_factory=lambda: [1024], description=(
        "Widths of the residual MLP blocks (one block per entry)."))
    activation: Literal["silu", "gelu", "relu", "tanh"] = Field("silu", description="Activation in every block.")
    norm: Literal["layer", "none"] = Field("layer", description="Normalisation in every block.")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="Dropout in every block (training only).")
    residual: bool = Field(True, description=(
        "Residual connections, plus a linear skip path from input to output so the adapter starts "
        "as (at worst) a linear map."))
    init: Literal["auto", "identity", "ridge", "procrustes", "random", "unsupervised"] = Field("auto", description=(
        "Where the linear skip path starts (the MLP then learns only what it misses). 'auto', paired: "
        "the closed form (identity, Procrustes, ridge) with the best retrieval overlap on a held-out slice "
        "of the pairs, preferring the identity and then Procrustes unless a fitted map gains 0.03 -- fitted "
        "maps tilt towards the training texts' domain (a Stage A student keeps the identity); 'auto', "
        "unpaired: the identity when the two sets' second-moment matrices agree (no pairs needed), else "
        "'unsupervised'; 'identity' (equal dimensions), 'ridge', 'procrustes' (paired only); "
        "'unsupervised': a linear map found from the two sets' own geometry (anchor matching, Procrustes, "
        "refinement by averaged nearest neighbours; no pairs); 'random': plain initialisation."))
    unsupervised_adversarial: bool = Field(False, description=(
        "After an 'unsupervised' start (unpaired mode across model families), also train the adversarial / "
        "vec2vec losses from it (its result is kept only if the pair-free criterion rises). Off: the start is the "
        "adapter. MiniLM -> mpnet, 5,000 texts a side, the default 3,000 steps took as long as the start itself "
        "(773 s beside 764 s, 2 loaded cores) and moved held-out top-1 from 0.977 to 0.976 "
        "(bench/results/unpaired_gan_dev.json)."))
    train_skip: bool = Field(True, description=(
        "Keep training the linear skip path after its closed-form start; false freezes it (e.g. at "
        "Procrustes) so only the non-linear correction learns."))
    latent_dim: Optional[int] = Field(None, ge=8, description=(
        "Shared latent space as in vec2vec: input adapter -> shared backbone -> output adapter, with a "
        "reverse adapter sharing the backbone; enables the reconstruction loss. Empty = direct map."))

    # ---------------------------------------------------------------- losses
    adversarial_loss: Literal["lsgan", "vanilla", "hinge", "wgan"] = Field("lsgan", description=(
        "GAN objective: least-squares (stable, the default), vanilla (BCE), hinge or Wasserstein."))
    adversarial_weight: float = Field(0.0, ge=0.0, description=(
        "Weight of the generator's adversarial loss (0 = no discriminator). Paired default 0: with true "
        "pairs the discriminator did not help in bench/adapter.py (try 0.02); unpaired mode needs it > 0 "
        "(its defaults use 1)."))
    gradient_penalty: Literal["r1", "wgan-gp", "none"] = Field("r1", description=(
        "Gradient penalty on the discriminator: R1 (on real vectors) or WGAN-GP (on interpolates)."))
    gradient_penalty_weight: float = Field(1.0, ge=0.0, description="Weight of the gradient penalty.")
    vsp_weight: float = Field(0.0, ge=0.0, description=(
        "Vector-space preservation: gap between a batch's pairwise cosine matrices before and after mapping. "
        "Paired default 0: with pairs the teacher defines the target geometry, and VSP would hold the map to "
        "the student's own, which a weak student gets wrong (bench/adapter.py, model2vec student: 0.472 "
        "nDCG@10 without it, 0.447 at weight 2; Stage A students: no change). Unpaired mode needs it (its "
        "defaults use 1)."))
    vsp_norm: Literal["l1", "l2"] = Field("l2", description="L1 (mean absolute) or L2 (mean squared) gap for VSP.")
    cycle_weight: float = Field(0.0, ge=0.0, description=(
        "Cycle consistency student -> teacher -> student (trains a reverse adapter). Unpaired default 1."))
    reconstruction_weight: float = Field(0.0, ge=0.0, description=(
        "Reconstruction through the shared latent space (needs latent_dim)."))
    paired_cosine_weight: float = Field(0.1, ge=0.0, description="Paired supervision: 1 - cosine to the true teacher vector.")
    paired_mse_weight: float = Field(0.0, ge=0.0, description=(
        "Paired supervision: squared error to the true teacher vector (summed over dimensions)."))
    contrastive_weight: float = Field(1.0, ge=0.0, description=(
        "Paired supervision: in-batch InfoNCE (each mapped vector must be nearest its own teacher vector)."))
    contrastive_temperature: float = Field(0.05, gt=0.0, description="Temperature of the InfoNCE loss.")
    ranking_weight: float = Field(1.0, ge=0.0, description=(
        "Paired supervision: ranking distillation -- the mapped vector must rank other texts' teacher "
        "vectors (the batch plus ranking_documents sampled ones) as its true teacher vector does (KL of the "
        "softmaxed similarities); what asymmetric search needs."))
    ranking_temperature: float = Field(0.05, gt=0.0, description="Temperature of the ranking distillation.")
    ranking_documents: int = Field(1024, ge=0, description=(
        "Extra training teacher vectors sampled per step as documents for the ranking distillation."))

    proximal_weight: float = Field(0.0, ge=0.0, description=(
        "Weight decay towards the start rather than towards zero: this weight times the summed squared "
        "distance of the adapter's parameters from their starting values (the closed-form skip path, the "
        "zero correction; a warm start's weights). Fitted on generic pairs, the learned map can win on "
        "held-out generic pairs while moving out-of-domain queries off the closed form's good placement; "
        "the pull keeps it near the start unless the pairs pay for the move. 0 = off. Measured: MiniLM -> mpnet "
        "from generic text, SciFact dev nDCG@10 0.453 at weight 3 against 0.421 at 0 and Procrustes' 0.463 "
        "(bench/adapter_cross.py 'prox3'): it narrows the loss, it does not remove it."))

    # ---------------------------------------------------------------- optimisation
    lr: float = Field(5e-5, gt=0.0, description=(
        "Adapter learning rate (AdamW). Small on purpose: the adapter starts at a closed-form map, and "
        "Adam's early steps at 3e-4 knocked it below that start in bench/adapter.py."))
    discriminator_lr: float = Field(4e-4, gt=0.0, description="Discriminator learning rate (Adam).")
    weight_decay: float = Field(1e-4, ge=0.0, description="AdamW weight decay of the adapter.")
    batch_size: int = Field(256, ge=2, description="Pairs (or vectors per side) per step.")
    max_steps: int = Field(3000, ge=1, description="Upper bound on optimisation steps.")
    warmup_steps: int = Field(100, ge=0, description="Linear learning-rate warm-up steps (then cosine decay).")
    ema_decay: float = Field(0.0, ge=0.0, lt=1.0, description=(
        "Moving average (Polyak) of the adapter's weights, updated every step: the averaged weights are "
        "evaluated, kept and saved (0 = off; 0.99 averages over about the last 100 steps)."))
    grad_clip: float = Field(1.0, gt=0.0, description="Clip gradient norms of adapter and discriminator to this.")
    discriminator_hidden_dim: int = Field(256, ge=8, description="Width of the discriminator's hidden layers.")
    discriminator_layers: int = Field(2, ge=1, description="Hidden layers of the discriminator.")
    use_spectral_norm: bool = Field(True, description="Spectral normalisation on the discriminator's linear layers.")

    # ---------------------------------------------------------------- stability and evaluation
    holdout_fraction: float = Field(0.05, gt=0.0, lt=0.5, description=(
        "Share of pairs held out for early stopping and the alignment report."))
    holdout_max: int = Field(2000, ge=10, description="At most this many held-out pairs.")
    eval_every: int = Field(100, ge=1, description="Steps between held-out evaluations.")
    patience: int = Field(8, ge=1, description="Evaluations without improvement before early stopping.")
    early_stopping_metric: Literal["mean_rank", "mean_cosine", "retrieval_overlap"] = Field(
        "retrieval_overlap", description=(
            "Held-out metric to stop on (and to pick the best seed): 'retrieval_overlap', how much of the "
            "teacher's top-k among training teacher vectors the mapped held-out vectors retrieve (tracks "
            "asymmetric search best; mean rank saturates at 1 for any decent map); 'mean_rank' of the true "
            "teacher vector (ties broken by mean cosine); or 'mean_cosine'."))
    selection_rows: Literal["query_like", "all"] = Field("query_like", description=(
        "Which held-out pairs the 'auto' start, early stopping, the best seed and the keep-learned gate compare "
        "maps on: 'query_like' = the span views among them (collection 'spans', as `tava distill` writes "
        "them) when there are at least 50, else all; 'all' = every held-out pair (mostly documents). The "
        "adapter maps queries; a map fitted on documents can score well on held-out documents and still move "
        "short texts the wrong way. bench/adapt_selection.py (dev nDCG@10, generic students adapted on each "
        "corpus's label-free text; 'query_like' vs 'all'): static student SciFact 0.5653 vs 0.5653, built-in "
        "0.6765 vs 0.6770; 3-layer transformer student SciFact 0.6178 vs 0.6220 (95% paired -0.011 to "
        "+0.003), built-in 0.6796 vs 0.6685 (+0.002 to +0.021). Unpaired mode: 'all'."))
    keep_learned_margin: Optional[float] = Field(0.005, ge=0.0, description=(
        "Do-no-harm gate: the learned adapter is kept only if it beats its own start (the closed-form map or "
        "the warm-start adapter) by more than this on the selection metric over the selection rows; else "
        "the start is saved and the report says why. No gate: `keep_learned_margin: null` in a config file "
        "(or None from Python). 0.005 (paired default): on "
        "bench/adapt_selection.py's dev rows every learned part that gained nDCG@10 beat its start by more "
        "(held-out span overlap +0.007 to +0.032) and was kept, while 0.01 dropped the transformer student's "
        "SciFact gain; no measured row had a learned part worse than its start, so the gate has not yet "
        "fired where it would help. Unpaired mode: no gate."))
    memory: bool = Field(True, description=(
        "Keep a residual memory beside the adapter (paired mode): the student vectors of the training texts and "
        "what the adapter still misses on each (teacher minus mapped vector); a query is corrected by the "
        "residuals of its nearest training texts (tava_core/adapter/memory.py). bench/adapter_memory.py (dev "
        "splits, seven students): SciFact 0.000 to +0.049 of the teacher's nDCG@10 over the map alone, the "
        "built-in data -0.012 to +0.019 (no interval excluding 0); costs a static student about half its "
        "query speed, a transformer student up to 3 in 100 queries per second at batch 64. `tava run` leaves "
        "it off (its Stage A trained on the same texts: level on SciFact test there)."))
    memory_k: int = Field(10, ge=1, description="Nearest training texts whose residuals correct a query.")
    memory_temperature: float = Field(0.05, gt=0.0, description=(
        "Softmax temperature over those neighbours' cosines (lower: the nearest one dominates)."))
    memory_weight: float = Field(0.75, gt=0.0, description="Scale of the correction added to the adapter's output.")
    memory_max_rows: int = Field(20000, ge=1, description=(
        "Most training texts the memory holds (a seeded random subset beyond it): rows x (student + teacher "
        "dimensions) x 4 bytes on disk, and one product with every row per query."))
    memory_margin: Optional[float] = Field(None, ge=0.0, description=(
        "Gate: keep the memory only if it beats the adapter alone on the held-out selection metric by more than "
        "this. Off by default: on bench/adapter_memory.py's fourteen dev rows the held-out overlap's change did "
        "not track the queries' (it dropped the memory on three SciFact rows where it gained +0.015 to +0.033, "
        "and kept it where it cost 0.012); the report records both overlaps either way."))
    retrieval_pool: int = Field(5000, ge=20, description=(
        "Training teacher vectors used as the document pool of the retrieval-overlap metric."))
    collapse_threshold: float = Field(0.98, gt=0.0, le=1.0, description=(
        "Held-out outputs whose mean pairwise cosine exceeds this count as collapsed (rolled back)."))
    max_rollbacks: int = Field(3, ge=0, description=(
        "Rollbacks to the last good checkpoint (halving the learning rates) before the run fails."))
    seeds: list[int] = Field(default_factory=lambda: [0], description=(
        "Random seeds; more than one trains best-of-N and keeps the best on held-out pairs."))
    knn_k: int = Field(10, ge=1, description="k of the k-NN neighbourhood-overlap metric.")
    device: str = Field("cpu", description="Training device: 'cpu', 'cuda', 'auto'.")

    @model_validator(mode="before")
    @classmethod
    def _unpaired_defaults(cls, data):
        # `--mode unpaired` alone should work: unset fields take the pure-vec2vec settings.
        if isinstance(data, dict) and data.get("mode") == "unpaired":
            data = {**UNPAIRED_DEFAULTS, **data}
        return data

    @model_validator(mode="after")
    def _check(self) -> "AdapterConfig":
        if self.reconstruction_weight > 0 and self.latent_dim is None:
            raise ConfigError("reconstruction_weight > 0 needs a shared latent space",
                              hint="set latent_dim (e.g. 512) or reconstruction_weight 0")
        if self.mode == "unpaired" and self.adversarial_weight <= 0:
            raise ConfigError("unpaired mode learns only from the adversarial loss; adversarial_weight is 0",
                              hint="set adversarial_weight > 0 (e.g. 1.0)")
        if self.mode == "unpaired" and self.init in ("ridge", "procrustes"):
            raise ConfigError(f"init {self.init!r} is fitted on pairs; unpaired mode has none",
                              hint="use init 'auto', 'identity' (equal dimensions) or 'random'")
        if (self.domain_student_vectors or self.domain_teacher_vectors) and self.mode != "unpaired":
            raise ConfigError("domain vectors serve the unsupervised start of unpaired mode; paired mode fits on "
                              "its pairs", hint="use --mode unpaired, or embed the domain texts with both "
                              "encoders and add them to --student-vectors / --teacher-vectors")
        if bool(self.selection_student_vectors) != bool(self.selection_teacher_vectors):
            raise ConfigError("selection vectors are needed on both sides (each model's vectors of the same "
                              "in-domain texts)", hint="give both --selection-student-vectors and "
                              "--selection-teacher-vectors, or neither")
        if bool(self.domain_student_vectors) != bool(self.domain_teacher_vectors):
            raise ConfigError("domain vectors are needed on both sides (each model's vectors of different "
                              "in-domain texts)", hint="give both --domain-student-vectors and "
                              "--domain-teacher-vectors, or neither")
        if not self.hidden_dims or min(self.hidden_dims) < 1:
            raise ConfigError("hidden_dims needs at least one positive width", hint="e.g. hidden_dims [1024]")
        if not self.seeds:
            raise ConfigError("seeds is empty", hint="give at least one seed, e.g. [0]")
        return self

    @classmethod
    def unpaired_defaults(cls, **overrides) -> "AdapterConfig":
        """Settings that suit pure vec2vec training (no supervision, strong geometry losses)."""
        return cls(**{**UNPAIRED_DEFAULTS, **overrides, "mode": "unpaired"})
