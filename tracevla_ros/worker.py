"""``WakeWorker``: the thread behind a node's O(1) callbacks (no rclpy).

A callback stores its message and calls ``wake()``; the worker runs ``step()`` once per
wake (wakes that arrive while a step runs coalesce into one more step: the step always
takes the newest data). ``close()`` stops and joins it. An exception in ``step`` is
handed to ``on_error`` (the node logs it) and the worker keeps running.

    worker = WakeWorker(self._step, "tracker_worker", on_error=log_error)
    worker.start()
    ...            # in a callback: self._latest = msg; worker.wake()
    worker.close()
"""

from __future__ import annotations

import threading
from typing import Callable

__all__ = ["WakeWorker"]


class WakeWorker:
    def __init__(self, step: Callable[[], None], name: str,
                 on_error: Callable[[Exception], None] | None = None, poll_s: float = 0.2) -> None:
        self._step = step
        self._on_error = on_error
        self._poll_s = poll_s
        self._wake = threading.Event()
        self.stopping = threading.Event()  # set by close(); a step may wait on it
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def _run(self) -> None:
        while not self.stopping.is_set():
            if not self._wake.wait(timeout=self._poll_s):
                continue
            self._wake.clear()
            if self.stopping.is_set():
                return
            try:
                self._step()
            except Exception as exc:  # noqa: BLE001 - handed to the node, which logs it
                if self._on_error is None:
                    raise
                self._on_error(exc)

    def close(self, timeout_s: float = 2.0) -> None:
        self.stopping.set()
        self._wake.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=timeout_s)
