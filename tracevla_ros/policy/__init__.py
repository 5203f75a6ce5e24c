"""Policies behind one interface (no rclpy): ``infer(observation) -> ActionChunk``.

Backends register by name in ``registry.py``; ``nodes/policy_node.py`` serves
any of them. ``pairing.py`` assembles observations from timestamped streams.
"""

from tracevla_ros.policy.base import (
    EE_DELTA_7D,
    ActionChunk,
    Observation,
    Policy,
    PolicyError,
    validate_chunk,
)

__all__ = ["EE_DELTA_7D", "ActionChunk", "Observation", "Policy", "PolicyError", "validate_chunk"]
