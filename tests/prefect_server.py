"""A real local Prefect server for the deployment and UI tests: `prefect server start` on
127.0.0.1 in a subprocess with its own PREFECT_HOME, plus the CLI calls a user makes against it
(work pool, `prefect deploy`, a worker). Everything runs in child processes pointed at this
server through the environment, so the in-process test harness of other tests is untouched."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import httpx
import yaml

PROJECT = Path(__file__).resolve().parents[1]
POOL = "tava-process"
PREFECT = [sys.executable, "-m", "prefect"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def project_deployments() -> list[dict[str, Any]]:
    """The deployments prefect.yaml declares."""
    return yaml.safe_load((PROJECT / "prefect.yaml").read_text())["deployments"]


def entrypoint_exists(deployment: dict[str, Any]) -> bool:
    return (PROJECT / deployment["entrypoint"].split(":")[0]).is_file()


@dataclass
class LocalPrefectServer:
    root: Path
    port: int = field(default_factory=free_port)
    process: Optional[subprocess.Popen] = None
    deployed: list[str] = field(default_factory=list)
    not_deployed: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api(self) -> str:
        return f"{self.url}/api"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
        env.update({
            "PREFECT_HOME": str(self.root / "prefect-home"), "PREFECT_API_URL": self.api,
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1",
            "PREFECT_LOGGING_LEVEL": "INFO", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
            # prefect.yaml's pull step is `set_working_directory: {{ $PWD }}`: the project checkout.
            "PWD": str(PROJECT)})
        return env

    def start(self, timeout: float = 300.0) -> None:
        log = open(self.root / "server.log", "wb")
        self.process = subprocess.Popen(PREFECT + ["server", "start", "--host", "127.0.0.1", "--port", str(self.port)],
                                        cwd=self.root, env=self.env(), stdout=log, stderr=subprocess.STDOUT,
                                        start_new_session=True)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"prefect server exited: {self.log_tail()}")
            try:
                if httpx.get(f"{self.api}/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise RuntimeError(f"prefect server not healthy after {timeout:.0f} s: {self.log_tail()}")

    def log_tail(self, chars: int = 3000) -> str:
        path = self.root / "server.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)  # its own session: the server and its children
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def cli(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        """A `prefect` command run from the project directory against this server (raises on failure)."""
        done = subprocess.run(PREFECT + list(args), cwd=PROJECT, env=self.env(), capture_output=True, text=True,
                              timeout=timeout)
        if done.returncode != 0:
            raise RuntimeError(f"prefect {' '.join(args)} failed ({done.returncode}):\n"
                               f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
        return done

    def deploy_project(self) -> None:
        """Create the work pool and `prefect deploy` every deployment of prefect.yaml whose flow
        file exists (all of them, once the tree is complete: then it is `deploy --all`)."""
        self.cli("work-pool", "create", POOL, "--type", "process", "--overwrite")
        deployments = project_deployments()
        present = [d for d in deployments if entrypoint_exists(d)]
        self.not_deployed = {d["name"]: f"{d['entrypoint'].split(':')[0]} does not exist"
                             for d in deployments if not entrypoint_exists(d)}
        if len(present) == len(deployments):
            self.cli("--no-prompt", "deploy", "--all")
        else:
            self.cli("--no-prompt", "deploy", *[arg for d in present for arg in ("-n", d["name"])])
        self.deployed = [d["name"] for d in present]

    # ---------------------------------------------------------------- REST API, as the UI uses it
    def get(self, path: str) -> Any:
        response = httpx.get(f"{self.api}{path}", timeout=30)
        response.raise_for_status()
        return response.json()

    def post(self, path: str, body: dict[str, Any]) -> Any:
        response = httpx.post(f"{self.api}{path}", json=body, timeout=30)
        response.raise_for_status()
        return response.json()

    def deployment(self, flow_name: str, deployment_name: str) -> dict[str, Any]:
        return self.get(f"/deployments/name/{flow_name}/{deployment_name}")


def embed_then_cancel(server: LocalPrefectServer, home: Path, log_path: Path) -> dict[str, Any]:
    """Cancel in the UI, as the API does it: run prefect.yaml's `embed` deployment on one shard of 1,200 texts
    of ~256 tokens (minutes of encoding here) with a process worker, set the run to Cancelling once the
    shard's first batch is done, and wait for the run's final state. The worker then sends the run's process
    SIGTERM, and SIGKILL 30 s later if it is still there. Returns the final state, the seconds from
    Cancelling to it, the worker's output and the vector shards written. (Used by the deployment test and
    bench/cli_signals.py, which points ``PROJECT`` at the tree it measures.)"""
    from helpers import write_dataset
    from processes import EVERY_FRAME, LONG_TEXT, wait_for_first_batch

    write_dataset(home, "long", {"texts": [f"{LONG_TEXT} #{i}" for i in range(1200)]}, shard_size=1200)
    deployment = server.deployment("embed-dataset", "embed")
    run = server.post(f"/deployments/{deployment['id']}/create_flow_run", {"parameters": {
        "config": {"dataset": "long", "encoder": {"model": "all-MiniLM-L6-v2", "batch_size": 16}}, "home": str(home)}})
    with log_path.open("w") as log:
        worker = subprocess.Popen(PREFECT + ["worker", "start", "--pool", POOL, "--run-once"], cwd=PROJECT,
                                  env={**server.env(), **EVERY_FRAME}, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for_first_batch(worker, log_path)
        cancelled = time.monotonic()
        server.post(f"/flow_runs/{run['id']}/set_state", {"state": {"type": "CANCELLING", "name": "Cancelling"},
                                                          "force": True})
        state = server.get(f"/flow_runs/{run['id']}")["state"]
        deadline = time.time() + 300
        while state["type"] not in ("CANCELLED", "COMPLETED", "CRASHED", "FAILED") and time.time() < deadline:
            time.sleep(0.5)
            state = server.get(f"/flow_runs/{run['id']}")["state"]
        seconds = time.monotonic() - cancelled
        worker.wait(timeout=120)
    finally:
        if worker.poll() is None:
            worker.kill()
    return {"final_state": state["type"], "seconds_to_final_state": round(seconds, 2),
            "worker_output": log_path.read_text(errors="replace"),
            "vector_shards_written": len(list((home / "vectors").rglob("shard-*.parquet")))}
