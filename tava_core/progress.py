"""The one way tava draws a progress bar: tqdm, with fewer frames where the bar goes to a log file.

tqdm redraws a bar every 0.1 s, each frame after a carriage return. On a terminal that is one live line;
in a log file (`tava run > run.log 2>&1`, CI, a Prefect worker's captured output) it was ~1,000 frames for
one `tava demo`. Where the bar's stream is no terminal it draws a frame every ``LOG_INTERVAL`` seconds
instead, unless the caller or ``TQDM_MININTERVAL`` says otherwise.
"""
from __future__ import annotations

import os
import sys
from typing import Any, Iterable, Optional

LOG_INTERVAL = 30.0   # seconds between two frames of a bar written to a file or a pipe


def is_terminal(stream: Any) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(callable(isatty) and isatty())
    except ValueError:   # a closed stream
        return False


def progress_bar(iterable: Optional[Iterable[Any]] = None, **kwargs: Any) -> Any:
    """``tqdm.auto.tqdm(iterable, **kwargs)``, redrawn every ``LOG_INTERVAL`` seconds where its stream
    (``file``, else stderr) is no terminal."""
    from tqdm.auto import tqdm

    stream = kwargs.get("file") or sys.stderr
    if "mininterval" not in kwargs and "TQDM_MININTERVAL" not in os.environ and not is_terminal(stream):
        kwargs["mininterval"] = LOG_INTERVAL
    return tqdm(iterable, **kwargs)
