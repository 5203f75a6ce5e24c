"""One validation layer for every console script (no rclpy, no torch).

Every bad input ends the same way: one line on stderr naming the input, the
value, what was expected and how to fix it, and exit status 2. Never a
traceback, a silent default, NaN in a JSON file or a half-written output.

    ap = ArgParser("tracevla-foo", description="...")
    ap.add_argument("--lr", type=finite_float(gt=0), default=1e-3, help="learning rate")
    ap.add_argument("--out", type=output_dir, required=True, help="output directory")
    ...
    def main(argv=None) -> int:
        return run_main("tracevla-foo", _main, argv)

``run_main`` turns the stack's input errors (``UsageError``, ``ConfigError``
and the other ``ValueError`` subclasses named in ``INPUT_ERRORS``) into that
line and exit 2, ``KeyboardInterrupt`` into exit 130 without a traceback, and
any other exception into one line and exit 1 (``TRACEVLA_DEBUG=1`` prints the
traceback as well). Outputs go through ``write_json_atomic`` /
``write_text_atomic`` / ``atomic_dir``: a temporary name, then a rename.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shutil
import sys
import traceback
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from tracevla_ros.config import ConfigError

__all__ = [
    "UsageError",
    "ArgParser",
    "run_main",
    "finite_float",
    "int_range",
    "port",
    "existing_file",
    "existing_dir",
    "existing_path",
    "output_dir",
    "output_file",
    "nonempty_str",
    "json_safe",
    "dumps_json",
    "write_json_atomic",
    "write_text_atomic",
    "write_bytes_atomic",
    "atomic_dir",
    "require",
    "input_errors",
    "robot_task",
]


class UsageError(ValueError):
    """A bad command-line value or input file; the message names it and says how to fix it."""


def require(ok: bool, message: str) -> None:
    """Raise ``UsageError(message)`` unless ``ok`` (cross-field checks after parsing)."""
    if not ok:
        raise UsageError(message)


def robot_task(robot: str, task: str = "", robot_flag: str = "--robot",
               task_flag: str = "--task") -> tuple[str, str]:
    """``(robot, task)`` checked against the registries before any work starts: the robot
    by name or alias (returned as its registered name), the task (when given) as one of
    that robot's; ``UsageError`` names the flag, the value and the valid choices."""
    from tracevla_ros.robots.base import UnknownRobotError, get_robot

    try:
        name = get_robot(robot).name
    except UnknownRobotError as exc:
        raise UsageError(f"{robot_flag} '{robot}': {exc}") from None
    if not task:
        return name, ""
    from tracevla_ros.sim.tasks import TASKS, tasks_for_robot

    valid = tasks_for_robot(name)
    if task not in TASKS:
        raise UsageError(f"{task_flag} '{task}': unknown task; give one of {valid} for "
                         f"{robot_flag} {robot}")
    if task not in valid:
        raise UsageError(f"{task_flag} '{task}' is not a task of {robot_flag} {robot} "
                         f"({name}); give one of {valid}")
    return name, task


# --------------------------------------------------------------------------- argparse


class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults shown for every option; descriptions keep their line breaks."""


class ArgParser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` whose errors are one line (no usage dump) and whose
    ``--help`` shows every default."""

    def __init__(self, prog: str, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _Formatter)
        super().__init__(prog=prog, **kwargs)

    def error(self, message: str) -> Any:  # argparse's hook: print and exit 2
        print(f"{self.prog}: error: {message} (see {self.prog} --help)", file=sys.stderr)
        raise SystemExit(2)


def _type(name: str, fn: Callable[[str], Any]) -> Callable[[str], Any]:
    fn.__name__ = name  # argparse names the type in "invalid <name> value: ..."
    return fn


def finite_float(gt: float | None = None, ge: float | None = None,
                 lt: float | None = None, le: float | None = None) -> Callable[[str], float]:
    """A finite float within the given bounds (NaN and inf are refused)."""
    bounds = " and ".join(s for s in (
        f"> {gt:g}" if gt is not None else "", f">= {ge:g}" if ge is not None else "",
        f"< {lt:g}" if lt is not None else "", f"<= {le:g}" if le is not None else "") if s)

    def parse(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{text}' is not a number") from None
        want = f"a finite number{' ' + bounds if bounds else ''}"
        if not math.isfinite(v):
            raise argparse.ArgumentTypeError(f"'{text}' is not finite; give {want}")
        if ((gt is not None and not v > gt) or (ge is not None and not v >= ge)
                or (lt is not None and not v < lt) or (le is not None and not v <= le)):
            raise argparse.ArgumentTypeError(f"{text} is out of range; give {want}")
        return v

    return _type("float", parse)


def int_range(lo: int | None = None, hi: int | None = None) -> Callable[[str], int]:
    """An integer in [lo, hi] (either bound optional)."""
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{text}' is not an integer") from None
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            rng = (f"in [{lo}, {hi}]" if lo is not None and hi is not None
                   else f">= {lo}" if lo is not None else f"<= {hi}")
            raise argparse.ArgumentTypeError(f"{v} is out of range; give an integer {rng}")
        return v

    return _type("int", parse)


port = _type("port", lambda text: int_range(1, 65535)(text))


def nonempty_str(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("is empty; give a non-empty value")
    return text


def _path(text: str) -> Path:
    """``text`` as a path with ``~`` / ``~user`` expanded (an unknown user is a bad input)."""
    try:
        return Path(text).expanduser()
    except RuntimeError:  # "~nosuchuser": no home directory to expand to
        raise argparse.ArgumentTypeError(
            f"{text}: cannot expand '{text.split('/')[0]}' (no such user's home directory); "
            "give the path without it") from None


def existing_file(text: str) -> Path:
    p = _path(text)
    if p.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a directory; give a file")
    if not p.is_file():
        raise argparse.ArgumentTypeError(f"{text} does not exist; give an existing file")
    return p


def existing_dir(text: str) -> Path:
    p = _path(text)
    if p.is_file():
        raise argparse.ArgumentTypeError(f"{text} is a file; give a directory")
    if not p.is_dir():
        raise argparse.ArgumentTypeError(f"{text} does not exist; give an existing directory")
    return p


def existing_path(text: str) -> Path:
    p = _path(text)
    if not p.exists():
        raise argparse.ArgumentTypeError(f"{text} does not exist")
    return p


def _writable_parent(p: Path, text: str) -> None:
    parent = p.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if parent.is_file():
        raise argparse.ArgumentTypeError(f"{text}: {parent} is a file, not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise argparse.ArgumentTypeError(f"{text}: {parent} is not writable; choose another path")


def output_dir(text: str) -> Path:
    """A directory to write into: absent (created later) or an existing directory; never a file."""
    if not text.strip():
        raise argparse.ArgumentTypeError("is empty; give an output directory")
    p = _path(text)
    if p.exists() and not p.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is an existing file; give a directory "
                                         "(absent or existing)")
    _writable_parent(p / "x", text)
    return p


def output_file(text: str) -> Path:
    """A file to write: absent or an existing file (replaced atomically); never a directory."""
    if not text.strip():
        raise argparse.ArgumentTypeError("is empty; give an output file")
    p = _path(text)
    if p.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a directory; give a file name")
    _writable_parent(p, text)
    return p


# --------------------------------------------------------------------------- running


def input_errors() -> tuple[type[BaseException], ...]:
    """The stack's bad-input exceptions (each message already names the input)."""
    errs: list[type[BaseException]] = [UsageError, ConfigError]
    for mod, name in (("tracevla_ros.bag.writer", "BagError"),
                      ("tracevla_ros.policy.remote.protocol", "ProtocolError"),
                      ("tracevla_ros.sim.dataset", "DatasetError"),
                      ("tracevla_ros.sim.tasks", "TaskError"),
                      ("tracevla_ros.sim.env", "SimError"),
                      ("tracevla_ros.robots.base", "UnknownRobotError"),
                      ("tracevla_ros.tracking.offline", "TraceFileError"),
                      ("tracevla_ros.tracking.frames", "TrackerInputError"),
                      ("tracevla_ros.plugins", "PluginMissing"),
                      ("tracetrain.errors", "TrainInputError")):
        mod_obj = sys.modules.get(mod)  # only the ones already imported can have been raised
        if mod_obj is not None and hasattr(mod_obj, name):
            errs.append(getattr(mod_obj, name))
    return tuple(errs)


def _one_line(exc: BaseException) -> str:
    text = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
    return " ".join(text.split()) or type(exc).__name__


def run_main(prog: str, fn: Callable[[Any], int | None],
             argv: Sequence[str] | None = None) -> int:
    """Run a console script's body; bad input -> one line + exit 2, Ctrl-C -> 130,
    anything else -> one line + exit 1 (traceback only with ``TRACEVLA_DEBUG=1``)."""
    try:
        rc = fn(argv)
        return int(rc or 0)
    except SystemExit as exc:  # argparse --help / error, or an explicit exit
        code = exc.code
        if isinstance(code, str):  # sys.exit("message"): the message is the one line
            print(code if code.startswith(prog) else f"{prog}: error: {code}", file=sys.stderr)
            return 2
        return code if isinstance(code, int) else (0 if code is None else 2)
    except KeyboardInterrupt as exc:  # Ctrl-C, or a stop signal (stopping.Stopped)
        reason = getattr(exc, "reason", "")
        print(f"{prog}: stopped by {reason}" if reason else f"{prog}: interrupted",
              file=sys.stderr)
        return int(getattr(exc, "exit_code", 130))
    except BrokenPipeError:  # `... | head`
        return 0
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError, FileExistsError,
            PermissionError) as exc:
        where = f" {exc.filename}" if getattr(exc, "filename", None) else ""
        print(f"{prog}: error:{where}: {exc.strerror or _one_line(exc)}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - the one place a whole program's errors end
        if isinstance(exc, input_errors()):
            print(f"{prog}: error: {_one_line(exc)}", file=sys.stderr)
            return 2
        if os.environ.get("TRACEVLA_DEBUG"):
            traceback.print_exc()
        print(f"{prog}: internal error: {type(exc).__name__}: {_one_line(exc)} "
              "(set TRACEVLA_DEBUG=1 for the traceback)", file=sys.stderr)
        return 1


# --------------------------------------------------------------------------- outputs


def json_safe(obj: Any) -> Any:
    """``obj`` with every non-finite float replaced by ``None`` (JSON has no NaN) and
    numpy scalars/arrays turned into Python values."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    tolist = getattr(obj, "tolist", None)  # numpy arrays and scalars
    if callable(tolist) and type(obj).__module__.startswith("numpy"):
        return json_safe(tolist())
    return obj


def dumps_json(data: Any, indent: int | None = 2) -> str:
    """Strict JSON text: non-finite floats become null, never ``NaN``."""
    return json.dumps(json_safe(data), indent=indent, allow_nan=False)


def write_text_atomic(path: Path, text: str) -> None:
    """``text`` (UTF-8) to ``path`` via a temporary sibling and a rename: never half-written."""
    write_bytes_atomic(path, text.encode("utf-8"))


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """``data`` to ``path`` via a temporary sibling and a rename: never half-written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json_atomic(path: Path, data: Any) -> None:
    """JSON to ``path`` atomically; non-finite floats are written as ``null``."""
    write_text_atomic(path, dumps_json(data) + "\n")


@contextlib.contextmanager
def atomic_dir(final: Path, overwrite: bool = False) -> Iterator[Path]:
    """Build a directory under a temporary sibling name; it gets ``final``'s name only when
    the block ends without an exception (a failed or stopped run leaves nothing that blocks
    the rerun or looks complete).

        with atomic_dir(out / "dataset") as tmp:
            write_everything(tmp)
    """
    final = Path(final)
    if final.exists() and not overwrite:
        raise UsageError(f"{final} already exists; remove it or choose another output")
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.partial{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
