"""The training core's input errors: each message names the file or setting and the fix."""

from __future__ import annotations

__all__ = ["TrainInputError", "CheckpointError", "FieldError", "SettingsError", "DivergedError"]


class TrainInputError(ValueError):
    """Bad input to training (a setting, a config file, a checkpoint); one line, actionable."""


class FieldError(TrainInputError):
    """A config mapping does not fit its dataclass (unknown/missing key, wrong type, NaN)."""


class CheckpointError(TrainInputError):
    """A checkpoint or training state is missing, unsafe (pickle) or does not match the code."""


class SettingsError(TrainInputError):
    """A training setting is out of range or unsupported on this device."""


class DivergedError(RuntimeError):
    """The loss became NaN/inf; the run stops (the last saved state is intact)."""
