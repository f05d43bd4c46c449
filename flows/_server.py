"""Run a flow against a Prefect API: the user's (``PREFECT_API_URL``), else a temporary server
that this process starts and owns.

Prefect would start its own temporary server, but as a plain subprocess that outlives a killed
parent (a `tava embed` killed with ``kill -9`` left its uvicorn running). Ours is started as a
child that dies with this process however it ends (see ``_server_child``), and it boots while
this process imports Prefect and the flow, so the start-up costs less wall time.
"""
from __future__ import annotations

import contextlib
import importlib
import logging
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Iterator, Optional

from tava_core.errors import TavaError

CHILD_SCRIPT = Path(__file__).with_name("_server_child.py")
DEFAULT_STARTUP_SECONDS = 60.0
STOP_SECONDS = 10.0
PORT_ATTEMPTS = 3
# After the owned server dies under a running flow, how long the command may still wind down by itself
# before it is ended (`pkill -f` or the OOM killer can take the server alone -- a signal to the command's
# process group no longer reaches it, see `launch`; Prefect's crash handling then cannot report, and the flow
# went on computing for minutes: session 37).
LOST_SERVER_GRACE_SECONDS = 20.0


class ServerStartError(TavaError):
    """The temporary Prefect server did not become healthy."""


def configured_api_url() -> Optional[str]:
    """The Prefect API the user (or a test harness) configured, if any."""
    if "prefect" in sys.modules:  # settings may come from a context (a test harness), not the environment
        from prefect.settings import PREFECT_API_URL

        return PREFECT_API_URL.value() or None
    return os.environ.get("PREFECT_API_URL") or None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class OwnedServer:
    """A temporary Prefect API server in a child process that dies with this one."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.port = 0
        self.process: Optional[subprocess.Popen] = None
        self._stopping = False

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    def launch(self) -> None:
        """Start the child (returns at once; ``wait_ready`` waits for health)."""
        self.port = _free_port()
        env = {**os.environ, "PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1",
               "PREFECT__SERVER_FINAL": "1"}
        env.pop("PREFECT_API_URL", None)
        log = open(self.home / "server.log", "ab")  # noqa: SIM115 - the child keeps it open
        # Its own session: a signal to the command's process group (Ctrl-C in a terminal, `timeout`) reaches
        # the command alone, which then reports the stop to a server still up and stops it. In the group, the
        # server died first, and the command spent 20 s failing to report (session 38). It still dies with
        # this process however that ends (``_server_child``).
        self.process = subprocess.Popen([sys.executable, str(CHILD_SCRIPT), str(os.getpid()), str(self.port)],
                                        env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                        start_new_session=True)
        log.close()

    def wait_ready(self, timeout: Optional[float] = None) -> str:
        """Block until /api/health answers; relaunch on another port if this one was taken."""
        timeout = timeout or float(os.environ.get("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS",
                                                  DEFAULT_STARTUP_SECONDS))
        assert self.process is not None, "launch() first"
        deadline = time.monotonic() + timeout
        attempts = 1
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                if attempts >= PORT_ATTEMPTS:
                    break
                attempts += 1
                self.launch()  # most likely the port was taken between choosing and binding it
                continue
            try:
                with urllib.request.urlopen(f"{self.api_url}/health", timeout=2) as response:
                    if response.status == 200:
                        return self.api_url
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        self.stop()
        raise ServerStartError(f"the temporary Prefect server did not answer within {timeout:.0f} s",
                               path=self.home / "server.log",
                               hint="see the log; on a busy machine raise "
                                    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS, or set "
                                    "PREFECT_API_URL to a running server (`prefect server start`)")

    def watch(self, grace: float = LOST_SERVER_GRACE_SECONDS) -> None:
        """End this process if the server dies while the command still runs (not when ``stop`` stops it):
        nothing a flow does can be reported any more, and it must not compute on unseen. A daemon thread
        polls the child; ``grace`` seconds after it died, the command ends with 143 (the server was
        signalled) or 1, naming the server's log."""
        process = self.process
        assert process is not None, "launch() first"

        def watcher() -> None:
            while process.poll() is None:
                time.sleep(0.5)
            if self._stopping:
                return
            time.sleep(grace)   # a signalled command usually ends by itself well within this
            if self._stopping:
                return
            sys.stderr.write(f"tava: the Prefect server this command started has stopped (exit code "
                             f"{process.returncode}; log: {self.home / 'server.log'}); the run cannot report any "
                             "more, so it ends here\n")
            sys.stderr.flush()
            os._exit(143 if (process.returncode or 0) < 0 else 1)

        threading.Thread(target=watcher, name="tava-server-watch", daemon=True).start()

    def stop(self) -> None:
        self._stopping = True
        if self.process is None or self.process.poll() is not None:
            self.process = None
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=STOP_SECONDS)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None


def _drain_prefect_workers() -> None:
    """Let Prefect's background senders (events, API logs) flush while the server still runs."""
    if "prefect" not in sys.modules:
        return
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for worker in (APILogWorker, EventsWorker):
        with contextlib.suppress(Exception):  # best effort: a flush failure must not mask the result
            worker.drain_all(timeout=5)


@contextlib.contextmanager
def _api_url_set(url: str) -> Iterator[None]:
    """PREFECT_API_URL for this process (before or after Prefect is imported) and its children."""
    previous = os.environ.get("PREFECT_API_URL")
    os.environ["PREFECT_API_URL"] = url
    try:
        if "prefect" in sys.modules:
            from prefect.settings import PREFECT_API_URL, temporary_settings

            with temporary_settings(updates={PREFECT_API_URL: url}):
                yield
        else:
            yield
    finally:
        if previous is None:
            os.environ.pop("PREFECT_API_URL", None)
        else:
            os.environ["PREFECT_API_URL"] = previous


def load_flow(target: str) -> Any:
    """'flows.embed:embed_dataset_flow' -> the flow object (this imports Prefect)."""
    module_name, attr = target.split(":")
    return getattr(importlib.import_module(module_name), attr)


class _NoLinksToATemporaryUI(logging.Filter):
    """Prefect logs "View at http://127.0.0.1:PORT/runs/..." for every flow run; with the temporary server
    that page is gone when the command ends, so the line only misleads (the state stays in the tava home:
    `prefect server start` with its PREFECT_HOME shows every run)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("View at ")


def run_flow(target: str, *args: Any, **kwargs: Any) -> Any:
    """Import the flow ``target`` names and call it with ``args``/``kwargs`` against a Prefect API."""
    if configured_api_url():
        return load_flow(target)(*args, **kwargs)
    from ._prefect import configure_environment, prefect_dir

    server = OwnedServer(prefect_dir(configure_environment()))
    links = _NoLinksToATemporaryUI()
    flow_runs = logging.getLogger("prefect.flow_runs")
    flow_runs.addFilter(links)
    try:
        server.launch()
        # The URL is known before Prefect is imported, so Prefect reads it from the environment.
        with _api_url_set(server.api_url):
            flow = load_flow(target)   # imports Prefect and the flow while the server boots
            server.wait_ready()
            server.watch()
            try:
                return flow(*args, **kwargs)
            finally:
                _drain_prefect_workers()
    finally:
        flow_runs.removeFilter(links)
        server.stop()
