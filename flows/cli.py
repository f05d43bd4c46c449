"""The `tava` command line. Commands are loaded lazily so `tava --help` stays fast.

Every command's options are generated from the pydantic config model its flow takes
(``config_options``), so the CLI, config files and the Prefect UI forms share one definition.
"""
from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import sys
import threading
import time
import types
import typing
from pathlib import Path
from typing import Any, Callable, Literal, Optional, get_args, get_origin

import click
from pydantic import BaseModel

from tava_core.errors import TavaError

# command -> "module:attribute" of a click command; a module not present yet is simply not listed.
# Command modules import no Prefect: inputs are checked before any flow module loads (see
# flows/commands/__init__.py).
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("flows.commands.pipeline:cli", "Run the whole pipeline on the built-in data (the README's main command)."),
    "run": ("flows.commands.pipeline:run_cli", "Run the whole pipeline with your settings (options and/or `--config FILE`)."),
    "ingest": ("flows.commands.ingest:cli", "Read a corpus (BEIR, JSONL, Parquet, CSV/TSV, .txt folder) into Parquet shards."),
    "data": ("flows.commands.ingest:data_cli", "Built-in and downloadable datasets."),
    "embed": ("flows.commands.embed:cli", "Embed a dataset's shards with an encoder into vector shards (cached)."),
    "distill": ("flows.commands.distill:cli", "Stage A: distil the teacher into a small student."),
    "adapt": ("flows.commands.adapt:cli", "Stage B: train an adapter from student space into teacher space."),
    "index": ("flows.commands.index:cli", "Build (or roll back) a FAISS index from vector shards."),
    "backfill": ("flows.commands.backfill:cli", "Re-embed a corpus into a LanceDB table (or roll it back)."),
    "evaluate": ("flows.commands.evaluate:cli", "BEIR retrieval evaluation through mteb."),
    "judge": ("flows.commands.evaluate:judge_cli", "Let the teacher judge a corpus without qrels (its own top 10) for `tava evaluate --judgements`."),
    "compress": ("flows.commands.compress:cli", "Learn projections to fewer dimensions (DIVE) beside PCA, truncation and adaptor baselines."),
    "refresh": ("flows.commands.refresh:cli", "Nightly adapter refresh: train on new texts, promote only if not worse."),
    "calibrate-router": ("flows.commands.route:cli", "Calibrate a confidence router: the student answers, the teacher takes the least confident queries."),
    "diagnose": ("flows.commands.diagnose:cli", "Manifold diagnostics: k-NN overlap and tangent-space angles, student vs teacher."),
    "search": ("flows.commands.search:cli", "Search a published index with query texts (top k ids, scores, texts)."),
    "translate": ("flows.commands.translate:cli", "Move stored vectors (shards or a LanceDB table) into another model's space with an adapter."),
    "registry": ("flows.registry:registry_cli", "List and inspect versioned artifacts (students, adapters, indexes)."),
    "rollback": ("flows.registry:rollback_cli", "Point an artifact's `current` back at an earlier version."),
    "blend": ("flows.commands.blend:cli", "Blend students of one teacher (e.g. transformer + adapter, static) into one query encoder."),
    "export": ("flows.commands.export:cli", "Export a query encoder (student + adapter) as one ONNX file, fp32 or int8."),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        present = []
        for name, (target, _) in COMMANDS.items():
            module = target.split(":")[0]
            if importlib.util.find_spec(module) is not None:
                present.append(name)
        return sorted(present)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module_name, attr = COMMANDS[name][0].split(":")
        if importlib.util.find_spec(module_name) is None:
            return None
        return getattr(importlib.import_module(module_name), attr)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # Short help from the table above, without importing every flow module.
        rows = [(name, COMMANDS[name][1]) for name in self.list_commands(ctx)]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


# ------------------------------------------------------------------ pydantic -> click options

def _unwrap_optional(annotation: Any) -> Any:
    if get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def _click_type(annotation: Any) -> tuple[Any, bool]:
    """(click type, is_multiple) for a pydantic field annotation."""
    annotation = _unwrap_optional(annotation)
    origin = get_origin(annotation)
    if origin is Literal:
        return click.Choice([str(a) for a in get_args(annotation)]), False
    if origin in (list, tuple, typing.List):
        inner, _ = _click_type(get_args(annotation)[0]) if get_args(annotation) else (str, False)
        return inner, True
    if annotation in (int, float, str, bool):
        return annotation, False
    if annotation is Path:
        return click.Path(path_type=str), False
    return str, False


def _iter_fields(model: type[BaseModel], prefix: str = ""):
    for name, field in model.model_fields.items():
        annotation = _unwrap_optional(field.annotation)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            yield from _iter_fields(annotation, prefix=f"{prefix}{name}.")
        else:
            yield f"{prefix}{name}", field


def _dotted(instance: BaseModel, dotted: str) -> Any:
    value: Any = instance
    for part in dotted.split("."):
        value = getattr(value, part, None)
    return value


class ConfigOption(click.Option):
    """An option made from a config field; ``section`` is the ``--help`` heading it is listed under."""

    def __init__(self, *args: Any, section: Optional[str] = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.section = section


class ConfigCommand(click.Command):
    """A command whose ``--help`` lists a nested config's options under a heading of their own (Stage A's
    ``--distill-*``, Stage B's ``--adapter-*``, ...): ``tava run --help`` has ~180 options, unreadable as one
    list. Every command built with ``config_options`` uses it (a test in ``tests/flows/test_cli_manners.py``)."""

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        groups: dict[str, list[tuple[str, str]]] = {"Options": []}
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is not None:
                groups.setdefault(getattr(param, "section", None) or "Options", []).append(record)
        for title, rows in groups.items():
            if rows:
                with formatter.section(title):
                    formatter.write_dl(rows)


def _section(model: type[BaseModel], dotted: str) -> Optional[str]:
    """The ``--help`` heading of a nested field: its config's own description up to the first '.' or ':'
    ("Stage A (student)"), and the options' common prefix. None for a top-level field."""
    if "." not in dotted:
        return None
    head = dotted.split(".")[0]
    description = model.model_fields[head].description or head.replace("_", " ").capitalize()
    title = description.split(". ")[0].split(":")[0].rstrip(".")
    return f"{title} (--{head.replace('_', '-')}-*)"


def _parent_unset(model: type[BaseModel], dotted: str, shown: Optional[BaseModel]) -> bool:
    """The nested config ``dotted`` belongs to is optional and unset by default (``evaluate --student``)."""
    head = dotted.split(".")[0]
    if "." not in dotted or head not in model.model_fields:
        return False
    field = model.model_fields[head]
    value = getattr(shown, head) if shown is not None else (None if field.is_required() else field.get_default(
        call_default_factory=True))
    return value is None


def config_options(model: type[BaseModel], *, exclude: tuple[str, ...] = (),
                   defaults: Optional[dict[str, Any]] = None) -> Callable:
    """Decorate a click command with one option per field of ``model`` (nested models flattened:
    ``encoder.model`` becomes ``--encoder-model``; an EncoderSpec's ``model`` also answers to
    ``--encoder``) plus ``--config FILE`` (YAML/TOML). Explicit options override the file.
    ``defaults`` are the command's own (those it passes to ``build_config``): ``--help`` shows the
    values the model takes under them (a preset's steps, not the bare field default)."""
    shown = model.model_validate(defaults) if defaults else None

    def decorate(func: Callable) -> Callable:
        for dotted, field in reversed(list(_iter_fields(model))):
            parts = dotted.split(".")
            if any(".".join(parts[:depth]) in exclude for depth in range(1, len(parts) + 1)):
                continue  # the field, or a nested config it belongs to, is excluded
            flag = "--" + dotted.replace(".", "-").replace("_", "-")
            names = [flag]
            if dotted.endswith(".model") and dotted.count(".") == 1:
                names.insert(0, "--" + dotted.split(".")[0].replace("_", "-"))
            param = "opt__" + dotted.replace(".", "__")
            ctype, multiple = _click_type(field.annotation)
            default = None if field.is_required() else field.get_default(call_default_factory=True)
            if shown is not None and not field.is_required():
                default = _dotted(shown, dotted)
            if dotted.endswith(".model") and _parent_unset(model, dotted, shown):
                default = None   # an optional encoder left out has no model: not the field's own default (the teacher)
            help_text = field.description or ""   # click prints help as written (no %-formatting)
            section = _section(model, dotted)
            if ctype is bool:
                opt = click.option(f"{flag}/--no-{flag[2:]}", param, default=default, show_default=True,
                                   help=help_text, cls=ConfigOption, section=section)
            else:
                opt = click.option(*names, param, type=ctype, multiple=multiple, cls=ConfigOption, section=section,
                                   default=tuple(default) if multiple and default else default,
                                   required=False, show_default=default not in (None, "", [], ()),
                                   help=help_text + (" [required]" if field.is_required() else ""))
            func = opt(func)
        func = click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False),
                            help="YAML or TOML file with these options (command-line options win).")(func)
        return func
    return decorate


def build_config(model: type[BaseModel], ctx: click.Context, params: dict[str, Any],
                 defaults: Optional[dict[str, Any]] = None) -> BaseModel:
    """The validated config: the command's own ``defaults``, then file values, then options the user
    actually gave."""
    from tava_core.config import load_config_file

    data: dict[str, Any] = dict(defaults or {})
    if params.get("config_file"):
        data.update(load_config_file(params["config_file"]))
    for key, value in params.items():
        if not key.startswith("opt__"):
            continue
        # Only what the user typed: the model fills its own defaults (click's are for --help), and
        # an optional nested config (say, a student encoder) stays unset unless named.
        if ctx.get_parameter_source(key) in (click.core.ParameterSource.DEFAULT, None):
            continue
        parts = key[len("opt__"):].split("__")
        target = data
        for part in parts[:-1]:
            target = target.setdefault(part, {})
        target[parts[-1]] = list(value) if isinstance(value, tuple) else value
    try:
        return model.model_validate(data)
    except Exception as exc:  # pydantic.ValidationError: list every bad field, in CLI terms
        from pydantic import ValidationError

        if not isinstance(exc, ValidationError):
            raise
        lines = []
        for err in exc.errors():
            loc = "-".join(str(p) for p in err["loc"]).replace("_", "-")
            message = str(err["msg"]).removeprefix("Value error, ")
            # a rule across options (a model validator) has no location: its message names the options
            lines.append(f"  --{loc}: {message}" if loc else f"  {message}")
        raise click.UsageError("invalid options:\n" + "\n".join(lines)) from None


def echo_record(record: Any) -> None:
    """Print a flow's small result record as JSON (what scripts read)."""
    import json

    if isinstance(record, BaseModel):
        record = record.model_dump(mode="json")
    click.echo(json.dumps(record, indent=2, default=str))


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--home", envvar="TAVA_HOME", default=None, type=click.Path(file_okay=False),
              help="tava home directory for data, vectors, artifacts and Prefect state "
                   "[default: $TAVA_HOME, else ./.tava]. A new home is created, inside an existing folder.")
@click.version_option(package_name="tava")
def group(home: str | None) -> None:
    """tava: compress text-embedding models without labels.

    Every command runs a Prefect flow (no server needed: an ephemeral one starts by itself)
    and keeps all state under the tava home directory.
    """
    from ._prefect import configure_environment

    if home is not None:
        _check_new_home(Path(home).expanduser())
    # An explicit --home must move Prefect's state too, even though importing `flows` already
    # pointed Prefect at the default home.
    configure_environment(home, override=home is not None)


def _check_new_home(home: Path) -> None:
    """A home that does not exist is made, but only inside a folder that does: a mistyped --home or
    TAVA_HOME (``/nope/home``) was silently created, Prefect state and all, and read as an empty registry."""
    if home.exists() or home.parent.is_dir():
        return
    raise click.UsageError(f"tava home {home} does not exist, nor does the folder {home.parent} it would go in "
                           f"(a typo in --home or TAVA_HOME?); to start a new home there: mkdir -p {home}")


class HideTavaErrorTracebacks(logging.Filter):
    """A TavaError's message already says what is wrong, where and how to fix it: Prefect's
    log lines keep that message but drop the traceback that would bury it, and say it once. The same
    error, re-raised through each enclosing (sub)flow, was logged at every level: four ERROR lines, one
    "Finished in state Failed" among them, before the command's own `error:` line. One filter serves
    every Prefect logger of the command (``main``)."""

    def __init__(self) -> None:
        super().__init__()
        self.told: list[str] = []   # the errors logged so far, by the start of their message

    @staticmethod
    def _key(error: TavaError) -> str:
        # Prefect quotes the message in reprs ("InputError('...')"): the part before any quote or backslash
        text = str(error)
        return text[:min([60, *(i for i in (text.find("'"), text.find('"'), text.find("\\")) if i > 0)])]

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, TavaError):
            record.exc_info = None
            record.exc_text = None
            key = self._key(error)
            if key in self.told:
                return False
            self.told.append(key)
            return True
        if record.levelno >= logging.ERROR and self.told:
            message = record.getMessage()
            return not any(key and key in message for key in self.told)
        return True


def main(argv: list[str] | None = None) -> None:
    hide = HideTavaErrorTracebacks()
    for name in ("prefect.flow_runs", "prefect.task_runs"):
        logging.getLogger(name).addFilter(hide)
    try:
        group.main(args=argv, prog_name="tava", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except TavaError as exc:
        click.secho(f"error: {exc}", fg="red", err=True)
        sys.exit(2)
    except BaseException as exc:  # Prefect wraps task failures; show tava's own message if inside
        cause = exc
        while cause is not None and not isinstance(cause, TavaError):
            cause = cause.__cause__ or cause.__context__
        if isinstance(cause, TavaError):
            click.secho(f"error: {cause}", fg="red", err=True)
            sys.exit(2)
        raise


# After the command's work ends, the process still drains Prefect's senders and joins its threads.
# That takes seconds; a thread stuck there (seen once after SIGTERM: Prefect's exit drain waiting on
# an event loop blocked in tqdm's process-wide lock) would keep a finished command alive for ever.
EXIT_GRACE_SECONDS = 30.0


def _exit_deadline(code: int, seconds: float) -> None:
    """End the process with ``code`` if it is still alive ``seconds`` from now (a daemon thread: it runs
    on while the interpreter shuts down, and does not itself keep the process alive)."""
    def expire() -> None:
        time.sleep(seconds)
        sys.stderr.write(f"tava: still shutting down {seconds:.0f} s after the command ended (a background "
                         f"thread did not finish); exiting with {code}\n")
        sys.stderr.flush()
        os._exit(code)

    threading.Thread(target=expire, name="tava-exit-deadline", daemon=True).start()


def console() -> None:
    """The `tava` command: ``main`` with an exit deadline, whatever it ends with. (Tests call ``main``
    in their own process, where a deadline must not end pytest.)"""
    code = 1
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        raise
    except KeyboardInterrupt:
        code = 130
        raise
    except BaseException as exc:   # Prefect's TerminationSignal carries the signal number
        code = 128 + int(exc.signal) if isinstance(getattr(exc, "signal", None), int) else 1
        raise
    finally:
        _exit_deadline(code, EXIT_GRACE_SECONDS)


if __name__ == "__main__":
    console()
