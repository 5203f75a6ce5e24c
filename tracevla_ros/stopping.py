"""How every long-running program of the stack stops (no rclpy).

The first SIGINT, SIGTERM or SIGHUP only *asks* for a stop: it sets a flag that
the program's loop reads, and the program then finishes its files (bag, summary,
video, checkpoint) and exits. Later signals are ignored while it does, so a
second Ctrl-C (``ros2 launch`` forwards its own SIGINT on top of the terminal's)
can never raise ``KeyboardInterrupt`` at an arbitrary line of the cleanup, which
is how a half-written ``metadata.yaml`` used to lose whole recordings.

    stop = StopRequest()
    install_stop_signals(stop)
    while not stop:
        work()
    finish_files()          # stop.reason says why: "SIGINT", "SIGTERM", ...
"""

from __future__ import annotations

import signal
from typing import Any

__all__ = ["StopRequest", "install_stop_signals", "ignore_stop_signals", "STOP_SIGNALS"]

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class StopRequest:
    """Falsy until a stop is requested; ``reason`` names the signal or the cause."""

    def __init__(self) -> None:
        self.reason = ""

    def __bool__(self) -> bool:
        return bool(self.reason)

    def request(self, reason: str) -> None:
        """The first reason wins."""
        if not self.reason:
            self.reason = reason

    @property
    def exit_code(self) -> int:
        """The shell convention for a program stopped by a signal: 128 + its number."""
        try:
            return 128 + int(signal.Signals[self.reason])
        except KeyError:
            return 1


def install_stop_signals(stop: StopRequest) -> None:
    """Route SIGINT/SIGTERM/SIGHUP to ``stop`` (main thread only, as Python requires)."""
    def handler(signum: int, _frame: Any) -> None:
        stop.request(signal.Signals(signum).name)

    for sig in STOP_SIGNALS:
        signal.signal(sig, handler)


def ignore_stop_signals() -> None:
    """From here on (the cleanup) stop signals do nothing."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
