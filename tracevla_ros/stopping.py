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

__all__ = ["StopRequest", "Stopped", "install_stop_signals", "ignore_stop_signals",
           "STOP_SIGNALS"]

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


class Stopped(KeyboardInterrupt):
    """Raised by the first stop signal when ``install_stop_signals(..., interrupt=True)``:
    for programs whose loop lives in a library that cannot poll a flag. ``exit_code`` is
    128 + the signal's number (``tracevla_ros.cli.run_main`` exits with it)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason

    @property
    def exit_code(self) -> int:
        req = StopRequest()
        req.request(self.reason)
        return req.exit_code


def install_stop_signals(stop: StopRequest, interrupt: bool = False) -> None:
    """Route SIGINT/SIGTERM/SIGHUP to ``stop`` (main thread only, as Python requires).

    ``interrupt=True``: the first signal also raises :class:`Stopped` (a
    ``KeyboardInterrupt``) in the main thread, like Ctrl-C does by default; later ones
    only set the flag, so they cannot break the cleanup that the first one started."""
    def handler(signum: int, _frame: Any) -> None:
        first = not stop
        stop.request(signal.Signals(signum).name)
        if interrupt and first:
            raise Stopped(stop.reason)

    for sig in STOP_SIGNALS:
        signal.signal(sig, handler)


def ignore_stop_signals() -> None:
    """From here on (the cleanup) stop signals do nothing."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
