"""Flow: move a stored vector collection into another model's space with a saved adapter.

    check (dimension, encoder fingerprint, not already translated, not empty) -> one task per
    vector shard (skipped when done; NaN vectors refused) -> manifest last
or, for a LanceDB table, one task that translates it batch by batch into a new table.
`tava index --vectors OUT` then builds an index on the translated shards.
"""
from __future__ import annotations

import time
from typing import Any, Optional

from prefect import flow, get_run_logger

from tasks.translate import publish_summary, translate_shard_task, translate_table_task
from tava_core.home import TavaHome
from tava_core.interrupt import stop_workers_on_interrupt
from tava_core.translate import TranslateConfig, finish_vector_dir, load_translation, plan_vector_dir, summary


@flow(name="translate-vectors", log_prints=True)
def translate_vectors(config: TranslateConfig, home: Optional[str] = None) -> dict[str, Any]:
    """Translate vector shards (or a LanceDB table) through an adapter, with lineage, resumably.

    Args:
        config: What to translate (a vector directory or a LanceDB table), the adapter and direction, where to write.
        home: tava home directory (data, vectors, artifacts, reports); empty = $TAVA_HOME, else ./.tava.
    """
    logger = get_run_logger()
    tava_home = TavaHome(home)
    if config.table:
        record = translate_table_task(config, str(tava_home.root))
    else:
        started = time.perf_counter()
        plan = plan_vector_dir(config, tava_home, load_translation(config.adapter, config.direction))
        futures = [translate_shard_task.submit(config.adapter, config.direction, src, sha, out,
                                               plan.encoder["fingerprint"], plan.encoder["name"])
                   for src, sha, out in plan.jobs]
        with stop_workers_on_interrupt():
            results = [future.result() for future in futures]
        manifest = finish_vector_dir(plan, [shard for shard, _ in results])
        record = summary(plan, manifest, translated=sum(done for _, done in results),
                         seconds=time.perf_counter() - started)
    if config.table:   # a resumed run translates only what the killed one had not
        logger.info("translated %s of %s rows into table %s", record["rows_translated"], record["rows"], record["table"])
    else:
        logger.info("%s rows in %s (%s shards translated, %s already there)", record["rows"], record["out"],
                    record["shards_translated"], record["shards_skipped"])
    publish_summary(record)
    return record
