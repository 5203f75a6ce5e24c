"""Test-wide environment: DDS stays on this machine, one ROS domain per run.

Set before anything imports rclpy: discovery only on loopback
(ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST, checked: no packet leaves lo) and a
ROS_DOMAIN_ID derived from the pid so parallel runs do not see each other.
Subprocesses started by tests inherit both.
"""

from __future__ import annotations

import os

os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.setdefault("ROS_DOMAIN_ID", str(10 + os.getpid() % 90))
os.environ.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.pop("ROS_STATIC_PEERS", None)

import pathlib  # noqa: E402

import pytest  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def repo_root() -> pathlib.Path:
    return REPO
