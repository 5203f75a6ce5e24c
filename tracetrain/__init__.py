"""tracetrain: the training core every trainer of the stack runs on (no rclpy, no ROS).

Plain PyTorch machinery, independent of any model family (it imports neither
``tracevla_ros`` nor ``tracegen_ros``):

* ``device``: ``resolve_device`` (auto / cpu / cuda[:N]), autocast dtype per precision;
* ``seed``: seeding and the RNG state of a process;
* ``config``: strict typed ``from_dict`` for config dataclasses;
* ``checkpoint``: ``model.safetensors`` + versioned ``config.json``, checked on load;
* ``distributed``: torchrun process groups (gloo / NCCL) and batch sharding;
* ``loop``: ``Trainer`` -- AdamW, torch LR schedulers, swa_utils EMA, gradient
  accumulation, mixed precision, DDP, metrics.jsonl + loss.png, resumable state;
* ``metrics``: the JSONL log and its plot.

Trainers: ``tracevla_ros/policy/local/train.py`` (``tracevla-train``) and
``tracegen_ros/train.py`` (``tracegen-train``).
"""

from tracetrain.errors import CheckpointError, DivergedError, FieldError, SettingsError, TrainInputError

__all__ = ["CheckpointError", "DivergedError", "FieldError", "SettingsError", "TrainInputError"]
