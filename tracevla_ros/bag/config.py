"""recorder_node parameters."""

from __future__ import annotations

from dataclasses import dataclass

from tracevla_ros.config import check, param

# metadata.yaml custom_data key holding the recorded run's parameter file (YAML text), so
# tracevla-replay runs the tracker with the parameters it ran with.
PARAMS_KEY = "tracevla_ros.params"

DEFAULT_TOPICS = (
    "/camera/image_raw", "/camera/camera_info", "/camera/depth/image_raw",
    "/camera/depth/camera_info", "/trace", "/image_trace", "/instruction", "/policy/action",
    "/joint_states", "/diagnostics", "/success",
)


@dataclass(frozen=True)
class RecorderConfig:
    output: str = param("", "bag directory to create (must not exist); empty = ./bag_<time>")
    storage: str = param("mcap", "rosbag2 storage plugin: mcap or sqlite3")
    topics: tuple[str, ...] = param(DEFAULT_TOPICS, "topics to record (types are discovered "
                                    "from the graph; QoS mirrors each publisher's)")
    params_file: str = param("", "parameter file of the recorded run (e.g. config/widowx.yaml), "
                             "stored in the bag's metadata for tracevla-replay; empty = none")
    discovery_period_s: float = param(0.5, "how often to look for publishers of topics not "
                                      "yet subscribed", unit="s")

    def __post_init__(self) -> None:
        check(self.storage in ("mcap", "sqlite3"), "storage", f"must be mcap or sqlite3, got '{self.storage}'")
        check(len(self.topics) > 0, "topics", "must list at least one topic")
        check(self.discovery_period_s > 0, "discovery_period_s", "must be > 0 s")
