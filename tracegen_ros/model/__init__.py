"""TraceGen model: typed config, pluggable encoders, adaLN trace decoder."""

from tracegen_ros.model.config import PRESETS, TraceGenConfig
from tracegen_ros.model.encoders import EncoderUnavailableError
from tracegen_ros.model.tracegen import Condition, TraceGenModel

__all__ = ["TraceGenConfig", "PRESETS", "TraceGenModel", "Condition", "EncoderUnavailableError"]
