"""One lock implementation for every piece of shared state (registry slots, LanceDB tables, vector
collections, index slots, dataset directories, the nightly refresh).

A lock is an exclusive ``fcntl.flock`` on a small lock file, so

- it works across the processes of one machine (and across machines only where the shared
  filesystem implements ``flock``; see docs/operations.md, "Runs that meet on shared state"),
- it dies with its process: the kernel drops a flock when the holder exits, even on ``kill -9``,
  so a crashed run never leaves a lock that blocks the next one (lock files are never deleted:
  deleting one while another process waits on it would let two holders in),
- it is re-entrant for the thread that holds it (a publish can call the slot functions that take
  the same lock), and exclusive between threads of one process (like ``threading.RLock``),
- the holder writes who it is into the lock file (pid, host, command, run label, start time), so a
  second run can say whom it waits for, or whom it refuses to run beside.

``timeout`` is the one rule: 0 refuses at once, > 0 waits that many seconds (logging the wait),
< 0 waits for ever. The error names the holder and how to wait (``--lock-timeout-seconds N``).
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import socket
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

from .errors import TavaError
from .manifest import now_iso

log = logging.getLogger(__name__)

# A label the caller may set (e.g. a flow run name) so a holder is recognisable beyond its pid.
RUN_LABEL_ENV = "TAVA_RUN_LABEL"
_WAIT_LOG_EVERY = 30.0  # seconds between "still waiting" log lines


class ResourceLockedError(TavaError):
    """Another run holds the lock of a shared resource (and the timeout ran out, or was 0)."""


@dataclass
class _Held:
    """This process's hold on one lock file: the open handle and how deep the owner re-entered."""

    owner: int  # thread ident
    depth: int
    handle: object  # the open file whose descriptor carries the flock


# lock file (resolved path) -> per-path thread gate and current hold. Guarded by _GUARD.
_GATES: dict[str, threading.Lock] = {}
_HELD: dict[str, _Held] = {}
_GUARD = threading.Lock()


def _forget_locks_in_child() -> None:
    """A forked child does not hold its parent's locks: forget them without unlocking (an unlock
    through the inherited descriptor would release the parent's lock), and close the inherited
    descriptors so the lock dies with the parent, not with its longest-lived child."""
    global _GUARD
    for held in _HELD.values():
        with contextlib.suppress(OSError):
            held.handle.close()  # type: ignore[attr-defined]
    _HELD.clear()
    _GATES.clear()
    _GUARD = threading.Lock()


os.register_at_fork(after_in_child=_forget_locks_in_child)


def holder_record() -> dict[str, object]:
    """Who this process is, as written into a lock file it holds."""
    command = " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]) if sys.argv and sys.argv[0] else "python"
    return {"pid": os.getpid(), "host": socket.gethostname(), "command": command[:300],
            "run": os.environ.get(RUN_LABEL_ENV, ""), "since": now_iso()}


def read_holder(path: str | Path) -> Optional[dict[str, object]]:
    """The holder a lock file names (None when empty or unreadable: free, or written just now)."""
    try:
        text = Path(path).read_text().strip()
    except OSError:
        return None
    if not text:
        return None
    try:
        data = json.loads(text)
    except ValueError:
        return {"pid": "?", "text": text}  # lock files written by older versions: "pid N since T"
    return data if isinstance(data, dict) else None


def describe_holder(holder: Optional[dict[str, object]]) -> str:
    if not holder:
        return "another process"
    if "text" in holder:
        return str(holder["text"])
    parts = [f"pid {holder.get('pid')} on {holder.get('host')}"]
    if holder.get("run"):
        parts.append(f"run {holder['run']}")
    if holder.get("command"):
        parts.append(f"`{holder['command']}`")
    return ", ".join(parts) + f" since {holder.get('since')}"


def _gate(key: str) -> threading.Lock:
    with _GUARD:
        return _GATES.setdefault(key, threading.Lock())


def _try_flock(handle) -> bool:
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError as exc:
        if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
            return False
        raise


def _locked_error(path: Path, what: str, timeout: float, holder: Optional[dict[str, object]]) -> ResourceLockedError:
    waited = f" (waited {timeout:g} s)" if timeout > 0 else ""
    return ResourceLockedError(
        f"{what} is locked by {describe_holder(holder)}{waited}", path=path,
        hint="wait for that run to finish, or queue behind it with --lock-timeout-seconds N "
             "(seconds; -1 waits for ever); a lock whose holder died is released by the kernel, "
             "so there is nothing to clean up")


@contextlib.contextmanager
def file_lock(path: str | Path, *, timeout: float = 0.0, what: str = "the resource",
              poll: float = 0.1) -> Iterator[Path]:
    """Hold the exclusive lock on ``path`` (created if missing) for the ``with`` block.

    ``timeout`` 0 fails at once; > 0 waits that many seconds; < 0 waits for ever. Re-entrant for
    the holding thread (inner entries return at once, whatever their timeout).
    """
    path = Path(path).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    key = os.path.realpath(path)
    me = threading.get_ident()
    with _GUARD:
        held = _HELD.get(key)
        if held is not None and held.owner == me:
            held.depth += 1
            reentered = True
        else:
            reentered = False
    if reentered:
        try:
            yield path
        finally:
            with _GUARD:
                _HELD[key].depth -= 1
        return

    deadline = None if timeout < 0 else time.monotonic() + timeout
    gate = _gate(key)
    # Threads of this process queue on the gate first (flock alone would not tell them apart
    # reliably), then the winner takes the inter-process flock.
    if not _acquire_gate(gate, deadline, poll):
        raise _locked_error(path, what, timeout, read_holder(path) or {"pid": os.getpid(), "host": socket.gethostname(),
                                                                         "command": "another thread of this process",
                                                                         "since": "?"})
    handle = None
    try:
        handle = open(path, "a+")
        _wait_for_flock(handle, path, what, timeout, deadline, poll)
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps(holder_record()) + "\n")
        handle.flush()
        with _GUARD:
            _HELD[key] = _Held(owner=me, depth=1, handle=handle)
        try:
            yield path
        finally:
            with _GUARD:
                _HELD.pop(key, None)
            with contextlib.suppress(OSError):
                # Clear the holder before unlocking, so a free lock never names a stale holder.
                handle.seek(0)
                handle.truncate()
                handle.flush()
    finally:
        if handle is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
            handle.close()
        gate.release()


def _acquire_gate(gate: threading.Lock, deadline: Optional[float], poll: float) -> bool:
    if deadline is None:
        return gate.acquire()
    remaining = deadline - time.monotonic()
    return gate.acquire(timeout=max(remaining, 0.0)) if remaining > 0 else gate.acquire(blocking=False)


def _wait_for_flock(handle, path: Path, what: str, timeout: float, deadline: Optional[float], poll: float) -> None:
    started = time.monotonic()
    last_log = None
    while not _try_flock(handle):
        holder = read_holder(path)
        now = time.monotonic()
        if deadline is not None and now >= deadline:
            raise _locked_error(path, what, timeout, holder)
        if last_log is None or now - last_log >= _WAIT_LOG_EVERY:
            limit = "for ever" if deadline is None else f"up to {timeout:g} s"
            log.warning("waiting for %s held by %s (waited %.0f s, waiting %s)", what, describe_holder(holder),
                        now - started, limit)
            last_log = now
        time.sleep(poll)
    if last_log is not None:
        log.warning("got %s after waiting %.1f s", what, time.monotonic() - started)
