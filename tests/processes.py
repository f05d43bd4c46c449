"""Process-tree helpers for the tests and benches that stop a `tava` command (kill -9, SIGTERM, Ctrl-C)
and check what it leaves running: plain functions over /proc, no fixtures."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

# ~256 tokens: a shard of 1,200 such texts is minutes of encoding on 2 cores.
LONG_TEXT = " ".join(["retrieval embedding vector teacher student adapter corpus query document index"] * 26)
# how -> (signal, sent to the whole process group)
SIGNALS = {"sigterm-to-command": (signal.SIGTERM, False), "ctrl-c-to-group": (signal.SIGINT, True)}


def descendants(pid: int) -> list[int]:
    """Every process under ``pid``, from /proc."""
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
            tree.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in tree.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has ended; only its exit status waits to be collected


def survivors(pids: list[int], within: float = 30) -> list[int]:
    """The ``pids`` still alive ``within`` seconds from now (or when all have ended, sooner)."""
    deadline = time.time() + within
    while [pid for pid in pids if alive(pid)] and time.time() < deadline:
        time.sleep(0.2)
    return [pid for pid in pids if alive(pid)]


def kill_what_is_left(proc: subprocess.Popen, pids: list[int]) -> None:
    """Whatever a failed assertion reports must not outlive the test."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    for pid in pids:
        if alive(pid):
            os.kill(pid, signal.SIGKILL)


def terminal_sigint() -> None:
    """In the child: Ctrl-C's default action, as a terminal's foreground job has it. A job started in the
    background (`cmd &`, nohup) inherits SIGINT ignored, and Python then never raises KeyboardInterrupt."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


# Into a log file a bar draws a frame every 30 s (tava_core.progress); the helpers below read the first batch
# off the bar, so the processes they watch draw every frame
EVERY_FRAME = {"TQDM_MININTERVAL": "0"}


def wait_for_first_batch(proc: subprocess.Popen, log: Path, timeout: float = 900) -> None:
    """Until the output in ``log`` shows the long shard's first batch encoded ("16/1200"); raises
    RuntimeError, with the output's tail, if ``proc`` ends or ``timeout`` passes first."""
    deadline = time.time() + timeout
    while "16/1200" not in log.read_text(errors="replace"):
        if proc.poll() is not None or time.time() > deadline:
            raise RuntimeError(f"encoding did not start:\n{log.read_text(errors='replace')[-3000:]}")
        time.sleep(0.2)


def signal_busy_embed(cwd: Path, env: dict[str, str], home: Path, how: str,
                      survivors_within: float = 30) -> dict[str, Any]:
    """`tava embed` (run from ``cwd``) of one shard of 1,200 long texts, signalled ``how`` (a key of ``SIGNALS``)
    once the shard's first batch is done. Returns the seconds from the signal to the exit, the exit code, the
    output, its former descendants alive ``survivors_within`` seconds later, and the vector shards written."""
    from helpers import write_dataset

    write_dataset(home, "long", {"texts": [f"{LONG_TEXT} #{i}" for i in range(1200)]}, shard_size=1200)
    out = home / "embed.log"
    with out.open("w") as sink:
        proc = subprocess.Popen([sys.executable, "-m", "flows.cli", "embed", "--dataset", "long", "--encoder",
                                 "all-MiniLM-L6-v2", "--encoder-batch-size", "16"], cwd=cwd, env={**env, **EVERY_FRAME},
                                stdout=sink,
                                stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=terminal_sigint)
    children: list[int] = []
    try:
        wait_for_first_batch(proc, out)
        children = descendants(proc.pid)
        sig, to_group = SIGNALS[how]
        signalled = time.monotonic()
        (os.killpg if to_group else os.kill)(proc.pid, sig)
        exit_code = proc.wait(timeout=300)
        seconds = time.monotonic() - signalled
        left = survivors(children, survivors_within)
    finally:
        kill_what_is_left(proc, children)
    return {"seconds_to_exit": round(seconds, 2), "exit_code": exit_code, "output": out.read_text(errors="replace"),
            "survivors": left, "vector_shards_written": len(list((home / "vectors").rglob("shard-*.parquet")))}
