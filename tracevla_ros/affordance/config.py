"""affordance_node parameters (one typed config, validated once; no rclpy)."""

from __future__ import annotations

from dataclasses import dataclass

from tracevla_ros.config import check, param


@dataclass(frozen=True)
class AffordanceNodeConfig:
    backend: str = param("small", "affordance backend: small (the sim-trained model shipped here), "
                         "robopoint-hf (local HF-llava RoboPoint/TRACE weights), remote "
                         "(tracevla-serve --affordance-backend), or package.module:function")
    checkpoint: str = param("", "checkpoint directory (local, never downloaded); backend small: "
                            "'' = the shipped sim_small")
    device: str = param("auto", "torch device: auto (cuda when available, else cpu), cpu, cuda, cuda:N")
    max_new_tokens: int = param(256, "robopoint-hf: most tokens generated (reasoning + points)",
                                unit="tokens")
    temperature: float = param(0.2, "robopoint-hf: sampling temperature (RoboPoint's 0.2; 0 = greedy)")
    seed: int = param(0, "robopoint-hf: sampling seed, reset per request (reproducible answers)")
    server_host: str = param("127.0.0.1", "backend remote: host of tracevla-serve")
    server_port: int = param(8765, "backend remote: TCP port of tracevla-serve")
    request_timeout_s: float = param(10.0, "backend remote: max time for one answer (a 13B model "
                                     "generates ~100 tokens in a few s); on expiry nothing is "
                                     "published", unit="s")
    auth_token_env: str = param("", "backend remote: environment variable holding the token; "
                                "empty = none")
    instruction: str = param("", "initial instruction; the latched 'instruction' topic overrides it")
    max_image_age_s: float = param(2.0, "answer only for an image at most this old when the request "
                                   "starts (none newer: wait for the next frame)", unit="s")
    prompt_points: int = param(3, "the most probable points that become the PixelVLA prompt "
                               "(the small PixelVLA was trained with 1-3); 0 = every point")

    def __post_init__(self) -> None:
        check(bool(self.backend.strip()), "backend", "must name an affordance backend")
        check(self.device == "auto" or self.device == "cpu" or self.device.startswith("cuda"),
              "device", f"must be auto, cpu, cuda or cuda:N, got '{self.device}'")
        check(1 <= self.max_new_tokens <= 4096, "max_new_tokens", "must be in [1, 4096]")
        check(0.0 <= self.temperature <= 2.0, "temperature", "must be in [0, 2]")
        check(bool(self.server_host.strip()), "server_host", "must be a host name or address")
        check(1 <= self.server_port <= 65535, "server_port", "must be in [1, 65535]")
        check(0.0 < self.request_timeout_s <= 600.0, "request_timeout_s", "must be in (0, 600] s")
        check(self.auth_token_env == "" or self.auth_token_env.replace("_", "").isalnum(),
              "auth_token_env", "must be an environment variable NAME (letters, digits, _)")
        check(self.max_image_age_s > 0.0, "max_image_age_s", "must be > 0 s")
        check(0 <= self.prompt_points <= 64, "prompt_points", "must be in [0, 64] (0 = every point)")
