"""Subprocess for test_interfaces: echoes every custom message type back.

Subscribes to ``/itest/<Type>`` for each interface in msg/ and republishes the
message unchanged on ``/itest/<Type>/echo``. Exits after ``--seconds``.
"""

from __future__ import annotations

import argparse
import time

import rclpy
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

from tracevla_ros.msg import AffordancePoints, PolicyAction, Trace3D, VisualPrompt, VisualTrace

TYPES = [VisualTrace, Trace3D, PolicyAction, VisualPrompt, AffordancePoints]
QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE,
                 durability=DurabilityPolicy.TRANSIENT_LOCAL)


class EchoNode(Node):
    def __init__(self) -> None:
        super().__init__("itest_echo")
        self._pubs = {}
        for t in TYPES:
            name = t.__name__
            self._pubs[name] = self.create_publisher(t, f"/itest/{name}/echo", QOS)
            self.create_subscription(t, f"/itest/{name}", self._make_cb(name), QOS)

    def _make_cb(self, name: str):  # type: ignore[no-untyped-def]
        def cb(msg) -> None:  # type: ignore[no-untyped-def]
            self._pubs[name].publish(msg)
        return cb


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=30.0)
    args = ap.parse_args()
    rclpy.init()
    node = EchoNode()
    print("echo ready", flush=True)
    end = time.monotonic() + args.seconds
    try:
        while rclpy.ok() and time.monotonic() < end:
            rclpy.spin_once(node, timeout_sec=0.1)
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    main()
