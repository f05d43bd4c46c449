"""Prefect tasks of `tava adapt`: check the inputs (cheap, before training), train + save (reused
when an identical run finished -- the one cache rule of ``tava_core.reuse``), publish the report as
artifacts."""
from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from tasks import CORE_DECIDES
from tava_core.adapter.config import AdapterConfig
from tava_core.adapter.report import markdown_report
from tava_core.adapter.run import check_adapter_inputs, train_adapter
from tava_core.home import TavaHome, slug
from tava_core.io import read_json
from tava_core.records import AdapterInputs, AdapterRecord


@task(name="adapt-check-inputs", task_run_name="check adapter inputs", cache_policy=CORE_DECIDES)
def check_inputs_task(config: AdapterConfig) -> AdapterInputs:
    """Read both sides, join pairs and raise on bad input (dims, fingerprints, NaN, too few pairs)."""
    return check_adapter_inputs(config)


@task(name="adapt-train", task_run_name="train adapter {inputs.name}", cache_policy=CORE_DECIDES)
def train_task(config: AdapterConfig, inputs: AdapterInputs, out_dir: str) -> AdapterRecord:
    """Train (best of the configured seeds) and save adapter + report atomically; returns the record.
    A diverged run raises TrainingError and leaves ``out_dir`` as it was."""
    return train_adapter(config, inputs, out_dir, show_progress=True)


@task(name="adapt-publish-report", task_run_name="publish adapter report {record.name}", cache_policy=CORE_DECIDES)
def publish_report_task(record: AdapterRecord) -> None:
    """The report as a markdown artifact and the metrics as a table artifact in the Prefect UI."""
    report = read_json(Path(record.adapter_dir) / "report.json")
    key = "adapter-" + slug(record.name).lower().replace("_", "-").replace(".", "-")
    create_markdown_artifact(markdown_report(report), key=key + "-report", description=f"adapter {record.name}")
    rows = [{"map": name, **{k: round(v, 4) if isinstance(v, float) else v for k, v in metrics.items()}}
            for name, metrics in report["metrics"].items()]
    if rows:
        create_table_artifact(rows, key=key + "-metrics", description="held-out alignment vs closed-form baselines")


def adapter_dir(home: TavaHome, name: str) -> str:
    return str(home.artifacts / "adapters" / slug(name))
