"""The command line as a new user meets it: options work alone and over a config file, mistakes
are reported before Prefect is imported or any server starts, a killed run leaves no process
behind, and cached work is told apart from computed work."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from helpers import synthetic_texts, write_dataset
from processes import descendants, kill_what_is_left, signal_busy_embed, survivors

PROJECT = Path(__file__).resolve().parents[2]

# Runs `tava ARGS...` with server start-up forbidden, then reports whether Prefect was imported.
_PROBE = """
import sys
import flows._server as server

def refuse(self):
    raise SystemExit("test: a Prefect server was started")

server.OwnedServer.launch = refuse
from flows.cli import main
try:
    main(sys.argv[1:])
finally:
    sys.stderr.write("\\nprefect imported: %s\\n" % ("prefect" in sys.modules))
"""


def _cli_env(home: Path, api_url: str | None = None) -> dict[str, str]:
    """A user's environment: a fresh Prefect home and, unless ``api_url``, no server (the CLI starts
    a temporary one)."""
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env.update({"TAVA_HOME": str(home), "PREFECT_HOME": str(home / "prefect"),
                "PREFECT_RESULTS_LOCAL_STORAGE_PATH": str(home / "prefect" / "results")})
    if api_url:
        env["PREFECT_API_URL"] = api_url
    return env


def _vector_dir(directory: Path, rows: int, dim: int = 8) -> Path:
    """A vector directory as `tava embed` writes it: one shard of seeded vectors and its manifest."""
    import numpy as np

    from tava_core.io import write_vector_shard
    from tava_core.manifest import ShardRecord, VectorManifest, save_manifest

    vectors = np.random.default_rng(0).normal(size=(rows, dim)).astype(np.float32)
    record = write_vector_shard(directory / "shard-00000.parquet", [f"d{i}" for i in range(rows)], vectors,
                                {"fingerprint": "f" * 24})
    save_manifest(directory, VectorManifest(dataset="few", collection="corpus", dim=dim, normalized=False,
                                            encoder={"name": "fake", "fingerprint": "f" * 24, "dim": dim},
                                            shards=[ShardRecord(path=record["path"], rows=rows,
                                                                sha256=record["sha256"])]))
    return directory


def _vector_file(path: Path, dim: int, *, fixed: bool) -> Path:
    """A store's export: id + vector rows (a fixed-size list column, or a plain list one)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    vectors = np.random.default_rng(0).normal(size=(3, dim)).astype(np.float32)
    column = (pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), dim) if fixed
              else pa.array(vectors.tolist(), pa.list_(pa.float32())))
    pq.write_table(pa.table({"id": ["1", "2", "3"], "vector": column}), path)
    return path


def _bad_inputs(tmp_path: Path, home: Path) -> dict[str, tuple[list[str], str]]:
    """case -> (argv, text the error must show)."""
    write_dataset(home, "small", {"texts": synthetic_texts(20)}, shard_size=10)
    unparseable = tmp_path / "broken.yaml"
    unparseable.write_text("dataset: [small\n")
    unknown_key = tmp_path / "typo.yaml"
    unknown_key.write_text(yaml.safe_dump({"dataset": "small", "encodr": {"model": "x"}}))
    no_text = tmp_path / "no_text.csv"
    no_text.write_text("id,body\n1,hello\n")
    few_vectors = _vector_dir(tmp_path / "few-vectors", rows=200)
    corpus = tmp_path / "texts.jsonl"
    corpus.write_text('{"id": "1", "text": "a passage"}\n')
    mpnet_like = _vector_file(tmp_path / "store-768.parquet", dim=768, fixed=True)   # a store of another model
    list_column = _vector_file(tmp_path / "store-16.parquet", dim=16, fixed=False)
    weightless_router = tmp_path / "weightless-router"
    weightless_router.mkdir()
    (weightless_router / "router.json").write_text("{}")
    return {
        "unknown dataset": (["embed", "--dataset", "nope"], "no ingested dataset named 'nope'"),
        "unknown collection": (["embed", "--dataset", "small", "--collections", "queries"], "no collection 'queries'"),
        "bad encoder path": (["embed", "--dataset", "small", "--encoder", str(tmp_path / "no-model")],
                             "--encoder: encoder not found"),
        "unparseable config": (["embed", "--config", str(unparseable)], "cannot parse config"),
        "unknown config key": (["embed", "--config", str(unknown_key)], "--encodr"),
        "missing source": (["ingest", str(tmp_path / "missing.jsonl")], "source not found"),
        "csv without the text column": (["ingest", str(no_text)], "no column 'text'"),
        "missing vectors": (["index", "--vectors", str(tmp_path / "vectors")], "vector directory not found"),
        "index with more IVF lists than vectors can train": (
            ["index", "--vectors", str(few_vectors), "--factory", "IVF64,Flat"], "at most 5 lists (e.g. 'IVF5,Flat')"),
        "backfill unknown dataset": (["backfill", "--dataset", "nope"], "no ingested dataset named 'nope'"),
        "run with a missing source, flags alone": (["run", "--source", str(tmp_path / "corpus")], "source not found"),
        "blend with a missing member": (["blend", "--members", str(tmp_path / "no-model"), "--members",
                                         "all-MiniLM-L6-v2"], "--members: encoder not found"),
        "blend with one weight for two members": (["blend", "--members", "all-MiniLM-L6-v2", "--members",
                                                   "all-MiniLM-L6-v2", "--weights", "1"], "one --weights per --members"),
        "spans of an unknown dataset": (["data", "spans", "nope"], "no ingested dataset named 'nope'"),
        "spans of a missing collection": (["data", "spans", "small", "--collections", "corpus"], "no collection 'corpus'"),
        "refresh with a missing drop zone": (["refresh", "--drop-zone", str(tmp_path / "incoming")],
                                             "drop zone folder does not exist"),
        "calibrate-router with a reference that holds no texts": (
            ["calibrate-router", "--student", "all-MiniLM-L6-v2", "--dataset", "small", "--reference", "passages"],
            "--reference 'passages': no texts there"),
        "evaluate with a folder that is no router": (["evaluate", "--dataset", "small", "--router", str(tmp_path)],
                                                     "--router: not a router directory"),
        "run with another model's document vectors": (
            ["run", "--source", str(corpus), "--teacher-document-vectors", str(mpnet_like)],
            "768-d vectors, but the encoder all-MiniLM-L6-v2 makes 384-d ones; all-mpnet-base-v2 makes 768-d"),
        "compress to more dims than the encoder makes": (["compress", "--dataset", "small", "--dims", "512"],
                                                         "target dims [512] are not below the vectors' 384"),
        "translate with both --vectors and --table": (["translate", "--adapter", str(tmp_path), "--vectors",
                                                       str(few_vectors), "--table", "docs"], "give exactly one of"),
        "translate with a folder that is no adapter": (["translate", "--adapter", str(few_vectors), "--vectors",
                                                        str(few_vectors)], "--adapter: neither an adapter nor a compressor directory"),
        "run with a warm-up as long as its steps": (
            ["run", "--source", str(corpus), "--distill-steps", "20", "--distill-warmup-steps", "30"],
            "lower --distill-warmup-steps, or raise --distill-steps"),
        "evaluate with a router folder without its weights": (
            ["evaluate", "--dataset", "small", "--router", str(weightless_router)], "(no router.safetensors)"),
        "embed importing vectors without naming the collection": (
            ["embed", "--dataset", "small", "--import-vectors", str(list_column)],
            "invalid options:\n  --import-vectors fills one collection: name it with --collections (`texts`"),
        "embed importing vectors of another dim": (
            ["embed", "--dataset", "small", "--collections", "texts", "--import-vectors", str(list_column)],
            "--import-vectors: 16-d vectors, but the encoder all-MiniLM-L6-v2 makes 384-d ones"),
    }


BAD_CASES = ["unknown dataset", "unknown collection", "bad encoder path", "unparseable config", "unknown config key",
             "missing source", "csv without the text column", "missing vectors",
             "index with more IVF lists than vectors can train", "backfill unknown dataset",
             "run with a missing source, flags alone", "blend with a missing member",
             "blend with one weight for two members", "spans of an unknown dataset", "spans of a missing collection",
             "refresh with a missing drop zone", "calibrate-router with a reference that holds no texts",
             "evaluate with a folder that is no router", "run with another model's document vectors",
             "embed importing vectors of another dim", "compress to more dims than the encoder makes",
             "translate with both --vectors and --table", "translate with a folder that is no adapter",
             "run with a warm-up as long as its steps", "evaluate with a router folder without its weights",
             "embed importing vectors without naming the collection"]


@pytest.mark.parametrize("case", BAD_CASES)
def test_bad_input_is_reported_before_prefect_or_a_server(case, tmp_path, tava_home):
    argv, expected = _bad_inputs(tmp_path, tava_home)[case]
    done = subprocess.run([sys.executable, "-c", _PROBE, *argv], cwd=PROJECT, env=_cli_env(tava_home),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr[-2000:]
    assert expected in done.stderr, done.stderr[-2000:]
    assert "a Prefect server was started" not in done.stderr
    assert "prefect imported: False" in done.stderr, done.stderr[-2000:]


# ------------------------------------------------------------------------------ tava run options

def test_run_takes_options_alone_and_over_a_config_file(tmp_path, monkeypatch):
    from click.testing import CliRunner

    import flows.commands.pipeline as pipeline_command
    from flows.cli import group

    corpus = tmp_path / "texts.jsonl"
    corpus.write_text('{"id": "1", "text": "a passage"}\n')
    ran = []
    monkeypatch.setattr(pipeline_command, "run_flow", lambda target, config, home: ran.append(config) or _Stop())
    monkeypatch.setattr(pipeline_command, "_report", lambda result, start, home: None)

    result = CliRunner().invoke(group, ["--home", str(tmp_path / "home"), "run", "--source", str(corpus),
                                        "--distill-steps", "40"])
    assert result.exit_code == 0, result.output
    assert ran[-1].source == str(corpus) and ran[-1].distill.steps == 40
    # the standard recipe's stage defaults stay underneath (not the demo's, not the bare stages')
    assert ran[-1].preset == "standard" and ran[-1].distill.name == "student" and ran[-1].distill.layers is None
    assert ran[-1].distill.lr == 2e-4 and ran[-1].adapter.max_steps == 3000
    result = CliRunner().invoke(group, ["--home", str(tmp_path / "home"), "run", "--source", str(corpus),
                                        "--preset", "demo"])
    assert result.exit_code == 0, result.output
    assert ran[-1].distill.name == "demo-student" and ran[-1].distill.steps == 300 and ran[-1].distill.layers == [0, 5]
    ran.pop()

    config_file = tmp_path / "pipeline.yaml"
    config_file.write_text(yaml.safe_dump({"source": str(corpus), "shard_size": 7,
                                           "distill": {"steps": 900, "batch_size": 16}}))
    result = CliRunner().invoke(group, ["--home", str(tmp_path / "home"), "run", "--config", str(config_file),
                                        "--distill-steps", "40"])
    assert result.exit_code == 0, result.output
    assert ran[-1].distill.steps == 40 and ran[-1].distill.batch_size == 16 and ran[-1].shard_size == 7

    result = CliRunner().invoke(group, ["--home", str(tmp_path / "home"), "run"])
    assert result.exit_code == 2 and "--config FILE" in result.output and len(ran) == 2


@pytest.mark.parametrize("command, steps, lr, layers", [("run", "1000", "0.0002", None),
                                                         ("demo", "300", "0.0005", "0, 5")])
def test_help_shows_the_defaults_the_command_runs_with(command, steps, lr, layers):
    # --help once showed the bare Stage A defaults (2000 steps, layers 0 5) under both commands,
    # neither of which runs with them
    import re

    from click.testing import CliRunner

    from flows.cli import group

    result = CliRunner().invoke(group, [command, "--help"])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())         # help is wrapped: one line, single spaces
    option = r"(--[a-z-]+) (?:[A-Z]+|\[[a-z|]+\])"  # an option and its type, then text up to its default
    shown = dict(re.findall(option + r"(?:(?! --[a-z]).)*?\[default: ([^\]]+)\]", text))
    assert shown["--distill-steps"] == steps and shown["--distill-lr"] == lr
    # run's layers follow the teacher's depth (no single default to show; the option's help says how)
    assert shown.get("--distill-layers") == layers and shown["--preset"] == ("standard" if command == "run" else "demo")


def test_help_shows_no_model_for_an_optional_encoder_left_out():
    # `tava evaluate --help` showed the teacher's name as the default of the optional --student and --adapted

    from click.testing import CliRunner

    from flows.cli import group

    result = CliRunner().invoke(group, ["evaluate", "--help"])
    assert result.exit_code == 0, result.output
    blocks: dict[str, str] = {}       # each option's help, from its line to the next option's
    for line in result.output.splitlines():
        if line.startswith("  -"):
            option = line.split()[0].rstrip(",")
            blocks[option] = line
        elif line.startswith(" ") and blocks:
            blocks[option] += " " + line.strip()
    assert "[default: all-MiniLM-L6-v2]" in blocks["--teacher"]
    assert "[default:" not in blocks["--student"] and "[default:" not in blocks["--adapted"], blocks["--student"]
    text = " ".join(result.output.split())
    assert "--student-batch-size INTEGER" in text     # the group's other options keep theirs


def test_help_lists_each_stage_s_options_under_its_own_heading():
    """`tava run --help` has ~180 options; as one list a user could not find Stage B's among Stage A's.
    Each nested config's options sit under a heading of their own, and every command whose options come
    from a config groups them so."""
    import click
    from click.testing import CliRunner

    from flows.cli import COMMANDS, ConfigCommand, ConfigOption, LazyGroup, group

    result = CliRunner().invoke(group, ["run", "--help"])
    assert result.exit_code == 0, result.output
    headings = [line for line in result.output.splitlines() if line and not line[0].isspace() and line.endswith(":")]
    assert headings == ["Options:", "The teacher encoder (--teacher-*):", "Stage A (student) (--distill-*):",
                        "Stage B (adapter) (--adapter-*):", "Confidence router (--router-*):"], headings
    listed_under: dict[str, str] = {}
    heading = ""
    for line in result.output.splitlines():
        if line in headings:
            heading = line
        elif line.startswith("  -"):
            listed_under[line.split()[0].rstrip(",")] = heading
    assert listed_under["--distill-steps"] == "Stage A (student) (--distill-*):"
    assert listed_under["--adapter-max-steps"] == "Stage B (adapter) (--adapter-*):"
    assert listed_under["--source"] == listed_under["--config"] == listed_under["-h"] == "Options:"
    for option, heading in listed_under.items():   # every --distill-*, --adapter-*, --router-* in its section
        prefix = option[2:].split("-")[0]
        if prefix in ("distill", "adapter", "router") and option.count("-") > 2:
            assert heading.endswith(f"(--{prefix}-*):"), (option, heading)
    ctx = click.Context(group)
    for name in COMMANDS:
        command = LazyGroup.get_command(group, ctx, name)  # type: ignore[arg-type]
        if command is not None and any(isinstance(p, ConfigOption) for p in command.params):
            assert isinstance(command, ConfigCommand), f"tava {name}: build it with @click.command(cls=ConfigCommand)"


def test_a_tava_error_is_logged_once_without_its_traceback():
    """The same error re-raised through a task and two enclosing flows was logged at each (four ERROR lines,
    tracebacks hidden) before the command's own `error:` line; now once. Another error still shows."""
    import logging

    from flows.cli import HideTavaErrorTracebacks
    from tava_core.errors import InputError

    def record(logger: str, message: str, error: BaseException | None = None) -> logging.LogRecord:
        exc_info = (type(error), error, None) if error is not None else None
        return logging.LogRecord(logger, logging.ERROR, __file__, 1, message, None, exc_info)

    bad = InputError("5183 of the collection's 5183 documents have no vector", path="/data/q.parquet")
    hide = HideTavaErrorTracebacks()
    task = record("prefect.task_runs", f"Task run failed with exception: {bad!r}", bad)
    assert hide.filter(task) and task.exc_info is None                     # said, without the traceback
    assert not hide.filter(record("prefect.task_runs",
                                  f"Finished in state Failed('Task run encountered an exception {bad}')"))
    assert not hide.filter(record("prefect.flow_runs", f"Encountered exception during execution: {bad!r}", bad))
    other = InputError("another mistake", path="/x")
    assert hide.filter(record("prefect.flow_runs", f"Encountered exception during execution: {other!r}", other))
    assert hide.filter(record("prefect.flow_runs", "a flow's own error line"))   # not a repeat: kept


class _Stop:
    """Stands in for a pipeline result (the flow is not run in this test)."""


# --------------------------------------------------------------------------- processes left behind

@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads the process tree from /proc")
def test_kill_9_of_embed_leaves_no_process_behind(tava_home, teacher_path):
    write_dataset(tava_home, "big", {"texts": synthetic_texts(600, seed=3)}, shard_size=30)
    cmd = [sys.executable, "-m", "flows.cli", "embed", "--dataset", "big", "--encoder", "all-MiniLM-L6-v2",
           "--encoder-batch-size", "16"]
    proc = subprocess.Popen(cmd, cwd=PROJECT, env=_cli_env(tava_home), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    vectors_root = tava_home / "vectors" / "big" / "texts"
    children: list[int] = []
    try:
        deadline = time.time() + 300
        while not list(vectors_root.glob("*/shard-*.parquet")):
            assert proc.poll() is None, "embed ended before it could be killed"
            assert time.time() < deadline, "no shard written within 300 s"
            time.sleep(0.2)
        children = descendants(proc.pid)
        assert children, "the run should have its Prefect server as a child"
        os.kill(proc.pid, signal.SIGKILL)  # the parent only, as the OOM killer does
        proc.wait()
        left = survivors(children)
    finally:
        kill_what_is_left(proc, children)
    assert left == [], f"processes outlived the killed run: {left}"


# A command stopped by a signal while a worker thread embeds a long shard: `kill PID` (SIGTERM to the command
# alone, as systemd or a job runner sends it) and Ctrl-C in a terminal (SIGINT to the whole process group, the
# Prefect server included unless it has its own session). Before session 38 the first waited for the shard in
# progress (65 s for 1,500 short texts), the second lost its server at once and ended 20 s later, unreported.


@pytest.mark.slow
@pytest.mark.parametrize("how", ["sigterm-to-command", "ctrl-c-to-group"])
def test_a_signalled_embed_ends_within_a_batch_and_reports(how, tava_home, teacher_path):
    # One shard of 1,200 texts of ~256 tokens: minutes of encoding here, so only stopping between batches
    # can end the command within the bound below.
    ended = signal_busy_embed(PROJECT, _cli_env(tava_home), tava_home, how)
    log = ended["output"]
    assert ended["seconds_to_exit"] < 15, f"ended {ended['seconds_to_exit']:.0f} s after the signal:\n{log[-2000:]}"
    assert ended["exit_code"] == (-signal.SIGTERM if how == "sigterm-to-command" else 130), log[-2000:]
    # The run was reported as it ended (its server was still up), not cut off with the server gone.
    assert "Finished in state Crashed" in log and "has stopped" not in log, log[-2000:]
    assert ended["survivors"] == [], f"processes outlived the signalled run: {ended['survivors']}"
    assert ended["vector_shards_written"] == 0, "a half-done shard was kept"


# A command whose owned server dies under it (what a signal to the whole process group does, e.g. from
# `timeout` or `pkill`): the stand-in server is a child that exits at once or is stopped by the command.
_WATCHED = """
import subprocess, sys, time
from pathlib import Path
import flows._server as server

owned = server.OwnedServer(Path(sys.argv[1]))
owned.process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(float(sys.argv[1]))".replace(
    "sys.argv[1]", sys.argv[2])])
owned.watch(grace=0.5)
if sys.argv[3] == "stop":
    owned.stop()             # the command stops its own server: it finishes normally
time.sleep(20)               # stands for a flow computing on after its server is gone
print("computed on")
"""


@pytest.mark.parametrize("ending", ["dies", "stop"])
def test_a_command_whose_server_dies_under_it_ends(tmp_path, ending):
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", _WATCHED, str(tmp_path), "0.2" if ending == "dies" else "60", ending],
                          cwd=PROJECT, capture_output=True, text=True, timeout=60)
    seconds = time.monotonic() - started
    if ending == "dies":
        assert proc.returncode == 1 and seconds < 15 and "computed on" not in proc.stdout
        assert "Prefect server this command started has stopped" in proc.stderr and "server.log" in proc.stderr
    else:
        assert proc.returncode == 0 and "computed on" in proc.stdout and seconds >= 20


# ------------------------------------------------------------------------ computed vs reused counts

@pytest.mark.slow
def test_embed_says_what_it_computed_and_what_it_reused(tava_home, tiny_model_dir, prefect_api_url):
    import json

    write_dataset(tava_home, "counts", {"texts": synthetic_texts(60, seed=5)}, shard_size=10)
    argv = [sys.executable, "-m", "flows.cli", "embed", "--dataset", "counts", "--encoder", str(tiny_model_dir)]
    env = _cli_env(tava_home, prefect_api_url)
    first = subprocess.run(argv, cwd=PROJECT, env=env, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr[-2000:]
    out_dir = next((tava_home / "vectors" / "counts" / "texts").iterdir())
    for shard in sorted(out_dir.glob("shard-*.parquet"))[:2]:  # two of six shards need redoing
        shard.unlink()
    second = subprocess.run(argv, cwd=PROJECT, env=env, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stderr[-2000:]
    [collection] = json.loads(second.stdout)["collections"]
    assert (collection["computed_shards"], collection["reused_shards"]) == (2, 4)
    assert (collection["computed_rows"], collection["reused_rows"]) == (20, 40) and collection["rows"] == 60
    # The runtime that encoded the two redone shards, as they record it (auto: onnx where it agrees, else torch).
    from tava_core.io import vector_shard_metadata

    redone = {vector_shard_metadata(p)["backend"] for p in sorted(out_dir.glob("shard-*.parquet"))[:2]}
    assert collection["backends"] == sorted(redone) and redone <= {"onnx", "torch"}
    assert json.loads(first.stdout)["collections"][0]["backends"] == collection["backends"]
    assert "texts: 2 shards computed (20 rows), 4 reused (40 rows)" in second.stderr


def run_probe(code: str) -> list[str]:
    """Run ``code`` in a fresh interpreter (nothing imported yet) and return the words it printed."""
    done = subprocess.run([sys.executable, "-c", code], cwd=PROJECT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.split()


def test_no_command_module_imports_prefect():
    """Every `tava` command can parse and check its options with Prefect still unimported."""
    probe = ("import sys\nfrom flows.cli import COMMANDS, group\nimport click\n"
             "ctx = click.Context(group)\n"
             "missing = [name for name in COMMANDS if group.get_command(ctx, name) is None]\n"
             "print(missing, 'prefect' in sys.modules)\n")
    assert run_probe(probe) == ["[]", "False"]


def test_configs_the_cli_checks_import_without_torch():
    """Every command's config (and the modules its checks use) loads without torch — seconds on a
    busy machine; a stage package's other exports load on first use and still all resolve."""
    probe = ("import sys\n"
             "import tava_core.embed, tava_core.vectorstore, tava_core.index, tava_core.ingest, tava_core.refresh\n"
             "import tava_core.evaluate.config, tava_core.distill.config, tava_core.adapter.config\n"
             "import tava_core.compress.config, flows.pipeline_config, flows.commands.checks\n"
             "print('torch' in sys.modules)\n"
             "import importlib\n"
             "for name in ('evaluate', 'distill', 'adapter', 'compress'):\n"
             "    package = importlib.import_module('tava_core.' + name)\n"
             "    exec(f'from tava_core.{name} import *')  # every listed name resolves\n"
             "    assert all(getattr(package, export) is not None for export in package.__all__), name\n"
             "print('resolved')\n")
    assert run_probe(probe) == ["False", "resolved"]


# A command whose work ends but leaves a non-daemon thread that never finishes: the interpreter
# would wait for it at exit for ever (as Prefect's exit drain did once, blocked behind tqdm's lock).
_STUCK_AT_EXIT = """
import sys, threading, time
import flows.cli as cli

def main(argv=None):
    threading.Thread(target=time.sleep, args=(120,), name="stuck").start()
    sys.exit(int(sys.argv[1]))

cli.main = main
cli.EXIT_GRACE_SECONDS = float(sys.argv[2])
cli.console()
"""


@pytest.mark.parametrize("code", [0, 2])
def test_the_command_ends_within_its_exit_deadline_with_its_own_code(code):
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-c", _STUCK_AT_EXIT, str(code), "1.5"], cwd=PROJECT, capture_output=True,
                          text=True, timeout=60)
    assert time.monotonic() - start < 30           # not the stuck thread's 120 s
    assert done.returncode == code
    assert "still shutting down 2 s after the command ended" in done.stderr


def test_a_command_that_ends_cleanly_is_not_cut_short():
    script = _STUCK_AT_EXIT.replace('threading.Thread(target=time.sleep, args=(120,), name="stuck").start()',
                                    'threading.Thread(target=time.sleep, args=(0.5,)).start()')
    done = subprocess.run([sys.executable, "-c", script, "3", "20"], cwd=PROJECT, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 3 and "still shutting down" not in done.stderr


def test_a_mistyped_home_is_refused_and_nothing_is_created(tmp_path, monkeypatch):
    """A home is created inside an existing folder, never with its parents: `--home /nope/home` (or such a
    TAVA_HOME) made /nope/home/prefect and listed an empty registry."""
    from click.testing import CliRunner

    from flows._prefect import prefect_environment
    from flows.cli import group
    from tava_core.home import TavaHome

    # the command points TAVA_HOME and Prefect at the home it runs in: put them back afterwards
    for key in ("TAVA_HOME", *prefect_environment(TavaHome(tmp_path))):
        if key in os.environ:
            monkeypatch.setenv(key, os.environ[key])
        else:
            monkeypatch.delenv(key, raising=False)
    typo = tmp_path / "nope" / "home"
    for args, env in ((["--home", str(typo)], {}), ([], {"TAVA_HOME": str(typo)})):
        result = CliRunner().invoke(group, [*args, "registry", "list"], env=env)
        assert result.exit_code == 2 and f"tava home {typo} does not exist" in result.output, result.output
        assert f"mkdir -p {typo}" in result.output
        assert not (tmp_path / "nope").exists()
    fresh = tmp_path / "home"                               # a new home in an existing folder: made as before
    result = CliRunner().invoke(group, ["--home", str(fresh), "registry", "list"])
    assert result.exit_code == 0 and "the registry is empty" in result.output and fresh.is_dir()


def test_library_info_lines_reach_the_console(tmp_path):
    """tava_core logs through `logging` alone; under the CLI's set-up its INFO lines (a resumed
    checkpoint, Stage A's fitted steps, an export's agreement) print beside Prefect's, where Python's
    default would drop everything under WARNING."""
    code = ("from flows._prefect import configure_environment; configure_environment(%r, override=True)\n"
            "from prefect.logging.configuration import setup_logging; setup_logging()\n"
            "import logging; logging.getLogger('tava_core.some_module').info('a line from the library')\n"
            % str(tmp_path / "home"))
    for level, shown in (("INFO", True), ("WARNING", False)):     # Prefect's level is the library's too
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                              cwd=Path(__file__).resolve().parents[2],
                              env={**os.environ, "PREFECT_LOGGING_LEVEL": level})
        assert done.returncode == 0, done.stderr[-2000:]
        said = re.search(r"\| INFO +\| tava_core\.some_module - a line from the library", done.stderr)
        assert bool(said) is shown, done.stderr[-2000:]


@pytest.mark.slow
def test_no_links_to_the_temporary_servers_ui(tmp_path):
    """With the temporary server, Prefect's "View at http://127.0.0.1:PORT/..." points at a page that is
    gone when the command ends: the CLI leaves the line out (the run's other lines stay)."""
    import numpy as np
    from adapter_helpers import write_vector_dir

    vectors = write_vector_dir(tmp_path / "vectors", [f"v{i}" for i in range(50)],
                               np.random.default_rng(0).standard_normal((50, 8)).astype(np.float32))
    home = tmp_path / "home"
    env = {**_cli_env(home), "PREFECT_LOGGING_LEVEL": "INFO"}
    done = subprocess.run([sys.executable, "-m", "flows.cli", "index", "--vectors", str(vectors), "--factory", "Flat"],
                          cwd=PROJECT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Beginning flow run" in done.stderr and "View at http" not in done.stderr, done.stderr[-2000:]
