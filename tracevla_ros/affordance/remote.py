"""Backend ``remote``: affordance questions to ``tracevla-serve --affordance-backend`` (no rclpy).

A 13B RoboPoint runs on a GPU machine; this client sends the image and the
instruction in an AFFORD frame over the policy protocol
(``tracevla_ros.policy.remote.protocol``) and reads the text answer back from
a POINTS frame, parsing it here like every backend's. The connection,
authentication, reconnection and time budget are the remote policy's: a
server that is down, slow (``request_timeout_s``) or failing is one
``AffordanceError`` and the node publishes nothing.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tracevla_ros.affordance.backend import AffordanceError, AffordanceResult, check_image, \
    result_from_text
from tracevla_ros.policy.base import PolicyError
from tracevla_ros.policy.remote.client import RemotePolicy, auth_token
from tracevla_ros.policy.remote.protocol import Frame, MsgType

__all__ = ["RemoteAffordance", "make"]


class RemoteAffordance:
    def __init__(self, host: str, port: int, timeout_s: float = 5.0, token: str | None = None) -> None:
        self._client = RemotePolicy(host, port, timeout_s, token)
        self.name = f"remote@{host}:{port}"

    def predict(self, image: np.ndarray, instruction: str) -> AffordanceResult:
        if not instruction.strip():
            raise AffordanceError("empty instruction")
        c = self._client
        req = Frame(MsgType.AFFORD, {"instruction": instruction, "budget_s": c.timeout_s},
                    {"image": check_image(image)})
        try:
            reply = c.exchange(req)
        except PolicyError as exc:
            raise AffordanceError(str(exc).replace("sent no action", "sent no answer")) from None
        if reply.type == MsgType.ERROR:
            raise AffordanceError(f"affordance server {c.address} {reply.meta.get('kind', '?')} "
                                  f"error: {reply.meta.get('message', '')}")
        if reply.type != MsgType.POINTS or not isinstance(reply.meta.get("text"), str):
            raise AffordanceError(f"affordance server {c.address} answered {reply.type.name} "
                                  "(is it started with --affordance-backend?)")
        return result_from_text(reply.meta["text"])

    def close(self) -> None:
        self._client.close()


def make(cfg: Any) -> RemoteAffordance:
    return RemoteAffordance(cfg.server_host, cfg.server_port, cfg.request_timeout_s,
                            auth_token(cfg.auth_token_env))
