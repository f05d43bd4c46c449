"""``DistillConfig``: everything `tava distill` / flow ``distill_student`` takes (one definition for
the CLI, config files, flow parameters and the Prefect UI form)."""
from __future__ import annotations

from typing import Literal, Optional

from pydantic import Field

from ..config import EncoderSpec, TavaModel, TeacherSpec


class DistillConfig(TavaModel):
    """Stage A: distil the teacher into a small student on unlabeled text."""

    name: str = Field("student", description="Student name: the output goes to <home>/artifacts/students/<name>/.")
    teacher: TeacherSpec = Field(default_factory=EncoderSpec, description=(
        "The teacher as the corpus's vectors were made with it (model, pooling, length, prompts, device): "
        "its vectors of the corpus are computed once (cached vector shards) and training never runs it. "
        "A bare string is the model."))
    datasets: list[str] = Field(default_factory=lambda: ["builtin"], description=(
        "Ingested datasets whose texts train the student (names under <home>/data or directories)."))
    collections: list[str] = Field(default_factory=list, description=(
        "Collections of those datasets to train on; empty = every collection except 'queries' "
        "(a benchmark's queries are never training text)."))
    teacher_vectors: list[str] = Field(default_factory=list, description=(
        "Vector directories (with manifest.json) holding the teacher's vectors of those collections, "
        "one per dataset collection; empty = compute (or reuse) them with the embedding stage."))
    span_views: int = Field(2, ge=0, le=16, description=(
        "Short label-free views per training text (a sentence or a 4-24-word window), embedded by the "
        "teacher like any collection and trained on beside the texts: queries are short, and a student "
        "that only saw passages lands far from the teacher on them. 0 = off."))
    title_views: bool = Field(True, description=(
        "With span views: each titled text's title alone as one more view (a short text naming what the "
        "document is about, as a query asks for it; the spans seldom cut it out, since the title is glued to "
        "the front of its text). Corpora without titles are unchanged (docs/stage-a.md)."))
    dataset_weights: list[int] = Field(default_factory=list, description=(
        "How often each entry of `datasets` (with its span views) is drawn for training, relative to the "
        "others, in the same order; empty = 1 each. A few hundred logged queries beside thousands of "
        "documents weigh little at 1; at 4 each of their texts is drawn four times per pass (docs/stage-a.md)."))
    span_documents: Optional[int] = Field(100000, ge=1, description=(
        "Span views are cut from at most this many texts of each training dataset (a seeded sample "
        "beyond it; every text is still trained on). The teacher embeds every view (two views cost about "
        "a third of embedding the documents), and the longest fitted run reads ~100,000 (transformer) to "
        "~400,000 (static) examples, so NQ's 2.7M documents would add 5.4M views for nothing. "
        "Empty = every text."))
    student: Literal["transformer", "static"] = Field("transformer", description=(
        "'transformer': a few of the teacher's layers (+ projection); 'static': a token-embedding "
        "table with per-token weights (model2vec-initialised), the fastest possible query encoder."))
    layers: Optional[list[int]] = Field(default_factory=lambda: [0, 5], description=(
        "Transformer student: indices of the teacher layers to keep (e.g. 0 5 of 6: the first and the "
        "last gave the closest start of every pair on SciFact queries); a negative index counts from "
        "the end (-1 = last: 0 -1 is first and last of any teacher); none (`tava run`'s standard preset) = "
        "by the teacher's depth: 0 2 5 of a 6-layer teacher, the first two of a deeper one (0 1 of 12-layer "
        "all-mpnet-base-v2: 6x its speed, see bench/transfer.py); empty = a fresh small config (see "
        "hidden_size, num_layers)."))
    student_base: Optional[str] = Field(None, description=(
        "Transformer student: the pretrained encoder (alias or directory) whose layers it starts from; "
        "empty = the teacher itself. A small encoder of the same family (all-MiniLM-L6-v2 for "
        "all-mpnet-base-v2) is narrower and shallower than any slice of the teacher, so faster at the "
        "same depth, and its layers were trained together; the projection maps it to the teacher's "
        "dimension (see bench/transfer.py)."))
    freeze_embeddings: bool = Field(True, description=(
        "Transformer student from teacher layers: keep the teacher's token-embedding table frozen "
        "(it is half the parameters; training it costs time and invites overfitting)."))
    hidden_size: int = Field(256, ge=16, description="Fresh transformer student only: hidden size.")
    num_layers: int = Field(2, ge=1, description="Fresh transformer student only: number of layers.")
    static_dim: Optional[int] = Field(None, ge=8, description=(
        "Static student: token-vector size; empty = the teacher's dimension (no PCA, table in teacher space)."))
    static_init: Literal["model2vec", "context", "token_embeddings"] = Field("model2vec", description=(
        "Static student start: 'model2vec' distils the teacher's vocabulary (one forward pass per token, "
        "cached); 'context' gives each token the mean of the teacher's last-layer vectors of it over the "
        "training text (one teacher pass over the text in 128-token windows; tokens the text never shows "
        "keep the model2vec start: tava_core/distill/context_table.py); 'token_embeddings' takes the "
        "teacher's input embeddings (instant, weaker)."))
    static_context_tokens: Optional[int] = Field(400_000, ge=1000, description=(
        "static_init context: tokens of training text the teacher reads for the token means (windows "
        "sampled, seeded); empty = all of it. The pass costs a teacher forward per token."))
    static_vocabulary: int = Field(0, ge=0, description=(
        "Static student with the model2vec start: add up to this many frequent words of the training "
        "text that the teacher's tokenizer cuts into several pieces, as whole-word tokens whose start is "
        "the teacher's own vector of the word (vocabulary expansion, as pyNIFE does; the distillation is "
        "cached per word list). 0 = the teacher's vocabulary only, the default: 5,000 words from generic "
        "passages + SciFact's documents lowered a MiniLM static student on SciFact's dev queries from 0.860 "
        "to 0.797 of the teacher and on the built-in data from 0.954 to 0.930 (bench/transfer.py)."))
    projection: bool = Field(True, description=(
        "Learned linear projection to the teacher's dimension (a sentence-transformers Dense for a "
        "transformer student; folded into a static student's saved table, so free at query time). "
        "A static student needs it most: the shared map also moves the tokens its corpus "
        "never shows (SciFact, generic corpus: nDCG@10 0.478 without, 0.504 with, in bench/distill.py)."))
    fit_projection: bool = Field(True, description=(
        "Transformer student: start the projection at the ridge-regression map (closed form, on up to "
        "projection_fit_texts training texts) from the student's pooled vectors to the teacher's."))
    projection_fit_texts: int = Field(16384, ge=16, description=(
        "Training texts the projection's closed-form start is fitted on (one forward pass of the student "
        "over them). For a student from another model's layers (student_base) the start is most of what it "
        "keeps: all-MiniLM-L6-v2 mapped into all-mpnet-base-v2's space kept 0.46 of the teacher's nDCG@10 on "
        "SciFact dev queries from 2,048 texts and 0.59 from 16,384 (bench/projection_start.py)."))
    lr: Optional[float] = Field(None, gt=0, description=(
        "Peak learning rate; empty = 1e-4 (transformer) or 1e-3 (static: on the dev split it kept more of the "
        "teacher than 5e-3 for both teachers, at the same held-out cosine: bench/transfer.py, m2v-spans-lr rows)."))
    weight_decay: float = Field(0.01, ge=0, description="AdamW weight decay.")
    steps: int = Field(2000, ge=1, description="Optimizer steps (the schedule's length).")
    batch_size: int = Field(64, ge=2, description="Texts per step.")
    warmup_steps: int = Field(100, ge=0, description="Linear learning-rate warm-up steps.")
    schedule: Literal["linear", "cosine", "constant"] = Field("linear", description="Decay after warm-up.")
    grad_clip: float = Field(1.0, gt=0, description="Gradient norm clipping.")
    alpha_cos: float = Field(1.0, ge=0, description="Weight of (1 - cosine) to the teacher vector.")
    alpha_mse: float = Field(1.0, ge=0, description=(
        "Weight of the squared error to the teacher vector (summed over dimensions, batch mean)."))
    alpha_sim: float = Field(0.0, ge=0, description=(
        "Weight of the in-batch similarity-distribution KL (teacher vs student softmaxed similarities)."))
    alpha_cross: float = Field(0.0, ge=0, description=(
        "Weight of the cross-similarity KL: each student vector's softmaxed similarities to the batch's "
        "teacher vectors against the teacher vector's own (student queries searched against teacher "
        "documents, as deployed)."))
    alpha_rank: float = Field(0.0, ge=0, description=(
        "Weight of the neighbour-ranking KL: each training text's teacher vector picks its rank_candidates "
        "nearest teacher vectors among the other training texts (hard candidates, found once before "
        "training), and the student vector's softmaxed similarities to them should match the teacher "
        "vector's own -- the order of the documents a query's search would actually weigh, which random "
        "in-batch texts (alpha_cross) rarely include."))
    rank_candidates: int = Field(32, ge=2, le=1024, description=(
        "Nearest teacher vectors per training text in the neighbour-ranking term (alpha_rank)."))
    temperature: float = Field(0.05, gt=0, description="Softmax temperature of the similarity terms.")
    blend_partner: Optional[str] = Field(None, description=(
        "The query encoder this student will be blended with (`tava blend`; `tava run` sets it to the "
        "transformer student + adapter when it trains the blend's static student): train towards the "
        "teacher's vector less blend_partner_weight times the partner's vector of the same text, so this "
        "student learns what the partner misses instead of repeating what it gets right. Its own score alone "
        "is then not the point; the blend's is. Empty = towards the teacher."))
    blend_partner_weight: float = Field(0.7, ge=0.0, lt=1.0, description=(
        "How much of the partner's vector comes off the teacher's (blend_partner). Chosen on SciFact's dev "
        "queries among 0.3 / 0.5 / 0.7 (bench/blend.py --b-alt; docs/mpnet.md)."))
    max_length: int = Field(128, ge=8, le=8192, description="Tokens per training text (longer texts are truncated).")
    max_texts: Optional[int] = Field(None, ge=2, description="Use only the first N texts of the corpus (for trials).")
    validation_fraction: float = Field(0.02, gt=0, lt=0.5, description=(
        "Share of the corpus held out for validation (mean cosine to the teacher); capped at 2000 texts."))
    eval_every: int = Field(200, ge=1, description="Validate every N steps.")
    patience: int = Field(5, ge=0, description=(
        "Early stopping: stop after this many validations without improvement (0 = never stop early); "
        "the best validated weights are what is saved."))
    checkpoint_every: int = Field(200, ge=1, description="Write a resumable checkpoint every N steps (and on stop).")
    max_epochs: float = Field(20.0, gt=0, description=(
        "Refuse a run that would pass over the training texts more often than this (a corpus that "
        "small is memorised: give more text or fewer steps)."))
    fit_steps: bool = Field(False, description=(
        "Treat `steps` as a default to fit to the corpus: when the training texts are too few for it within "
        "`max_epochs`, train the most steps that fit (warm-up and validation interval scaled alike) instead of "
        "refusing; when they are so many that `steps` would not pass over them `min_epochs` times, train more, "
        "up to `max_fitted_steps_factor` x `steps`. The pipeline's presets set it for their own step count, so "
        "`tava run` works on a small corpus and trains enough on a big one; a step count you give is kept, and "
        "refused when it does not fit."))
    # Why grow: the standard transformer's 1,000 steps of 32 texts are 2 passes over SciFact's documents and
    # spans but 0.3 over a 40,000-document corpus, where the held-out cosine was still rising at the last
    # step; on ad hoc known-item queries there, 3,000 steps took the student's queries against the
    # teacher's documents from 89.7% to 92.9% of the teacher (docs/stage-a.md). Corpora the presets were
    # measured on are below the threshold, so their figures are unchanged.
    min_epochs: float = Field(1.0, ge=0, description=(
        "With fit_steps: train at least this many passes over the training texts (0 = never grow the steps)."))
    max_fitted_steps_factor: float = Field(3.0, ge=1, description=(
        "With fit_steps: the most a big corpus may grow `steps` by (bounds the training time)."))
    time_budget_minutes: Optional[float] = Field(None, gt=0, description=(
        "Stop (and save the best weights) once training has run this long."))
    seed: int = Field(0, description="Seed for the split, batch order, initialisation and dropout.")
    device: str = Field("auto", description=(
        "Where the student trains: 'auto' (a CUDA GPU when there is one, else the CPU), 'cpu', 'cuda', "
        "'cuda:1', ... The student is saved from the CPU either way; the teacher's device is the teacher's "
        "own setting."))
    threads: Optional[int] = Field(None, ge=1, description=(
        "torch CPU threads while training; empty = torch's default (one per core). On a CPU shared "
        "with other jobs, 1 is often faster than oversubscribing."))
    resume: bool = Field(True, description=(
        "Resume from the last checkpoint of an identical run; --no-resume discards old checkpoints."))
    output: Optional[str] = Field(None, description="Output directory; empty = <home>/artifacts/students/<name>.")

    @property
    def weighted(self) -> bool:
        """Whether any dataset weighs other than 1 (``dataset_weights``)."""
        return any(w != 1 for w in self.dataset_weights)

    def resolved_lr(self) -> float:
        return self.lr if self.lr is not None else (1e-4 if self.student == "transformer" else 1e-3)

    def training_key(self, *, portable: bool = True) -> dict:
        """The fields that define a run: a checkpoint resumes only a run with the same key. ``portable``
        (the key written since session 43) leaves out the fields that name directories -- the training
        datasets, teacher vectors and blend partner, whose content the data key already holds (text sha256s,
        vector fingerprints, the partner's fingerprint) -- so a home copied or mounted at another path finds
        its runs; ``portable=False`` gives the key runs recorded before, which are still accepted."""
        # fit_steps is applied before the key is taken (fitted_to_corpus): the steps trained are in it
        # span_documents: the spans it keeps are in the data key (their shards' sha256s), so a sample
        # that cuts nothing leaves every earlier key (and checkpoint) valid; title_views likewise (the titles
        # are span rows: on a corpus without titles, earlier keys stay valid)
        skip = {"resume", "output", "device", "threads", "time_budget_minutes", "name", "fit_steps", "min_epochs",
                "max_fitted_steps_factor", "span_documents", "title_views"}
        if not self.alpha_rank:  # unused: runs from before the term keep their keys (and checkpoints)
            skip |= {"alpha_rank", "rank_candidates"}
        if self.static_init != "context":   # likewise: runs from before the context start keep their keys
            skip.add("static_context_tokens")
        if not self.weighted:   # unweighted: runs from before the weights keep their keys
            skip.add("dataset_weights")
        if self.blend_partner is None:      # and runs towards the teacher (the partner's identity is in the data key)
            skip |= {"blend_partner", "blend_partner_weight"}
        if portable:
            skip |= {"datasets", "teacher_vectors", "blend_partner"}
        key = self.model_dump(mode="json", exclude=skip)
        # the model names the teacher here; how it encoded (pooling, length, prompts) is in the data key,
        # through its vectors' sha256s, so keys (and checkpoints) from before the full spec stay valid
        key["teacher"] = self.teacher.model
        return key
