"""Prefect tasks: write a blend of students (``tava_core.encoders.blend``), with a summary artifact; choose
its weight per corpus, label-free (``tava_core.encoders.blend_weight``)."""
from __future__ import annotations

from typing import Any, Optional

from prefect import task
from prefect.artifacts import create_markdown_artifact

from tava_core.config import EncoderSpec
from tava_core.encoders.blend import BlendConfig, BlendResult, save_blend
from tava_core.home import TavaHome

from . import CORE_DECIDES, markdown_facts, retry_unless_tava_error


@task(name="save-blend", cache_policy=CORE_DECIDES, retries=1, retry_condition_fn=retry_unless_tava_error)
def save_blend_task(config: BlendConfig, home: str) -> BlendResult:
    """Write the blend directory (atomic; refused when a member does not load or the sizes differ)."""
    directory = TavaHome(home).artifacts / "blends" / config.name
    blend = save_blend(directory, [EncoderSpec(model=m) for m in config.members], config.resolved_weights())
    result = BlendResult(directory=str(directory), fingerprint=blend.fingerprint, dim=blend.dim,
                         members=[{"name": m.name, "fingerprint": m.fingerprint, "dim": m.dim, "weight": round(w, 6)}
                                  for m, w in zip(blend.members, blend.weights, strict=True)])
    create_markdown_artifact(markdown_facts(f"Blend {config.name}", [
        ("directory", f"`{result.directory}`"), ("dim", result.dim),
        *[(f"member {k + 1}", f"{m['name']} (weight {m['weight']:.3f})") for k, m in enumerate(result.members)]]),
        key="tava-blend", description="tava blend: members and weights")
    return result


@task(name="choose-blend-weight", task_run_name="choose the blend's weight on {dataset}", cache_policy=CORE_DECIDES,
      retries=1, retry_condition_fn=retry_unless_tava_error)
def choose_blend_weight_task(first: str, second: str, teacher: EncoderSpec, dataset: str, split: str, name: str,
                             home: str, judgements: Optional[str] = None) -> dict[str, Any]:
    """The first member's weight in the blend, chosen label-free on span views of the corpus
    (``tava_core.encoders.blend_weight``); the record is kept under reports/blend/<name>/ and reused."""
    from tava_core.encoders.blend_weight import choose_for_corpus

    tava_home = TavaHome(home)
    return choose_for_corpus(first, second, teacher, dataset, split, tava_home.reports / "blend" / name / "weight.json",
                             tava_home, judgements)
