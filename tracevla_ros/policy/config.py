"""policy_node parameters (one typed config, validated once)."""

from __future__ import annotations

from dataclasses import dataclass

from tracevla_ros.config import check, param


@dataclass(frozen=True)
class PolicyNodeConfig:
    backend: str = param("scripted", "policy backend: scripted (in-process simulator only; "
                         "learned backends register in tracevla_ros.policy.registry)")
    checkpoint: str = param("", "checkpoint path for learned backends (local path, never "
                            "downloaded); backend local: '' = the shipped widowx_trace")
    device: str = param("auto", "torch device for learned backends: auto (cuda when available, "
                        "else cpu), cpu, cuda, cuda:N")
    control_rate_hz: float = param(5.0, "policy steps per second; shared with the tracker "
                                   "(TraceVLA runs the 7B models at ~5 Hz)", unit="Hz")
    max_input_age_s: float = param(1.0, "reject an observation whose camera stamp is older than "
                                   "this when inference starts", unit="s")
    use_trace: bool = param(True, "wait for the tracker's VisualTrace for the same frame "
                            "(false: image-only policies such as OpenVLA)")
    pairing_tolerance_s: float = param(1e-4, "max stamp difference for image/trace/overlay of "
                                       "the same frame", unit="s")
    base_frame: str = param("wx250s/base_link", "frame_id of the PolicyAction (robot base, REP 103)")
    instruction: str = param("", "initial instruction; the latched 'instruction' topic overrides it")

    def __post_init__(self) -> None:
        check(0.1 <= self.control_rate_hz <= 100.0, "control_rate_hz",
              f"must be in [0.1, 100] Hz, got {self.control_rate_hz}")
        check(self.max_input_age_s > 0.0, "max_input_age_s", f"must be > 0 s, got {self.max_input_age_s}")
        check(self.pairing_tolerance_s >= 0.0, "pairing_tolerance_s", "must be >= 0 s")
        check(self.device == "auto" or self.device == "cpu" or self.device.startswith("cuda"),
              "device", f"must be auto, cpu, cuda or cuda:N, got '{self.device}'")
        check(bool(self.base_frame), "base_frame", "must name the robot base frame")
