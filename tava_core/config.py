"""Configuration models shared by the CLI, config files, flow parameters and UI forms.

Each stage owns its model (``IngestConfig`` here, ``DistillConfig`` beside the distiller, ...);
this module holds the ones every stage uses. Field descriptions are what the UI forms and
``tava CMD --help`` show, so write them for a user.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Callable, Literal, Optional, cast

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from .errors import ConfigError

DEFAULT_HOME = Path(".tava")
TEACHER_ALIAS = "all-MiniLM-L6-v2"
# What a text is to an encoder: queries may get a prefix (or another model) that documents do not.
TextKind = Literal["query", "document"]


# Functions (schema, model) run on every config's JSON schema after tava's own touches: the
# orchestration layer adds what its UI needs (flows/_prefect.py) without the core knowing it.
SchemaHook = Callable[[dict[str, Any], type[BaseModel]], None]
_SCHEMA_HOOKS: list[SchemaHook] = []


def add_schema_hook(hook: SchemaHook) -> None:
    """Run ``hook`` on every config model's JSON schema from now on (once, however often added)."""
    if hook not in _SCHEMA_HOOKS:
        _SCHEMA_HOOKS.append(hook)


def _form_schema(schema: dict[str, Any], model: type[BaseModel]) -> None:
    """Make the JSON schema a good form: `default_factory` values become defaults (pydantic
    leaves them out, and a form would start empty, which is a different value); then the hooks."""
    from pydantic_core import to_jsonable_python

    properties = schema.get("properties", {})
    for name, field in model.model_fields.items():
        prop = properties.get(field.alias or name)
        if prop is None:
            continue
        if "default" not in prop and field.default_factory is not None \
                and not field.default_factory_takes_validated_data:
            # a factory that takes no validated data, checked on the line above
            factory = cast(Callable[[], Any], field.default_factory)
            prop["default"] = to_jsonable_python(factory())
    for hook in _SCHEMA_HOOKS:
        hook(schema, model)


class TavaModel(BaseModel):
    """Base for every config: unknown keys are errors (a typo must not be silently ignored)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True,
                              json_schema_extra=_form_schema)


class EncoderSpec(TavaModel):
    """Which encoder to run and how. What changes outputs enters the fingerprint, except the runtime
    (backend) and the compute precision (dtype), whose vectors agree to tolerance (see below)."""

    model: str = Field(TEACHER_ALIAS, description=(
        "Encoder to use: a built-in alias ('all-MiniLM-L6-v2', the packaged teacher) or a "
        "local path (a sentence-transformers / Hugging Face directory, or a tava model directory)."))
    pooling: Optional[Literal["mean", "cls"]] = Field(None, description=(
        "Pooling of token vectors; empty = what the model directory says (mean if it says nothing)."))
    normalize: Optional[bool] = Field(None, description=(
        "L2-normalise output vectors; empty = what the model directory says (true if it says nothing)."))
    max_length: Optional[int] = Field(None, ge=8, le=8192, description=(
        "Maximum tokens per text; empty = the model directory's max_seq_length (else 512)."))
    window: Optional[int] = Field(None, ge=0, le=8192, description=(
        "Most tokens read at a time: a longer text is encoded as the token-weighted mean of its windows; "
        "empty = the model directory's window.json (a Stage A student's: its training texts' length), "
        "0 = read every text whole (up to max_length)."))
    query_prefix: str = Field("", description=(
        "Text put before every query; empty = the model's own query prompt, if its sentence-transformers "
        "config defines one (e5: 'query: ')."))
    document_prefix: str = Field("", description=(
        "Text put before every document; empty = the model's own document prompt, if any (e5: 'passage: ')."))
    device: str = Field("auto", description="'auto' (cuda, then mps, then cpu), 'cpu', 'cuda', 'cuda:1', ...")
    # Not in the fingerprint either, by design: 'auto' is float16/bfloat16 on CUDA and float32 on CPU, and a
    # store embedded on a GPU must stay searchable by queries encoded on a CPU (and share its cache). Half
    # precision only rounds what float32 computes (3-4 significant digits); set float32 everywhere when
    # vectors must match to 1e-6 across machines.
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = Field("auto", description=(
        "Compute precision; 'auto' = float16 on CUDA (bfloat16 where supported), float32 on CPU."))
    batch_size: int = Field(64, ge=1, le=65536, description=(
        "Texts per forward pass; halved automatically on out-of-memory."))
    # Not in the fingerprint: the ONNX backend is used only when its outputs agree with torch's.
    backend: Literal["torch", "onnx", "auto"] = Field("torch", description=(
        "Runtime for transformer encoders: 'torch', 'onnx' (ONNX Runtime; the graph is exported once "
        "per encoder fingerprint and cached under <home>/cache/onnx) or 'auto' (onnx on CPU where "
        "onnxruntime is installed, torch on CUDA). Vectors and fingerprints are the same either way."))


def _spec_from_model(value: Any) -> Any:
    return EncoderSpec(model=value) if isinstance(value, str) else value


# A stage's teacher: the whole spec the run encodes with (length, pooling, prompts, device), so a stage never
# re-resolves the teacher from its name with default settings; a bare string is the model.
TeacherSpec = Annotated[EncoderSpec, BeforeValidator(_spec_from_model)]


class IngestConfig(TavaModel):
    """How `tava ingest` reads, cleans and shards a corpus."""

    source: str = Field(..., description=(
        "What to ingest: a BEIR directory, a .jsonl/.jsonl.gz, .parquet, .csv/.tsv file, a folder "
        "of .txt files, or 'builtin' for the default corpus built from installed packages' docstrings."))
    name: Optional[str] = Field(None, description="Dataset name under <home>/data (default: from the source).")
    format: Literal["auto", "beir", "jsonl", "parquet", "csv", "tsv", "txt"] = Field("auto", description=(
        "Source format; 'auto' = from the file suffix (or: a directory with corpus.jsonl is BEIR, "
        "else a folder of .txt files)."))
    text_field: str = Field("text", description="Field/column holding the text (JSONL, Parquet, CSV/TSV).")
    id_field: str = Field("_id", description=(
        "Field/column holding the record id; records without one get a content hash of their text "
        "('' = always hash). '_id' also accepts 'id'. BEIR directories always use '_id'."))
    title_field: Optional[str] = Field("title", description=(
        "Field/column with an optional title (encoders see 'title text', as BEIR does); '' = none."))
    source_field: Optional[str] = Field("source", description=(
        "Field/column copied into each row's 'source' column when present (else the file name)."))
    shard_size: int = Field(5000, ge=1, description="Rows per Parquet shard.")
    on_bad_record: Literal["error", "skip"] = Field("error", description=(
        "'error' stops at the first bad record (naming file and line); 'skip' counts and skips it "
        "(counts by reason land in the manifest and the report)."))
    dedupe_texts: bool = Field(True, description=(
        "Drop records whose normalised text repeats an earlier one (never applied to a BEIR corpus, "
        "whose qrels name ids)."))
    max_records: Optional[int] = Field(None, ge=1, description="Keep at most this many records per collection (for trials).")
    sample_records: Optional[int] = Field(None, ge=1, description=(
        "Keep a uniform random sample of this many records per collection (seeded, in source order): a "
        "bounded slice of a big unlabeled source whose records are grouped (by origin, date, ...), where "
        "--max-records would keep only the first groups."))
    sample_seed: int = Field(0, description="Seed of --sample-records.")


def resolve_home(home: str | Path | None = None) -> Path:
    """The tava home directory: argument, else $TAVA_HOME, else ./.tava (made absolute)."""
    chosen = home or os.environ.get("TAVA_HOME") or DEFAULT_HOME
    return Path(chosen).expanduser().resolve()


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML or TOML config file into a dict (validation is the caller's model's job)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError("config file not found", path=path)
    text = path.read_text()
    try:
        if path.suffix.lower() == ".toml":
            import tomllib

            data = tomllib.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text) or {}
    except Exception as exc:  # noqa: BLE001 - both parsers raise their own types
        line = getattr(getattr(exc, "problem_mark", None), "line", None)
        raise ConfigError(f"cannot parse config ({exc})", path=path,
                          line=None if line is None else line + 1) from None
    if not isinstance(data, dict):
        raise ConfigError("config must be a mapping of option names to values", path=path)
    return data
