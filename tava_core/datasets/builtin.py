"""The built-in default data: a small retrieval benchmark plus training text, made offline from
the docstrings of packages tava already depends on.

How it is built (deterministic: same package versions -> byte-identical files):

1. Walk the ``.py`` files of a fixed list of installed packages (``PACKAGES``: numpy, parts of
   torch, click, pydantic, tqdm, PyYAML, pyarrow, prefect, sentence-transformers) in sorted
   order, skipping test/vendored folders. Files are parsed with ``ast``; nothing is imported.
2. Take the docstring of every public module, class, function and method, and clean it: drop
   doctest lines (``>>>`` and their output), ``Examples`` / ``See Also`` / ``References``
   sections, code blocks, reST directives and section underlines; unwrap reST/markdown markup
   (``:func:`x``` -> ``x``, ````x```` -> ``x``, ``[text](url)`` -> ``text``). ``Args:`` /
   ``Parameters`` sections stay. Texts are cut to ``MAX_WORDS`` words; exact repeats are dropped.
3. A docstring whose first paragraph is a useful summary (4-30 words, prose, not a signature)
   and whose remaining body has at least ``MIN_BODY_WORDS`` words is a *candidate*. Candidates
   are ordered by sha256 of their qualified name: the first ``N_QUERIES`` become the labeled
   split (query = summary line, its one relevant document = the body without the summary), the
   next ``N_DISTRACTORS`` add their bodies to the corpus as distractors.
4. Every other docstring (summary + body) is unlabeled training text, disjoint from the
   evaluation corpus and queries (no shared text, body or summary).

Output (BEIR layout) in ``<home>/data/builtin-src/``: ``corpus.jsonl``, ``queries.jsonl``,
``qrels/test.tsv``, ``unlabeled.jsonl`` and ``build.json`` (package versions, counts, file
sha256s). It is rebuilt only when a package version or this builder changes;
``tava ingest builtin`` then ingests it as the dataset ``builtin`` (collections corpus, queries,
unlabeled; qrels split test).
"""
from __future__ import annotations

import ast
import hashlib
import importlib.metadata
import importlib.util
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

from ..home import TavaHome
from ..io import atomic_directory, read_json, sha256_file, stable_hash

BUILDER_VERSION = 1
SOURCE_DIR_NAME = "builtin-src"

# (distribution, import name, sub-paths inside the package; "" = all of it)
PACKAGES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("numpy", "numpy", ("",)),
    ("torch", "torch", ("nn", "optim", "utils/data")),
    ("click", "click", ("",)),
    ("pydantic", "pydantic", ("",)),
    ("tqdm", "tqdm", ("",)),
    ("PyYAML", "yaml", ("",)),
    ("pyarrow", "pyarrow", ("",)),
    ("prefect", "prefect", ("",)),
    ("sentence-transformers", "sentence_transformers", ("",)),
)
SKIP_DIRS = {"tests", "test", "testing", "_vendor", "vendor", "vendored", "benchmarks", "examples",
             "__pycache__", "v1", "_pyinstaller", "server"}

N_QUERIES = 250
N_DISTRACTORS = 750
MAX_WORDS = 160
MIN_BODY_WORDS = 25
MIN_TEXT_WORDS = 12
SUMMARY_WORDS = (4, 30)


@dataclass
class Docstring:
    key: str        # dotted module path + qualified name: numpy.linalg._linalg.solve
    package: str
    summary: str
    body: str

    @property
    def text(self) -> str:
        return f"{self.summary} {self.body}".strip()


# ---------------------------------------------------------------------------- cleaning

_DROP_SECTIONS = {"examples", "example", "see also", "references", "reference", "example usage",
                  "usage example", "usage examples"}
_UNDERLINE = re.compile(r"^\s*([-=~^*`#+])\1{2,}\s*$")
_ROLE = re.compile(r":[\w:.+-]+:`(~?)([^`<]*?)(?:\s*<[^>]*>)?`")
_LITERAL = re.compile(r"``([^`]*)``")
_LINK_REST = re.compile(r"`([^`<]+?)(?:\s*<[^>]*>)?`_{1,2}")
_BACKTICK = re.compile(r"`([^`]*)`")
_MD_LINK = re.compile(r"\[([^\]]+)\]\([^)]*\)")
_BOLD = re.compile(r"\*\*([^*]+)\*\*")
_SIGNATURE = re.compile(r"^[\w.]+\(.*\)")


def _is_section_header(lines: list[str], i: int) -> Optional[str]:
    """The name of a section starting at line ``i`` (numpy underline or Google 'Name:'), else None."""
    line = lines[i].strip()
    if i + 1 < len(lines) and _UNDERLINE.match(lines[i + 1]) and line:
        return line.lower()
    if line.endswith(":") and not lines[i].startswith((" ", "\t")) and len(line) < 30:
        return line[:-1].lower()
    return None


def clean_docstring(doc: str) -> str:
    """Docstring -> plain paragraphs (blank-line separated), without doctests and markup."""
    lines = doc.expandtabs(4).splitlines()
    out: list[str] = []
    i, in_doctest, skip_indent, fence = 0, False, None, False
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        indent = len(line) - len(line.lstrip())
        if stripped.startswith("```"):
            fence = not fence
            i += 1
            continue
        if fence:
            i += 1
            continue
        if skip_indent is not None:  # inside a dropped directive / code block
            if not stripped or indent > skip_indent:
                i += 1
                continue
            skip_indent = None
        if stripped.startswith(">>>"):
            in_doctest = True
        if in_doctest:  # the example and its printed output run until a blank line
            if not stripped:
                in_doctest = False
            i += 1
            continue
        section = _is_section_header(lines, i)
        if section in _DROP_SECTIONS:
            # Drop everything up to the next section header (or the end).
            i += 2 if i + 1 < len(lines) and _UNDERLINE.match(lines[i + 1]) else 1
            while i < len(lines) and _is_section_header(lines, i) in (None, *_DROP_SECTIONS):
                i += 1
            continue
        if stripped.startswith(".. "):
            skip_indent = indent  # the directive and its indented content/options
            i += 1
            continue
        if stripped.endswith("::") and not stripped.startswith(":"):
            line = line.rstrip()[:-1]  # "Example::" introduces a literal block: keep the text
            skip_indent = indent
        if _UNDERLINE.match(line):
            i += 1
            continue
        out.append(line)
        i += 1
    text = "\n".join(out)
    # :func:`~numpy.mean` shows "mean"; :func:`numpy.mean` and :ref:`title <target>` show the text.
    text = _ROLE.sub(lambda m: m.group(2).rsplit(".", 1)[-1] if m.group(1) else m.group(2), text)
    for pattern in (_LITERAL, _LINK_REST, _BACKTICK, _MD_LINK, _BOLD):
        text = pattern.sub(r"\1", text)
    paragraphs = [" ".join(p.split()) for p in re.split(r"\n\s*\n", text)]
    return "\n\n".join(p for p in paragraphs if p)


def _cut(text: str, words: int = MAX_WORDS) -> str:
    parts = text.split()
    return " ".join(parts[:words])


def split_summary(cleaned: str) -> tuple[str, str]:
    first, _, rest = cleaned.partition("\n\n")
    return first.strip(), " ".join(rest.split())


def useful_summary(summary: str) -> bool:
    words = summary.split()
    if not SUMMARY_WORDS[0] <= len(words) <= SUMMARY_WORDS[1]:
        return False
    if not summary[0].isalpha() or _SIGNATURE.match(summary):
        return False
    lowered = summary.lower()
    return not lowered.startswith(("deprecated", "alias", "see ", "same as", "this is an alias",
                                   "an alias", "todo", "do not use"))


# ------------------------------------------------------------------------------ walking

def package_versions() -> dict[str, Optional[str]]:
    versions: dict[str, Optional[str]] = {}
    for dist, _, _ in PACKAGES:
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            versions[dist] = None
    return versions


def _package_dir(import_name: str) -> Optional[Path]:
    # find_spec on a top-level name locates the package without running its __init__.
    spec = importlib.util.find_spec(import_name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def _python_files(root: Path) -> Iterator[Path]:
    if root.is_file():
        yield root
        return
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root).parts[:-1]
        if not any(part in SKIP_DIRS for part in parts):
            yield path


def _module_docstrings(path: Path, module: str) -> Iterator[tuple[str, str]]:
    """(qualified name, docstring) of the module, its public classes, functions and methods."""
    try:
        tree = ast.parse(path.read_bytes(), filename=str(path))
    except (SyntaxError, ValueError, UnicodeDecodeError):
        return
    doc = ast.get_docstring(tree, clean=True)
    if doc and not module.rsplit(".", 1)[-1].startswith("_"):
        yield module, doc

    def visit(body: list[ast.stmt], prefix: str) -> Iterator[tuple[str, str]]:
        for node in body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                if node.name.startswith("_"):
                    continue
                doc = ast.get_docstring(node, clean=True)
                if doc:
                    yield f"{prefix}.{node.name}", doc
                if isinstance(node, ast.ClassDef):
                    yield from visit(node.body, f"{prefix}.{node.name}")

    yield from visit(tree.body, module)


def collect_docstrings() -> tuple[list[Docstring], dict[str, int]]:
    """Every cleaned public docstring of ``PACKAGES``, in a fixed order; plus counts per package."""
    seen_keys: set[str] = set()
    seen_texts: set[str] = set()
    docs: list[Docstring] = []
    per_package: dict[str, int] = {}
    for dist, import_name, subpaths in PACKAGES:
        base = _package_dir(import_name)
        if base is None:
            continue
        count = 0
        for sub in subpaths:
            for path in _python_files(base / sub if sub else base):
                relative = path.relative_to(base.parent).with_suffix("")
                parts = list(relative.parts)
                if parts[-1] == "__init__":
                    parts.pop()
                module = ".".join(parts)
                for key, raw in _module_docstrings(path, module):
                    if key in seen_keys:
                        continue
                    seen_keys.add(key)
                    cleaned = clean_docstring(raw)
                    summary, body = split_summary(cleaned)
                    doc = Docstring(key=key, package=dist, summary=_cut(summary, 60), body=_cut(body))
                    if len(doc.text.split()) < MIN_TEXT_WORDS:
                        continue
                    digest = hashlib.sha1(doc.text.encode()).hexdigest()
                    if digest in seen_texts:
                        continue
                    seen_texts.add(digest)
                    docs.append(doc)
                    count += 1
        per_package[dist] = count
    return docs, per_package


def _order(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def build_builtin_source(out_dir: Path) -> dict:
    """Write the BEIR-layout source files into ``out_dir`` (an empty directory); returns build info."""
    docs, per_package = collect_docstrings()
    summary_counts: dict[str, int] = {}
    body_counts: dict[str, int] = {}
    for doc in docs:
        summary_counts[doc.summary.lower()] = summary_counts.get(doc.summary.lower(), 0) + 1
        body_counts[doc.body] = body_counts.get(doc.body, 0) + 1
    candidates = sorted(
        (d for d in docs if useful_summary(d.summary) and len(d.body.split()) >= MIN_BODY_WORDS
         and summary_counts[d.summary.lower()] == 1 and body_counts[d.body] == 1),
        key=lambda d: _order(d.key))
    labeled = candidates[:N_QUERIES]
    distractors = candidates[N_QUERIES:N_QUERIES + N_DISTRACTORS]
    eval_keys = {d.key for d in labeled + distractors}
    eval_bodies = {d.body for d in labeled + distractors}
    eval_summaries = {d.summary.lower() for d in labeled}
    unlabeled = [d for d in docs if d.key not in eval_keys and d.body not in eval_bodies
                 and d.summary.lower() not in eval_summaries and d.text not in eval_bodies]

    corpus = sorted(labeled + distractors, key=lambda d: d.key)
    _write_jsonl(out_dir / "corpus.jsonl",
                 ({"_id": d.key, "title": "", "text": d.body, "source": d.package} for d in corpus))
    _write_jsonl(out_dir / "queries.jsonl",
                 ({"_id": f"q:{d.key}", "text": d.summary} for d in sorted(labeled, key=lambda d: d.key)))
    (out_dir / "qrels").mkdir()
    with open(out_dir / "qrels" / "test.tsv", "w", encoding="utf-8", newline="\n") as handle:
        handle.write("query-id\tcorpus-id\tscore\n")
        for d in sorted(labeled, key=lambda d: d.key):
            handle.write(f"q:{d.key}\t{d.key}\t1\n")
    _write_jsonl(out_dir / "unlabeled.jsonl",
                 ({"_id": d.key, "title": "", "text": d.text, "source": d.package} for d in unlabeled))
    files = ["corpus.jsonl", "queries.jsonl", "qrels/test.tsv", "unlabeled.jsonl"]
    info = {
        "builder_version": BUILDER_VERSION,
        "signature": builtin_signature(),
        "packages": package_versions(),
        "docstrings_per_package": per_package,
        "counts": {"docstrings": len(docs), "candidates": len(candidates), "queries": len(labeled),
                   "corpus": len(corpus), "distractors": len(distractors), "unlabeled": len(unlabeled)},
        "parameters": {"n_queries": N_QUERIES, "n_distractors": N_DISTRACTORS, "max_words": MAX_WORDS,
                       "min_body_words": MIN_BODY_WORDS, "summary_words": list(SUMMARY_WORDS)},
        "files": {name: sha256_file(out_dir / name) for name in files},
        "how": "tava_core/datasets/builtin.py (module docstring)",
    }
    (out_dir / "build.json").write_text(json.dumps(info, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return info


def _write_jsonl(path: Path, rows) -> None:
    with open(path, "w", encoding="utf-8", newline="\n") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n")


def builtin_signature() -> str:
    """Changes exactly when the built-in data would: package versions, package list, parameters."""
    return stable_hash({"builder": BUILDER_VERSION, "packages": package_versions(),
                        "list": [list(p[:2]) + list(p[2]) for p in PACKAGES],
                        "params": [N_QUERIES, N_DISTRACTORS, MAX_WORDS, MIN_BODY_WORDS, list(SUMMARY_WORDS),
                                   sorted(SKIP_DIRS)]}, length=32)


def builtin_source_dir(home: TavaHome) -> Path:
    return home.data / SOURCE_DIR_NAME


def ensure_builtin_source(home: TavaHome | None = None, *, force: bool = False) -> tuple[Path, dict]:
    """The built-in source directory, built (atomically) unless a current build is there."""
    home = home or TavaHome()
    out = builtin_source_dir(home)
    build_file = out / "build.json"
    if not force and build_file.is_file():
        info = read_json(build_file)
        if info.get("signature") == builtin_signature():
            return out, info
    with atomic_directory(out) as tmp:
        info = build_builtin_source(tmp)
    return out, info
