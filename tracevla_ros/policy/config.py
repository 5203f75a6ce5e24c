"""policy_node parameters (one typed config, validated once)."""

from __future__ import annotations

import math
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
                                   "this when inference starts, and drop an action that is ready "
                                   "later than this after its frame", unit="s")
    use_trace: bool = param(True, "wait for the tracker's VisualTrace for the same frame "
                            "(false: image-only policies such as OpenVLA)")
    pairing_tolerance_s: float = param(1e-4, "max stamp difference for image/trace/overlay of "
                                       "the same frame", unit="s")
    base_frame: str = param("wx250s/base_link", "frame_id of the PolicyAction (robot base, REP 103)")
    instruction: str = param("", "initial instruction; the latched 'instruction' topic overrides it")
    prompt_max_age_s: float = param(30.0, "a visual prompt (visual_prompt topic) is given to the "
                                    "policy with every frame stamped at most this long after the "
                                    "prompt's stamp, then dropped; 0 = held until replaced or "
                                    "cleared", unit="s")
    keep_prompt_on_instruction: bool = param(False, "keep the visual prompt when a new instruction "
                                             "arrives (false: a new instruction clears it, as a "
                                             "prompt belongs to one task)")
    require_prompt: bool = param(False, "act only on frames a visual prompt is held for (a "
                                 "prompt-following policy waits for its prompt, e.g. from the "
                                 "affordance node, instead of acting without one); false = act "
                                 "with or without one")
    adapter: str = param("", "LoRA adapter directory (tracevla-finetune-vla) applied on top of "
                         "'checkpoint'; backends openvla and tracevla-7b; pixelvla-7b: a stage-2 "
                         "adapter kept apart from its parts; empty = none (pixelvla-7b: the parts' own)")
    pixelvla_parts: str = param("", "backend pixelvla-7b: output directory of "
                                "tracevla-train-pixelvla (prompt/pixel encoders, action head, "
                                "statistics, stage-2 LoRA) on top of the OpenVLA 'checkpoint'")
    merge_adapter: bool = param(True, "merge the adapter into the weights at load time (as fast "
                                "as the base model); false keeps the PEFT layers")
    unnorm_key: str = param("bridge_orig", "dataset statistics that unnormalise the VLA's actions "
                            "(bridge_orig = BridgeData V2 / WidowX; the checkpoint lists the others)")
    server_host: str = param("127.0.0.1", "backend 'remote': host of tracevla-serve (the GPU machine)")
    server_port: int = param(8765, "backend 'remote': TCP port of tracevla-serve")
    request_timeout_s: float = param(1.0, "backend 'remote': max time to connect or to get one "
                                     "action back; on expiry no action is published", unit="s")
    auth_token_env: str = param("", "backend 'remote': name of the environment variable holding "
                                "the shared token (never the token itself); empty = no token")

    def __post_init__(self) -> None:
        check(0.1 <= self.control_rate_hz <= 100.0, "control_rate_hz",
              f"must be in [0.1, 100] Hz, got {self.control_rate_hz}")
        check(self.max_input_age_s > 0.0, "max_input_age_s", f"must be > 0 s, got {self.max_input_age_s}")
        check(math.isfinite(self.prompt_max_age_s) and self.prompt_max_age_s >= 0.0,
              "prompt_max_age_s", f"must be >= 0 s (0 = never expires), got {self.prompt_max_age_s}")
        check(self.pairing_tolerance_s >= 0.0, "pairing_tolerance_s", "must be >= 0 s")
        check(self.device == "auto" or self.device == "cpu" or self.device.startswith("cuda"),
              "device", f"must be auto, cpu, cuda or cuda:N, got '{self.device}'")
        check(bool(self.base_frame), "base_frame", "must name the robot base frame")
        check(bool(self.unnorm_key.strip()), "unnorm_key", "must name a dataset of the checkpoint's "
              "statistics (bridge_orig for the WidowX)")
        check(bool(self.server_host.strip()), "server_host", "must be a host name or address")
        check(1 <= self.server_port <= 65535, "server_port", f"must be in [1, 65535], got {self.server_port}")
        check(0.0 < self.request_timeout_s <= 60.0, "request_timeout_s",
              f"must be in (0, 60] s, got {self.request_timeout_s}")
        check(self.auth_token_env == "" or self.auth_token_env.replace("_", "").isalnum(),
              "auth_token_env", f"must be an environment variable NAME (letters, digits, _), got "
              f"'{self.auth_token_env}'; put the token itself in that variable, not in the YAML")
