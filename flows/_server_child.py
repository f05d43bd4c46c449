"""The temporary Prefect API server of one `tava` command, run as that command's child process.

Run as a script (``python _server_child.py PARENT_PID PORT``), not as part of the ``flows``
package, so it starts without importing tava. It ends when its parent ends, however the parent
ends (exit, crash, ``kill -9``, the OOM killer), so no server is left behind:

- on Linux the kernel sends it SIGTERM when the parent dies (``prctl(PR_SET_PDEATHSIG)``);
- everywhere, a watchdog thread sees the parent gone (the parent pid changes when the child is
  re-parented) and stops the server, then exits hard if the graceful stop hangs.
"""
from __future__ import annotations

import os
import signal
import sys
import threading
import time

PR_SET_PDEATHSIG = 1
WATCH_INTERVAL_SECONDS = 0.5
GRACEFUL_STOP_SECONDS = 10.0


def die_with_parent(parent_pid: int) -> None:
    if sys.platform.startswith("linux"):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    # The parent may have died before prctl took effect: then nobody would send the signal.
    if os.getppid() != parent_pid:
        os._exit(0)

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(WATCH_INTERVAL_SECONDS)
        os.kill(os.getpid(), signal.SIGTERM)     # uvicorn stops gracefully on SIGTERM
        time.sleep(GRACEFUL_STOP_SECONDS)
        os._exit(1)                              # ... and if it does not, the process ends anyway

    threading.Thread(target=watch, name="parent-watchdog", daemon=True).start()


def main(argv: list[str]) -> None:
    parent_pid, port = int(argv[0]), int(argv[1])
    die_with_parent(parent_pid)
    import uvicorn

    uvicorn.run("prefect.server.api.server:create_app", factory=True, host="127.0.0.1", port=port,
                log_level="error", lifespan="on")


if __name__ == "__main__":
    main(sys.argv[1:])
