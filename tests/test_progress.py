"""tava's progress bars: live on a terminal, a frame every LOG_INTERVAL seconds in a log file."""
from __future__ import annotations

import io
import time

import pytest

from tava_core.progress import LOG_INTERVAL, progress_bar


class Stream(io.StringIO):
    def __init__(self, terminal: bool) -> None:
        super().__init__()
        self.terminal = terminal

    def isatty(self) -> bool:
        return self.terminal


def frames(terminal: bool, **kwargs) -> tuple[int, float]:
    """Carriage-return frames a bar of 300 steps over ~0.6 s draws, and its redraw interval."""
    out = Stream(terminal)
    bar = progress_bar(total=300, file=out, **kwargs)
    for _ in range(300):
        time.sleep(0.002)
        bar.update(1)
    bar.close()
    assert "300/300" in out.getvalue()       # the last frame is always drawn
    return out.getvalue().count("\r"), bar.mininterval


@pytest.mark.parametrize("terminal", [True, False])
def test_a_bar_in_a_log_file_draws_few_frames(terminal, monkeypatch):
    # in a log file a bar redrew every 0.1 s: ~1,000 carriage-return frames in one `tava demo`'s log
    monkeypatch.delenv("TQDM_MININTERVAL", raising=False)
    drawn, interval = frames(terminal)
    if terminal:
        assert interval == 0.1 and drawn >= 4, drawn
    else:
        assert interval == LOG_INTERVAL and drawn <= 3, drawn


def test_the_caller_or_the_environment_sets_the_interval(monkeypatch):
    monkeypatch.delenv("TQDM_MININTERVAL", raising=False)
    assert frames(False, mininterval=0.5)[1] == 0.5
    monkeypatch.setenv("TQDM_MININTERVAL", "7")   # tqdm reads it at import: the bar keeps tqdm's own default
    assert frames(False)[1] != LOG_INTERVAL
