"""Worker processes that die with their parent: both tools' pools use this initializer.

A pool's workers are separate processes; if the process that started them is killed (even by
SIGKILL, which runs no cleanup), they would otherwise hold their memory for good. Each worker
watches its parent and exits as soon as it is gone. Ctrl-C is the parent's to handle.
"""

from __future__ import annotations

import os
import signal
import threading
import time

PARENT_CHECK_S = 0.5  # how often a worker checks that its parent is alive


def watch_parent(parent: int) -> None:
    """Pool initializer: exit this worker when process `parent` is gone; ignore Ctrl-C."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_CHECK_S)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="parent-watch").start()
