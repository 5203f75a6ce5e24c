"""Backend ``remote``: the robot computer's side of ``tracevla-serve``.

Each ``infer`` sends the observation (image, overlay, proprioception,
instruction) and waits at most ``request_timeout_s`` for the action; every
failure is one PolicyError whose message says what to do (server down,
timeout, token rejected, the server's own error), and the node then publishes
nothing. The connection is kept open between steps; after a server restart
the next request reconnects by itself. ``reset`` is O(1): it is sent with the
next request. The returned chunk is validated (shape, NaN/inf, gripper range).
"""

from __future__ import annotations

import os
import socket
import threading
import time
from typing import Any

import numpy as np

from tracevla_ros.config import ConfigError
from tracevla_ros.policy.base import ActionChunk, Observation, PolicyError, validate_chunk
from tracevla_ros.policy.config import PolicyNodeConfig
from tracevla_ros.policy.remote.protocol import (
    DEFAULT_MAX_FRAME,
    VERSION,
    Frame,
    MsgType,
    ProtocolError,
    prompt_to_wire,
    recv_frame,
    send_frame,
)

__all__ = ["RemotePolicy", "make_remote"]


class RemotePolicy:
    """Client of one policy server at (host, port)."""

    def __init__(self, host: str, port: int, timeout_s: float = 1.0, token: str | None = None,
                 max_frame: int = DEFAULT_MAX_FRAME) -> None:
        self.host, self.port, self.timeout_s = host, port, timeout_s
        self.name = f"remote@{host}:{port}"
        self._token = token
        self._max_frame = max_frame
        self._sock: socket.socket | None = None
        self._reset_pending = False
        self._lock = threading.Lock()

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    # --- connection ------------------------------------------------------------
    def _remaining(self, deadline: float) -> float:
        left = deadline - time.monotonic()
        if left <= 0.0:
            raise socket.timeout("deadline passed")
        return left

    def _connect(self, deadline: float) -> socket.socket:
        try:
            sock = socket.create_connection((self.host, self.port), timeout=self._remaining(deadline))
        except ConnectionRefusedError:
            raise PolicyError(f"policy server {self.address} is not running (connection refused): "
                              "start tracevla-serve there or fix server_host/server_port") from None
        except socket.timeout:
            raise PolicyError(f"policy server {self.address} did not accept a connection within "
                              f"{self.timeout_s} s (request_timeout_s)") from None
        except OSError as exc:
            raise PolicyError(f"policy server {self.address} is unreachable: {exc}") from None
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            sock.settimeout(self._remaining(deadline))
            send_frame(sock, Frame(MsgType.HELLO, {"protocol": VERSION, "token": self._token}))
            reply = recv_frame(sock, self._max_frame)
        except BaseException:
            sock.close()
            raise
        if reply.type == MsgType.ERROR:
            sock.close()
            if reply.meta.get("kind") == "auth":
                raise PolicyError(f"policy server {self.address} rejected the token: set the same "
                                  "token in the environment variable named by auth_token_env here "
                                  "and by --token-env on the server")
            raise PolicyError(f"policy server {self.address} refused the connection: "
                              f"{reply.meta.get('message')}")
        if reply.type != MsgType.WELCOME:
            sock.close()
            raise PolicyError(f"policy server {self.address} answered HELLO with {reply.type.name}")
        self.name = f"remote:{reply.meta.get('backend', '?')}"
        return sock

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    # --- Policy ------------------------------------------------------------------
    def _request(self, obs: Observation, budget_s: float) -> Frame:
        arrays: dict[str, np.ndarray] = {"image": obs.image,
                                         "proprio": np.asarray(obs.proprio, np.float32)}
        if obs.overlay is not None:
            arrays["overlay"] = obs.overlay
        meta: dict[str, Any] = {"instruction": obs.instruction, "stamp": float(obs.stamp),
                                "reset": self._reset_pending, "budget_s": budget_s}
        if obs.prompt is not None:  # PixelVLA: the active visual prompt travels with the frame
            meta["prompt"], prompt_arrays = prompt_to_wire(obs.prompt)
            arrays.update(prompt_arrays)
        return Frame(MsgType.INFER, meta, arrays)

    def _exchange(self, req: Frame) -> Frame:
        deadline = time.monotonic() + self.timeout_s
        for attempt in range(2):
            fresh = self._sock is None
            try:
                if self._sock is None:
                    self._sock = self._connect(deadline)
                self._sock.settimeout(self._remaining(deadline))
                send_frame(self._sock, req, self._max_frame)
                return recv_frame(self._sock, self._max_frame)
            except socket.timeout:
                self.close()  # a late answer must not be read as the next request's
                raise PolicyError(f"policy server {self.address} sent no action within "
                                  f"{self.timeout_s} s (request_timeout_s); no action") from None
            except ProtocolError as exc:
                self.close()
                raise PolicyError(f"policy server {self.address} sent a bad frame: {exc}") from None
            except (ConnectionError, OSError) as exc:
                self.close()
                if fresh or attempt == 1:
                    raise PolicyError(f"lost the connection to policy server {self.address}: "
                                      f"{exc}") from None
                # a kept connection died (server restarted): reconnect once
        raise AssertionError("unreachable")

    def exchange(self, req: Frame) -> Frame:
        """Send one request frame and return the reply (serialised with ``infer``; reconnects
        once; PolicyError on timeout, a bad frame or no server). For the other request
        types of the protocol (AFFORD)."""
        with self._lock:
            return self._exchange(req)

    def infer(self, obs: Observation) -> ActionChunk:
        with self._lock:
            reply = self._exchange(self._request(obs, self.timeout_s))
            if not (reply.type == MsgType.ERROR and reply.meta.get("kind") == "expired"):
                self._reset_pending = False  # the server ran the reset
        if reply.type == MsgType.ERROR:
            kind, msg = reply.meta.get("kind", "?"), reply.meta.get("message", "")
            if kind == "expired":  # the server saw our deadline pass before it read our answer
                raise PolicyError(f"policy server {self.address} sent no action within "
                                  f"{self.timeout_s} s (request_timeout_s); no action ({msg})")
            where = "backend" if kind == "policy" else f"{kind} error"
            raise PolicyError(f"policy server {self.address} {where}: {msg}")
        if reply.type != MsgType.ACTION or "values" not in reply.arrays:
            raise PolicyError(f"policy server {self.address} answered with {reply.type.name} "
                              "without action values")
        chunk = ActionChunk(values=np.array(reply.arrays["values"], np.float32),
                            action_space=str(reply.meta.get("action_space", "")),
                            trace_used=bool(reply.meta.get("trace_used", False)))
        return validate_chunk(chunk)

    def reset(self) -> None:
        """O(1): the server's backend is reset with the next request."""
        self._reset_pending = True


def auth_token(env_name: str) -> str | None:
    """The shared token from the environment variable named by parameter ``auth_token_env``
    (None when it names none); ConfigError when that variable is unset or empty."""
    if not env_name:
        return None
    token = os.environ.get(env_name, "")
    if not token:
        raise ConfigError(f"parameter 'auth_token_env': environment variable "
                          f"'{env_name}' is not set or empty (export the shared token)")
    return token


def make_remote(cfg: PolicyNodeConfig) -> RemotePolicy:
    """Backend 'remote' from the node config (no connection until the first step)."""
    return RemotePolicy(cfg.server_host, cfg.server_port, cfg.request_timeout_s,
                        auth_token(cfg.auth_token_env))
