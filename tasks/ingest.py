"""Prefect task: ingest one source into a dataset directory. The cache key is the source's
signature (paths, sizes, mtimes; package versions for 'builtin') + the config, so an unchanged
source is not re-read; the flow refreshes the cache when the dataset directory is gone or was
replaced (``dataset_is_current``)."""
from __future__ import annotations

from typing import Any

from prefect import task
from prefect.context import TaskRunContext

from tasks import retry_unless_tava_error

from tava_core.config import IngestConfig
from tava_core.errors import TavaError
from tava_core.home import TavaHome
from tava_core.ingest import IngestReport, dataset_name, ingest, source_signature
from tava_core.io import stable_hash
from tava_core.manifest import load_dataset_manifest


def _recorded_config(home: TavaHome, config: IngestConfig) -> dict | None:
    """The config recorded in the manifest of the dataset ``config`` writes, if it is there."""
    directory = home.dataset_dir(dataset_name(config))
    if not (directory / "manifest.json").is_file():
        return None
    try:
        return load_dataset_manifest(directory).config
    except TavaError:  # an unreadable manifest simply means "rebuild"
        return None


def ingest_cache_key(context: TaskRunContext, parameters: dict[str, Any]) -> str:
    """Source signature + config + home: an unchanged source with the same options is not re-read."""
    config: IngestConfig = parameters["config"]
    return "ingest-" + stable_hash([source_signature(config), config.model_dump(mode="json"),
                                    str(TavaHome(parameters["home_root"]).root)])


def dataset_is_current(config: IngestConfig, home: TavaHome) -> bool:
    """True while the dataset ``config`` writes is on disk and was made by exactly this config
    (a cached report must not outlive a deleted or replaced dataset directory)."""
    return _recorded_config(home, config) == config.model_dump(mode="json")


@task(name="ingest", task_run_name="ingest {config.source}", retries=1, retry_delay_seconds=[2],
      retry_condition_fn=retry_unless_tava_error, cache_key_fn=ingest_cache_key, persist_result=True)
def ingest_task(config: IngestConfig, home_root: str) -> IngestReport:
    """Ingest ``config.source`` under ``home_root`` (atomically; see tava_core.ingest)."""
    return ingest(config, TavaHome(home_root))
