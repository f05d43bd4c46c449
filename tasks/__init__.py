"""Thin Prefect tasks around ``tava_core`` functions: cache keys, retries, artifacts.

Tasks pass paths and small records, never big arrays. Importing this package points Prefect at
the tava home before Prefect is imported.
"""
from flows._prefect import configure_environment as _configure_environment

_configure_environment()

from prefect.cache_policies import NO_CACHE  # noqa: E402  (after the environment is set)

#: Cache policy of every task whose step writes an artifact: Prefect caches nothing, the core's
#: reuse check decides (the one cache rule, written in ``tava_core.reuse``).
CORE_DECIDES = NO_CACHE


def retry_unless_tava_error(task, task_run, state) -> bool:
    """Retry condition for every tava task: a ``TavaError`` (bad input, a model that will not
    load, a diverged run) fails the same way every time, so only other failures are retried."""
    from tava_core.errors import TavaError

    try:
        state.result()
    except TavaError:
        return False
    except BaseException:  # noqa: BLE001 - anything else may be transient (disk, network, preemption)
        return True
    return True


def markdown_facts(title: str, facts: list[tuple[str, object]]) -> str:
    """A titled two-column markdown table: the shape of every task's summary artifact."""
    lines = [f"# {title}", "", "| | |", "|---|---|"]
    lines += [f"| {name} | {value} |" for name, value in facts]
    return "\n".join(lines) + "\n"
