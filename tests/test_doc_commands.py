"""Every `tava ...` command line in the README, ARCHITECTURE.md and docs/*.md names a real command (and
sub-command, `tava data spans`) and options that command really takes, so renaming or removing an
option cannot leave the docs teaching one that fails.

Checked in-process against the click objects `tava` runs (flows/cli.py's group loads each command
from its COMMANDS table), no subprocess. Where a command line is looked for:

- fenced code blocks without a language or in bash/sh/shell/console: every ``tava CMD ...`` in the code
  (lines joined at a trailing ``\\``; a line is cut at ``;``, ``&&``, `` | ``, ``)`` and its ``# comment``);
- inline code spans (`...`, which may wrap onto the next line of a paragraph), in prose, tables
  (``\\|`` is ``|``) and in code comments: every ``tava CMD ...`` in them;
- bare text of code comments (and python/yaml blocks' comments): ``tava CMD ...`` only when CMD is a
  real command, since a comment may say "tava" in prose.

What is checked: the command word(s) (``a|b`` alternatives each; a placeholder such as ``CMD`` or
``...`` in a command position stops the check there, as in `tava CMD --help`), and every ``--option``
(``--opt=value``, ``[--opt X]``, ``--flag/--no-flag``, a trailing ``*`` as a prefix) against the
command's options, the help option included; global options (`tava --help`, ``--home``) against the
group's. Values and positional arguments (``DIR``, ``N``, ``<dataset>``, ``...``) are not checked,
nor is anything after a bare ``--``.

bench/cli_run.py passes every option after its ``--`` to `tava run` unchanged (``scifact``,
``generic`` ... are value shorthands), so in a code span or line naming ``cli_run.py`` the options
after `` -- `` are checked as `tava run`'s: it costs nothing more. cli_run.py's own options, and other
programs' (``python bench/...``, ``pip``, ``prefect``), are not checked.
"""
from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest

from flows.cli import COMMANDS, group

PROJECT = Path(__file__).resolve().parents[1]
PAGES = [PROJECT / "README.md", PROJECT / "ARCHITECTURE.md", *sorted((PROJECT / "docs").glob("*.md"))]
FENCED = re.compile(r"^```([^\n]*)\n(.*?)^```", re.M | re.S)
SHELL_BLOCKS = {"", "bash", "sh", "shell", "console"}
# A code span may wrap onto the next line of its paragraph, not across a blank line.
INLINE_CODE = re.compile(r"`((?:[^`\n]|\n(?![ \t]*\n))+)`")
COMMENT = re.compile(r"(?:^|(?<=\s))#")
TAVA = re.compile(r"(?<![\w./$-])tava\s+(?=\S)")
BENCH_RUN = re.compile(r"cli_run\.py\s.*?\s--(?:\s+|$)", re.S)
END = re.compile(r"[;)`]|&&|\s\|\s|\s#")
OPTION = re.compile(r"^(?:--[A-Za-z0-9][\w-]*\*?|-[A-Za-z])$")
PLACEHOLDER = re.compile(r"^(?:[A-Z][A-Z0-9_]*|<[^>]*>|\.\.\.|…)$")

ROOT_CONTEXT = click.Context(group, info_name="tava")


def _segments(text: str):
    """(offset, text, strict) of every piece of the page a command line may sit in."""
    prose = FENCED.sub(lambda m: re.sub(r"[^\n]", " ", m.group()), text)
    for span in INLINE_CODE.finditer(prose):
        yield span.start(1), span.group(1).replace("\\|", "|"), True
    for block in FENCED.finditer(text):
        shell = block.group(1).strip().lower() in SHELL_BLOCKS
        body = block.group(2).replace("\\\n", "  ")  # same length: offsets stay right
        offset = block.start(2)
        for line in body.split("\n"):
            comment = COMMENT.search(line)
            code_end = comment.start() if comment else len(line)
            if shell:
                yield offset, line[:code_end], True
            if comment:
                remark = line[code_end:]
                for span in INLINE_CODE.finditer(remark):
                    yield offset + code_end + span.start(1), span.group(1), True
                yield offset + code_end, INLINE_CODE.sub(lambda m: " " * len(m.group()), remark), False
            offset += len(line) + 1


def _cut(rest: str) -> str:
    end = END.search(rest)
    return rest[:end.start()] if end else rest


def _words(command_line: str) -> list[str]:
    try:
        return shlex.split(command_line)
    except ValueError:  # an unbalanced quote in prose
        return command_line.split()


def invocations(text: str) -> list[tuple[int, str, str]]:
    """(line, command line as written, what it runs: "tava" or "tava run" through cli_run.py)."""
    found = []
    for offset, segment, strict in _segments(text):
        for match in TAVA.finditer(segment):
            command_line = _cut(segment[match.start():])
            first = command_line.split()[1].split("|")[0] if len(command_line.split()) > 1 else ""
            if strict or first in COMMANDS:
                found.append((offset + match.start(), command_line, "tava"))
        for match in BENCH_RUN.finditer(segment):
            found.append((offset + match.start(), _cut(segment[match.start():]), "tava run"))
    return [(text.count("\n", 0, at) + 1, " ".join(line.split()), runs) for at, line, runs in sorted(found)]


def _option_names(word: str) -> list[str]:
    """``[--to`` -> --to, ``--opt=1`` -> --opt, ``--flag/--no-flag`` -> both."""
    word = word.strip("[](){},.;:").split("=")[0]
    return [part for part in word.split("/") if OPTION.match(part)]


def _takes(command: click.Command, option: str) -> bool:
    context = click.Context(command, parent=ROOT_CONTEXT, info_name=command.name)
    names = {name for param in command.get_params(context) if isinstance(param, click.Option)
             for name in (*param.opts, *param.secondary_opts)}
    if option.endswith("*"):
        return any(name.startswith(option[:-1]) for name in names)
    return option in names


def _subcommands(commands: list[click.Command], word: str, label: str) -> tuple[list[click.Command], str]:
    found = []
    for name in word.split("|"):
        for command in commands:
            sub = command.get_command(ROOT_CONTEXT, name)  # type: ignore[attr-defined]
            if sub is None:
                raise LookupError(f"no command `{label} {name}`")
            found.append(sub)
    return found, f"{label} {word}"


def command_errors(words: list[str], runs: str = "tava") -> list[str]:
    """What is wrong with ``words`` (a command line after ``tava``, or options after cli_run.py's
    ``--`` for ``runs="tava run"``): unknown commands and options."""
    commands: list[click.Command] = [group]
    label = "tava"
    errors = []
    if runs == "tava run":
        commands, label = _subcommands(commands, "run", label)
    for word in words:
        if word == "--":
            break
        if word.startswith("-") and (names := _option_names(word)):
            errors += [f"`{label}` takes no {name}" for name in names
                       if not any(_takes(command, name) for command in commands)]
        elif runs == "tava" and all(isinstance(command, click.Group) for command in commands):
            word = word.strip("[](),")
            if PLACEHOLDER.match(word) or not word:
                break  # `tava CMD --help`: which command is not said
            try:
                commands, label = _subcommands(commands, word, label)
            except LookupError as missing:
                return errors + [str(missing)]
    return errors


def page_errors(text: str, page: str = "page.md") -> list[str]:
    errors = []
    for line, command_line, runs in invocations(text):
        words = _words(command_line)
        words = words[1:] if runs == "tava" else words[words.index("--") + 1:]
        errors += [f"{page}:{line}: {command_line!r}: {error}" for error in command_errors(words, runs)]
    return errors


def test_every_documented_tava_command_line_is_real():
    lines = [found for page in PAGES for found in invocations(page.read_text())]
    assert len(lines) >= 150 and any(runs == "tava run" for *_, runs in lines), "the command lines were not found"
    errors = [error for page in PAGES for error in page_errors(page.read_text(), str(page.relative_to(PROJECT)))]
    assert errors == []


def test_the_parser_reads_what_the_docs_write():
    page = ("Prose `tava run --blend-static` and `tava run --no-blend-static`, a span that wraps `tava evaluate\n"
            "--dataset D --router DIR`, `tava --help`, `tava CMD --help`, `tava registry list|show`.\n\n"
            "| `tava distill --student transformer\\|static` | `tava data spans NAME --views 2` |\n\n"
            "```bash\n"
            "tava index --vectors DIR --factory \"HNSW32,Flat\" --nprobe=16   # then `tava export --model DIR`\n"
            "tava adapt --student-vectors A \\\n    --teacher-vectors B; tava rollback adapters nightly [--to 1]\n"
            "make demo   # tava makes it; the vectors tava embed printed\n"
            "```\n\n"
            "```python\nx = 1  # (tava blend --members DIR)\n```\n\n"
            "`python bench/cli_run.py --phase dev --tag t -- --teacher all-mpnet-base-v2 --unlabeled generic`\n")
    assert [(line, runs) for line, _, runs in invocations(page)] == [
        (1, "tava"), (1, "tava"), (1, "tava"), (2, "tava"), (2, "tava"), (2, "tava"), (4, "tava"), (4, "tava"),
        (7, "tava"), (7, "tava"), (8, "tava"), (9, "tava"), (10, "tava"), (14, "tava"), (17, "tava run")]
    assert page_errors(page) == []


@pytest.mark.parametrize("line, error", [
    ("`tava run --blend-static --no-such-option`", "`tava run` takes no --no-such-option"),
    ("`tava run --no-such-option=3`", "`tava run` takes no --no-such-option"),
    ("`tava data spans NAME --no-such-option 2`", "`tava data spans` takes no --no-such-option"),
    ("`tava no-such-command --help`", "no command `tava no-such-command`"),
    ("`tava data no-such-sub`", "no command `tava data no-such-sub`"),
    ("`tava --no-such-option`", "`tava` takes no --no-such-option"),
    ("```bash\ntava embed --dataset D \\\n  --no-such-option X   # comment\n```", "`tava embed` takes no --no-such-option"),
    ("`bench/cli_run.py --tag t -- --unlabeled generic --no-such-option`", "`tava run` takes no --no-such-option"),
])
def test_a_made_up_command_or_option_is_reported(line, error):
    errors = page_errors(f"Some text.\n\n{line}\n")
    at = 3 + line[:re.search(r"tava |cli_run", line).start()].count("\n")  # the command's line in the page
    assert len(errors) == 1 and errors[0].startswith(f"page.md:{at}: ") and errors[0].endswith(error), errors


def test_a_stale_line_copied_from_the_docs_fails(tmp_path):
    real = next(line for line in (PROJECT / "docs" / "pipeline.md").read_text().splitlines()
                if line.startswith("tava index --vectors DIR"))
    page = tmp_path / "page.md"
    page.write_text(f"```bash\n{real}\n{real.replace('--nprobe', '--no-such-option')}\n```\n")
    assert [error.split(": ", 2)[-1] for error in page_errors(page.read_text())] == [
        "`tava index` takes no --no-such-option"]
