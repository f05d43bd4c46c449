"""Cheap checks of a command's inputs, run before Prefect is imported or a server starts.

They catch what a user mistypes (a path that does not exist, a dataset never ingested, a vector
directory without its manifest, an encoder path that is not there) and say so with the option
and the fix. Anything deeper (dims, fingerprints, file contents) stays with the stages.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Optional

from tava_core.config import EncoderSpec
from tava_core.errors import ConfigError, InputError, ModelLoadError
from tava_core.home import TavaHome, find_dataset

MANIFEST = "manifest.json"


def _looks_like_path(value: str) -> bool:
    """A model/dataset given as a path (not a bare alias or name): then it must exist."""
    return value.startswith((".", "~", "/")) or "/" in value or "\\" in value


def encoder(spec: Optional[EncoderSpec | str], option: str) -> None:
    """An encoder given as a path must exist (a bare name is an alias, resolved when loaded)."""
    if spec is None:
        return
    model = spec if isinstance(spec, str) else spec.model
    if _looks_like_path(model) and not Path(model).expanduser().exists():
        raise InputError(f"{option}: encoder not found", path=Path(model).expanduser(),
                         hint="give a model directory that exists, or a built-in alias such as all-MiniLM-L6-v2")


def ingested_dataset(home: TavaHome, dataset: str, option: str = "--dataset",
                     collections: Iterable[str] = ()) -> Path:
    """An ingested dataset (name under <home>/data or its directory), with these collections."""
    directory = find_dataset(home, dataset)
    wanted = list(collections)
    if wanted:
        try:
            present = json.loads((directory / MANIFEST).read_text()).get("collections", {})
        except (OSError, ValueError) as exc:
            raise InputError(f"{option}: unreadable dataset manifest ({exc})", path=directory / MANIFEST,
                             hint=f"re-run `tava ingest` for {dataset}") from None
        missing = [c for c in wanted if c not in present]
        if missing:
            raise ConfigError(f"--collections: {dataset} has no collection {', '.join(map(repr, missing))} "
                              f"(it has: {', '.join(present)})", path=directory / MANIFEST)
    return directory


def retrieval_dataset(home: TavaHome, dataset: str, option: str = "--dataset") -> None:
    """An ingested dataset or a raw BEIR directory (corpus.jsonl), as evaluation reads them."""
    from tava_core.ingest.readers import beir_file, beir_subsets_hint

    candidate = Path(dataset).expanduser()
    if (candidate / MANIFEST).is_file() or beir_file(candidate, "corpus"):
        return
    if (home.dataset_dir(dataset) / MANIFEST).is_file():
        return
    raise InputError(f"{option}: no retrieval dataset {dataset!r}: neither an ingested dataset nor a BEIR "
                     "directory", path=candidate,
                     hint=beir_subsets_hint(candidate) or "give a BEIR directory (corpus.jsonl, queries.jsonl, "
                     f"qrels/) or run `tava ingest DIR --name {dataset}` first")


def judged_split(home: TavaHome, dataset: str, split: str, judgements: Optional[str]) -> None:
    """The split has judgements to score against: ``qrels/<split>.tsv`` of ``--judgements DIR`` when given,
    else of the dataset (raw BEIR, or an ingested dataset's manifest). Reads no corpus."""
    from tava_core.manifest import load_dataset_manifest

    if judgements is not None:
        qrels = Path(judgements).expanduser() / "qrels" / f"{split}.tsv"
        if not qrels.is_file():
            raise InputError(f"--judgements has no qrels for split {split!r}", path=qrels,
                             hint="judgements `tava run` writes are split 'teacher-top10': pass --split teacher-top10")
        return
    from tava_core.ingest.readers import beir_file

    candidate = Path(dataset).expanduser()
    path = candidate if (candidate / MANIFEST).is_file() else home.dataset_dir(dataset)
    if (path / MANIFEST).is_file():
        splits = sorted(load_dataset_manifest(path).qrels)
    elif candidate.is_dir() and beir_file(candidate, "corpus"):
        path, splits = candidate, sorted(q.stem for q in (candidate / "qrels").glob("*.tsv"))
    else:
        return   # not found: retrieval_dataset says so
    if split not in splits:
        raise InputError(f"--split {split!r}: the dataset has no qrels for it (splits with qrels: "
                         f"{', '.join(splits) or 'none'})", path=path,
                         hint=("pass one of those with --split; " if splits else "")
                         + "a corpus without qrels is scored against the teacher's own top 10: `tava run --source ...` "
                           "judges it, then --judgements DIR --split teacher-top10")


def vector_dirs(paths: Iterable[Optional[str]], option: str) -> None:
    """Vector directories written by `tava embed` (they hold a manifest.json)."""
    for path in paths:
        if path is None:
            continue
        directory = Path(path).expanduser()
        if not directory.is_dir():
            raise InputError(f"{option}: vector directory not found", path=directory,
                             hint="give a directory made by `tava embed` (under <home>/vectors/)")
        if not (directory / MANIFEST).is_file():
            raise InputError(f"{option}: not a finished vector directory (no {MANIFEST})", path=directory,
                             hint="run (or finish) `tava embed` for it; the manifest is written last")


def index_factory(config) -> None:  # noqa: ANN001 (IndexConfig: lazy imports)
    """`tava index`'s factory builds for the vectors' dim and its IVF lists fit their count (faiss, no torch)."""
    from tava_core.index import planned_index
    from tava_core.manifest import load_vector_manifest

    directory = Path(config.vectors).expanduser().resolve()
    planned_index(config, load_vector_manifest(directory), directory)


def existing_path(path: Optional[str], option: str) -> None:
    if path is not None and not Path(path).expanduser().exists():
        raise InputError(f"{option}: no such file or folder", path=Path(path).expanduser())


def imported_vectors(path: Optional[str], encoder_spec: Optional[EncoderSpec | str], option: str, *,
                     vector_column: str = "vector") -> None:
    """A store's vectors given for an encoder: the file exists, and its vectors have the encoder's dim where both
    can be read without loading anything (mpnet's 768-d vectors passed with the default 384-d teacher)."""
    existing_path(path, option)
    if path is None:
        return
    from tava_core.imported import source_dim
    from tava_core.model_dims import aliases_of_dim, declared_dim

    model = (encoder_spec if isinstance(encoder_spec, str) else (encoder_spec or EncoderSpec()).model)
    have, want = source_dim(Path(path).expanduser(), vector_column=vector_column), declared_dim(model)
    if have is not None and want is not None and have != want:
        makers = aliases_of_dim(have)
        maker = f"; {' or '.join(makers)} makes {have}-d vectors" if makers else ""
        encoder_option = "--teacher" if option == "--teacher-document-vectors" else "--encoder"
        raise InputError(f"{option}: {have}-d vectors, but the encoder {model} makes {want}-d ones{maker}",
                         path=Path(path).expanduser(),
                         hint=f"pass the encoder that made these vectors with {encoder_option}, or import the vectors "
                              f"{model} made")


def compress_dims(config) -> None:  # noqa: ANN001 (CompressConfig: lazy imports)
    """`tava compress`'s target dims are below the vectors' (from --corpus-vectors' manifest, else the encoder's
    files): refused before any corpus is embedded, not after."""
    from tava_core.manifest import load_vector_manifest
    from tava_core.model_dims import declared_dim

    # --corpus-vectors was checked to hold a manifest (vector_dirs, called first)
    dim = (load_vector_manifest(Path(config.corpus_vectors).expanduser()).dim if config.corpus_vectors
           else declared_dim(config.encoder.model))
    too_big = [d for d in config.dims if dim is not None and d >= dim]
    if dim is not None and too_big:
        raise ConfigError(f"--dims: target dims {too_big} are not below the vectors' {dim} dimensions",
                          hint=f"choose dims below {dim}, e.g. {dim // 3}")


def translation_map(directory: Optional[str], option: str = "--adapter") -> None:
    """``directory`` holds a map `tava translate` applies: an adapter or a compressor (its config.json names the
    format; loading checks the weights)."""
    from tava_core.adapter.config import ADAPTER_FORMAT
    from tava_core.compress.config import COMPRESSOR_FORMAT
    from tava_core.io import config_format

    if directory is None:
        return
    path = Path(directory).expanduser()
    fmt = config_format(path)
    if fmt not in (ADAPTER_FORMAT, COMPRESSOR_FORMAT):
        found = "no config.json" if not (path / "config.json").is_file() else f"config.json format {fmt!r}"
        raise ModelLoadError(f"{option}: neither an adapter nor a compressor directory ({found})", path=path,
                             hint="give a directory written by `tava adapt` (<home>/artifacts/adapters/<name>) or "
                                  "by `tava compress` (<home>/artifacts/compressors/<run>/<method>-<dim>d)")


def existing_file(path: Optional[str], option: str) -> None:
    if path is not None and not Path(path).expanduser().is_file():
        raise InputError(f"{option}: file not found", path=Path(path).expanduser())


def existing_dir(path: Optional[str], option: str) -> None:
    if path is not None and not Path(path).expanduser().is_dir():
        raise InputError(f"{option}: directory not found", path=Path(path).expanduser())


def ingest_source(config, home: TavaHome):  # noqa: ANN001, ANN201 (IngestConfig -> SourcePlan | None: lazy imports)
    """The source `tava ingest` would read: exists, format and columns fit (not 'builtin', which
    is built on demand and takes a while). Returns its plan (None for 'builtin')."""
    if config.source == "builtin":
        return None
    from tava_core.ingest import plan_source

    return plan_source(config, home)
