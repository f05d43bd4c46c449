"""`EvalConfig`: what `tava evaluate` compares, on which data, with which variants."""
from __future__ import annotations

from typing import Literal, Optional

from pydantic import Field, field_validator

from ..config import EncoderSpec, TavaModel

Mode = Literal["teacher/teacher", "student/student", "adapted/teacher", "adapted/adapted"]
# mode -> (query encoder role, document encoder role)
MODE_ROLES: dict[str, tuple[str, str]] = {
    "teacher/teacher": ("teacher", "teacher"),
    "student/student": ("student", "student"),
    "adapted/teacher": ("adapted", "teacher"),
    "adapted/adapted": ("adapted", "adapted"),
}

Quantization = Literal["int8", "binary"]
ALL_QUANTIZATIONS: tuple[Quantization, ...] = ("int8", "binary")


class EvalConfig(TavaModel):
    """How `tava evaluate` scores encoders on a BEIR-style retrieval set."""

    dataset: str = Field(..., description=(
        "Retrieval data: an ingested BEIR dataset (name under <home>/data or its directory) or a raw "
        "BEIR directory (corpus.jsonl, queries.jsonl, qrels/<split>.tsv)."))
    split: str = Field("test", description="Qrels split to evaluate (qrels/<split>.tsv).")
    judgements: Optional[str] = Field(None, description=(
        "A directory of label-free judgements (queries.jsonl + qrels/<split>.tsv: the teacher's own top 10 "
        "documents per query-like text, as `tava run` writes them for a corpus without qrels), read in place "
        "of the dataset's queries and qrels; empty = the dataset's own."))
    teacher: EncoderSpec = Field(default_factory=EncoderSpec, description=(
        "The teacher: encodes queries and documents of teacher/teacher, and documents of adapted/teacher."))
    student: Optional[EncoderSpec] = Field(None, description=(
        "The student (optional): evaluated as student/student."))
    adapted: Optional[EncoderSpec] = Field(None, description=(
        "The adapted student (optional): a student whose vectors land in the teacher's space; evaluated "
        "as adapted/teacher (its queries against teacher documents) and adapted/adapted."))
    router: Optional[str] = Field(None, description=(
        "A router directory (`tava calibrate-router`): adds the routed mode, quality and cost against the "
        "share of queries sent to the teacher, beside random, longest-first and oracle routing."))
    modes: list[Mode] = Field(default_factory=list, description=(
        "Modes to run; empty = every mode whose encoders are given."))
    matryoshka_dims: list[int] = Field(default_factory=lambda: [384, 256, 128, 64], description=(
        "Matryoshka truncation sizes: query and document vectors are cut to the first d dims and "
        "re-normalised (sizes at or above an encoder's dim are skipped)."))
    quantization: list[Quantization] = Field(default_factory=lambda: list(ALL_QUANTIZATIONS), description=(
        "Document-vector quantisations to score: 'int8' (per-dim ranges from the corpus, float query "
        "against dequantised documents) and 'binary' (sign bits, Hamming similarity)."))
    batch_size: int = Field(64, ge=1, description=(
        "Texts per forward pass for every encoder (the query-throughput figure uses it too)."))
    run_mteb: bool = Field(True, description=(
        "Score the full-dim modes through mteb (results in mteb's format) and cross-check against "
        "tava's numpy metrics; off = numpy metrics only."))
    run: Optional[str] = Field(None, description=(
        "Report name under <home>/reports/evaluate/; empty = <dataset>-<split>-<config hash>."))
    reuse: bool = Field(True, description=(
        "Serve an identical earlier evaluation (same settings, same dataset content, same encoder "
        "weights) from its report instead of encoding the queries and scoring again; its throughput "
        "figures are those measured then. Off (--no-reuse) = measure again."))

    @field_validator("matryoshka_dims")
    @classmethod
    def _positive_dims(cls, dims: list[int]) -> list[int]:
        if any(d < 1 for d in dims):
            raise ValueError("Matryoshka dims must be positive")
        return sorted(set(dims), reverse=True)

    def encoder_specs(self) -> dict[str, EncoderSpec]:
        """role -> spec for each encoder given (teacher always)."""
        specs = {"teacher": self.teacher}
        if self.student is not None:
            specs["student"] = self.student
        if self.adapted is not None:
            specs["adapted"] = self.adapted
        return specs

    def selected_modes(self) -> list[str]:
        """Modes to run: the requested ones (checked), else all whose encoders are given."""
        from ..errors import ConfigError

        given = set(self.encoder_specs())
        runnable = [m for m, roles in MODE_ROLES.items() if set(roles) <= given]
        if not self.modes:
            return runnable
        for mode in self.modes:
            if mode not in runnable:
                missing = sorted(set(MODE_ROLES[mode]) - given)
                raise ConfigError(f"mode {mode!r} needs the {' and '.join(missing)} encoder",
                                  hint=f"give --{missing[0]} MODEL or drop the mode")
        return [m for m in MODE_ROLES if m in self.modes]


class JudgeConfig(TavaModel):
    """How `tava judge` lets the teacher judge a corpus without qrels (`judgements.py`)."""

    dataset: str = Field("builtin", description=(
        "An ingested dataset (name under <home>/data or its directory): its documents are judged."))
    teacher: EncoderSpec = Field(default_factory=EncoderSpec, description=(
        "The teacher whose own top 10 documents per query-like text become the judgements."))
    queries: int = Field(300, ge=10, description=(
        "How many query-like texts: a sample of the dataset's queries if it has them, else one span view "
        "each of as many documents."))
    spans: bool = Field(False, description="Span views of the documents even when the dataset has queries.")
    seed: int = Field(0, description="Seed of the sample of queries or documents.")
