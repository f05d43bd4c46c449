"""prefect.yaml: every deployment's parameters make a UI form (typed, defaults, descriptions), and
the deployments work on a real local server: deploy, trigger through the API, a process worker
runs it to Completed and it wrote what it should."""
from __future__ import annotations

import json
import time
from typing import Any

import pytest
from prefect_server import POOL, PROJECT, embed_then_cancel, entrypoint_exists, project_deployments

from tava_core.manifest import load_dataset_manifest

# Config fields that are inputs with no sensible default: the form marks them required.
# Rollback flows take the paths a build printed, no config: deployment -> its parameters.
PLAIN_PARAMETERS = {"index-rollback": {"index_dir"}, "backfill-rollback": {"uri", "table"}}
REQUIRED_INPUTS = {"IndexConfig": {"vectors"}, "RouterConfig": {"student", "dataset"},
                   "DiagnoseConfig": {"dataset", "student"}, "BlendConfig": {"members"}, "ExportConfig": {"model"},
                   "CompressConfig": {"dataset"}, "TranslateConfig": {"adapter"}}


def _load_flow(entrypoint: str):
    from prefect.flows import load_flow_from_entrypoint

    path, name = entrypoint.split(":")
    return load_flow_from_entrypoint(f"{PROJECT / path}:{name}")


def _deployments_with_flows() -> list[tuple[dict[str, Any], Any]]:
    missing = [d["entrypoint"] for d in project_deployments() if not entrypoint_exists(d)]
    assert not missing, f"prefect.yaml names flow files that do not exist: {missing}"
    return [(d, _load_flow(d["entrypoint"])) for d in project_deployments()]


def test_prefect_yaml_declares_the_operated_deployments():
    deployments = {d["name"]: d for d in project_deployments()}
    assert {"demo", "nightly-adapter-refresh", "index", "backfill", "ingest", "embed", "distill",
            "adapt", "evaluate"} <= set(deployments)
    assert all(d["work_pool"]["name"] == POOL for d in deployments.values())
    nightly = deployments["nightly-adapter-refresh"]
    assert nightly["entrypoint"] == "flows/refresh.py:nightly_adapter_refresh"
    assert nightly["schedules"] == [{"cron": "0 2 * * *", "timezone": "UTC", "active": True}]
    assert nightly["concurrency_limit"]["limit"] == 1
    # Manual deployments have no schedule.
    assert not any(deployments[name].get("schedules") for name in ("demo", "index", "backfill"))


def test_every_flow_a_command_runs_has_a_deployment():
    """A platform engineer launches from the UI what a user launches from the shell: no flow of `flows/`
    is left out of prefect.yaml (seven were, until session 60), except a subflow no one runs alone."""
    import importlib
    import pkgutil

    from prefect.flows import Flow

    import flows

    subflows = {"embed-shards"}   # embed-dataset's per-shard subflow
    defined = {obj.name for info in pkgutil.iter_modules(flows.__path__) if not info.name.startswith("_")
               for obj in vars(importlib.import_module(f"flows.{info.name}")).values() if isinstance(obj, Flow)}
    deployed = {flow.name for _, flow in _deployments_with_flows()}
    assert defined - subflows <= deployed, f"flows without a deployment: {sorted(defined - subflows - deployed)}"
    assert subflows <= defined


def test_every_flow_parameter_is_a_form_with_defaults_and_descriptions():
    """What the Prefect UI renders: each parameter a typed pydantic model (or a plain optional
    string), with a description, and every field with a default and a description."""
    from prefect.utilities.callables import parameter_schema

    for deployment, flow in _deployments_with_flows():
        schema = parameter_schema(flow.fn).model_dump()
        where = deployment["name"]
        if deployment["name"] in PLAIN_PARAMETERS:   # a rollback: one or two paths, each a described text field
            assert set(schema["properties"]) == PLAIN_PARAMETERS[where], where
            assert all(p.get("type") == "string" and p.get("description") for p in schema["properties"].values()), where
            continue
        assert "config" in schema["properties"], where
        for name, prop in schema["properties"].items():
            assert prop.get("description"), f"{where}: parameter {name!r} has no description"
            ref = prop.get("$ref", "")
            model = ref.rsplit("/", 1)[-1]
            assert ("default" in prop) or REQUIRED_INPUTS.get(model), f"{where}: parameter {name!r} has no default"
        assert schema["properties"]["config"]["$ref"].startswith("#/definitions/"), where
        for model, definition in schema["definitions"].items():
            for field, prop in definition["properties"].items():
                assert prop.get("description"), f"{where}: {model}.{field} has no description"
                if field in REQUIRED_INPUTS.get(model, set()):
                    continue
                assert "default" in prop or "default" in schema["properties"]["config"], \
                    f"{where}: {model}.{field} has no default"
        # The top-level default is what the form starts from: it must validate as the config.
        default = schema["properties"]["config"].get("default")
        if default is not None:
            config_type = flow.fn.__annotations__["config"]
            if isinstance(config_type, str):  # `from __future__ import annotations`
                import typing

                config_type = typing.get_type_hints(flow.fn)["config"]
            config_type.model_validate(default)


@pytest.mark.xdist_group("local_prefect_server")  # one server start (~50 s) for both tests
@pytest.mark.slow
@pytest.mark.timeout(1200)  # includes starting the server and deploying (session fixture): slow on a busy machine
def test_deploy_to_a_local_server_and_run_through_the_api(local_prefect_server, tmp_path):
    server = local_prefect_server
    missing = set(server.not_deployed)
    assert {d["name"] for d in project_deployments()} - missing == set(server.deployed)
    for declared, flow in _deployments_with_flows():   # each one is on the server, on the pool
        assert server.deployment(flow.name, declared["name"])["work_pool_name"] == POOL, declared["name"]

    # The server holds what prefect.yaml says: pool, schedule, the parameter form.
    ingest_flow = _load_flow("flows/ingest.py:ingest_corpus")
    deployment = server.deployment(ingest_flow.name, "ingest")
    assert deployment["work_pool_name"] == POOL
    config_schema = deployment["parameter_openapi_schema"]["definitions"]["IngestConfig"]["properties"]
    assert "Rows per Parquet shard." in config_schema["shard_size"]["description"]
    if "nightly-adapter-refresh" in server.deployed:
        refresh_flow = _load_flow("flows/refresh.py:nightly_adapter_refresh")
        nightly = server.deployment(refresh_flow.name, "nightly-adapter-refresh")
        [schedule] = nightly["schedules"]
        assert schedule["active"] is True
        assert schedule["schedule"]["cron"] == "0 2 * * *" and schedule["schedule"]["timezone"] == "UTC"
        assert (nightly.get("global_concurrency_limit") or {}).get("limit") == 1 or nightly["concurrency_limit"] == 1
        assert nightly["concurrency_options"]["collision_strategy"] == "ENQUEUE"

    # Trigger a run with parameters, as the UI's "Custom run" does, and let a process worker run it.
    source = tmp_path / "arrivals.jsonl"
    source.write_text("".join(json.dumps({"_id": f"d{i}", "text": f"note {i} on topic {i % 4}"}) + "\n"
                              for i in range(30)))
    home = tmp_path / "tava-home"
    parameters = {"config": {"source": str(source), "name": "arrivals", "shard_size": 10, "max_records": 25},
                  "home": str(home)}
    run = server.post(f"/deployments/{deployment['id']}/create_flow_run", {"parameters": parameters})
    worker = server.cli("worker", "start", "--pool", POOL, "--run-once", timeout=300)

    deadline = time.time() + 120
    state = server.get(f"/flow_runs/{run['id']}")["state"]
    while state["type"] not in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED") and time.time() < deadline:
        time.sleep(1)
        state = server.get(f"/flow_runs/{run['id']}")["state"]
    assert state["type"] == "COMPLETED", f"{state}\n{worker.stdout[-3000:]}\n{worker.stderr[-3000:]}"

    manifest = load_dataset_manifest(home / "data" / "arrivals")
    texts = manifest.collections["texts"]
    assert sum(shard.rows for shard in texts.shards) == 25 and len(texts.shards) == 3
    assert all((home / "data" / "arrivals" / shard.path).is_file() for shard in texts.shards)
    # The run's report reached the UI as an artifact.
    artifacts = server.post("/artifacts/filter", {"artifacts": {"flow_run_id": {"any_": [run["id"]]}}})
    assert any(a["key"] == "ingest-report" and "arrivals" in a["data"] for a in artifacts)


@pytest.mark.xdist_group("local_prefect_server")
@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_a_run_cancelled_from_the_ui_stops_within_a_batch(local_prefect_server, tmp_path):
    """Before session 38 an embed run was still encoding its shard when the worker killed it, 30 s after its
    SIGTERM (the signal reached the main thread only), so Prefect never heard it stop (34 s to Cancelled);
    now the shard's worker thread stops within a batch and the engine reports the cancellation itself."""
    ended = embed_then_cancel(local_prefect_server, tmp_path / "tava-home", tmp_path / "worker.log")
    log = ended["worker_output"][-3000:]
    assert ended["final_state"] == "CANCELLED", log
    # The engine saw the stop and said so (a killed process cannot).
    assert "Flow run was cancelled." in ended["worker_output"] and ended["seconds_to_final_state"] < 25, log
    assert ended["vector_shards_written"] == 0, "a half-done shard was kept"
