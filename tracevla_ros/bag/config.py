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
    "/joint_states", "/diagnostics", "/success", "/visual_prompt",
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
    flush_period_s: float = param(1.0, "an MCAP chunk is written (and fsync'd) at the latest "
                                  "this long after its first message: at most this much is "
                                  "lost when the recorder is killed", unit="s")
    chunk_size_kib: int = param(1024, "an MCAP chunk is written once it holds this much "
                                "(uncompressed)", unit="KiB")
    compression: str = param("none", "MCAP chunk compression: none, zstd or lz4 (mcap only)")
    fsync: bool = param(True, "force each written chunk to the disk (survives a power cut, "
                        "not only a crash)")

    def __post_init__(self) -> None:
        check(self.storage in ("mcap", "sqlite3"), "storage", f"must be mcap or sqlite3, got '{self.storage}'")
        check(0.05 <= self.flush_period_s <= 60.0, "flush_period_s",
              f"must be in [0.05, 60] s, got {self.flush_period_s}")
        check(16 <= self.chunk_size_kib <= 1 << 20, "chunk_size_kib",
              f"must be in [16, 1048576] KiB, got {self.chunk_size_kib}")
        check(self.compression in ("none", "zstd", "lz4"), "compression",
              f"must be none, zstd or lz4, got '{self.compression}'")
        check(self.storage == "mcap" or self.compression == "none", "compression",
              "chunk compression needs storage mcap")
        check(len(self.topics) > 0, "topics", "must list at least one topic")
        check(self.discovery_period_s > 0, "discovery_period_s", "must be > 0 s")


# What a replay feeds the stack: the robot's inputs. The recorded outputs are played
# under ``recorded_prefix`` (e.g. /recorded/trace) to compare with the live ones in rviz.
PLAYER_INPUTS = (
    "/camera/image_raw", "/camera/image_raw/compressed", "/camera/camera_info",
    "/camera/depth/image_raw", "/camera/depth/camera_info", "/instruction", "/joint_states",
    "/visual_prompt",
)
PLAYER_OUTPUTS = ("/trace", "/image_trace", "/policy/action", "/trace3d")


@dataclass(frozen=True)
class BagPlayerConfig:
    bag: str = param("", "rosbag2 directory (or .mcap/.db3 file) to play; required "
                     "(replay.launch.py bag:=...)")
    topics: tuple[str, ...] = param(PLAYER_INPUTS, "topics played under their own names (those "
                                    "in the bag); the stack computes the rest live")
    recorded_topics: tuple[str, ...] = param(PLAYER_OUTPUTS, "topics played under "
                                             "recorded_prefix, for comparison")
    recorded_prefix: str = param("/recorded", "namespace of the recorded outputs; empty = do "
                                 "not play them")
    rate: float = param(1.0, "playback speed factor (1 = as recorded)")
    start_offset_s: float = param(0.0, "skip this much of the bag's beginning", unit="s")
    loop: bool = param(False, "start again at the end")
    start_delay_s: float = param(2.0, "wait before the first message so the stack's "
                                 "subscribers match (nothing is lost at the start)", unit="s")
    publish_clock: bool = param(True, "publish /clock from the bag's receive times, so nodes "
                                "with use_sim_time see the recorded stamps as current")
    clock_period_s: float = param(0.01, "/clock is published at least this often", unit="s")

    def __post_init__(self) -> None:
        check(0.01 <= self.rate <= 100.0, "rate", f"must be in [0.01, 100], got {self.rate}")
        check(self.start_offset_s >= 0.0, "start_offset_s", "must be >= 0 s")
        check(self.start_delay_s >= 0.0, "start_delay_s", "must be >= 0 s")
        check(self.recorded_prefix == "" or self.recorded_prefix.startswith("/"),
              "recorded_prefix", "must be empty or an absolute namespace like /recorded")
        check(0.001 <= self.clock_period_s <= 1.0, "clock_period_s", "must be in [0.001, 1] s")

    def played_topics(self) -> list[str]:
        """Every topic the player may publish (those of the lists that are in the bag)."""
        prefix = self.recorded_prefix.rstrip("/")
        recorded = [prefix + t for t in self.recorded_topics] if self.recorded_prefix else []
        return list(self.topics) + recorded + (["/clock"] if self.publish_clock else [])
