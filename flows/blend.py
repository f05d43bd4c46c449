"""Flow: blend students of one teacher into one query encoder.

    load every member  ->  check they share the teacher's space (one dimension)
        ->  write the blend directory (atomic)  ->  its record: directory, fingerprint, weights
"""
from __future__ import annotations

from typing import Optional

from prefect import flow

from tasks.blend import save_blend_task
from tava_core.encoders.blend import BlendConfig, BlendResult
from tava_core.home import TavaHome


@flow(name="blend-students", log_prints=True)
def blend_students(config: BlendConfig, home: Optional[str] = None) -> BlendResult:
    """Blend two or more students (e.g. a transformer student's adapter and a static student) into one
    query encoder whose vectors are searched against the teacher's documents.

    Args:
        config: The members (encoder directories), their weights and the blend's name.
        home: tava home directory (data, vectors, artifacts, reports); empty = $TAVA_HOME, else ./.tava.
    """
    return save_blend_task(config, str(TavaHome(home).root))
