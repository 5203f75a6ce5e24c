"""The policy server: one backend, served over TCP with ``protocol`` frames.

Connections are handled in threads, inference is serialised by one lock (one
request at a time on the model). Each request is logged with its latency.
A request that waited for the model longer than the client's time budget
(``budget_s``: the client has given up on it) is answered ``expired`` without
running the model, so a slow model cannot build up a backlog.
Errors go back to the client as ERROR frames (``policy`` for a PolicyError
of the backend, ``internal`` for anything else, with its type and message) and
the server keeps serving. Started by ``tracevla-serve`` (tracevla_ros.tools.serve).
"""

from __future__ import annotations

import hmac
import logging
import socket
import socketserver
import threading
import time
from typing import Any

import numpy as np

from tracevla_ros.policy.base import Observation, Policy, PolicyError
from tracevla_ros.policy.remote.protocol import (
    DEFAULT_MAX_FRAME,
    VERSION,
    Frame,
    MsgType,
    ProtocolError,
    prompt_from_wire,
    recv_frame,
    send_frame,
)

__all__ = ["PolicyServer", "HANDSHAKE_TIMEOUT_S"]

log = logging.getLogger("tracevla-serve")

HANDSHAKE_TIMEOUT_S = 10.0  # s a new connection may take to say HELLO


def _error(kind: str, message: str) -> Frame:
    return Frame(MsgType.ERROR, {"kind": kind, "message": message})


def observation_from_frame(frame: Frame) -> Observation:
    """INFER frame -> Observation (PolicyError for missing or malformed fields)."""
    image = frame.arrays.get("image")
    if image is None:
        raise PolicyError("request has no 'image' array")
    instruction = frame.meta.get("instruction")
    if not isinstance(instruction, str):
        raise PolicyError("request has no instruction text")
    proprio = frame.arrays.get("proprio", np.zeros(0, np.float32))
    prompt = prompt_from_wire(frame.meta.get("prompt"), frame.arrays)
    return Observation(image=image, overlay=frame.arrays.get("overlay"), instruction=instruction,
                       proprio=np.asarray(proprio, np.float32),
                       stamp=float(frame.meta.get("stamp", 0.0)), prompt=prompt)


class _Handler(socketserver.BaseRequestHandler):
    server: _TCPServer

    def handle(self) -> None:
        srv = self.server.owner
        sock: socket.socket = self.request
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        peer = "%s:%s" % self.client_address[:2]
        try:
            sock.settimeout(HANDSHAKE_TIMEOUT_S)
            hello = recv_frame(sock, srv.max_frame)
            if hello.type != MsgType.HELLO:
                send_frame(sock, _error("protocol", f"expected HELLO first, got {hello.type.name}"))
                return
            if not srv.token_ok(hello.meta.get("token")):
                log.warning("%s: rejected (wrong or missing token)", peer)
                send_frame(sock, _error("auth", "wrong or missing token"))
                return
            send_frame(sock, Frame(MsgType.WELCOME, {"protocol": VERSION, "backend": srv.name}))
            sock.settimeout(None)  # a connected robot may pause between requests
            log.info("%s: connected", peer)
            while not srv.stopping.is_set():
                req = recv_frame(sock, srv.max_frame)
                if req.type == MsgType.AFFORD and srv.affordance is not None:
                    send_frame(sock, srv.handle_afford(req, peer), srv.max_frame)
                    continue
                if req.type != MsgType.INFER or srv.policy is None:
                    send_frame(sock, _error("protocol", f"expected INFER, got {req.type.name}"))
                    return
                send_frame(sock, srv.handle_infer(req, peer), srv.max_frame)
        except ProtocolError as exc:
            log.warning("%s: protocol error: %s", peer, exc)
            try:
                send_frame(sock, _error("protocol", str(exc)))
            except OSError:
                pass
        except (ConnectionError, socket.timeout, OSError) as exc:
            log.info("%s: disconnected (%s)", peer, exc)


class _TCPServer(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True
    block_on_close = False
    owner: PolicyServer


class PolicyServer:
    """Serve ``policy`` on (host, port); ``token`` None = no authentication.

    Use ``serve_forever()`` in one thread and ``shutdown()`` from another;
    ``address`` is the bound (host, port) (port 0 picks a free one).
    """

    def __init__(self, policy: Policy, host: str = "127.0.0.1", port: int = 8765,
                 token: str | None = None, max_frame: int = DEFAULT_MAX_FRAME,
                 affordance: Any = None) -> None:
        self.policy = policy
        self.affordance = affordance  # an AffordanceBackend answering AFFORD frames, or None
        self.max_frame = max_frame
        self._token = token
        self._model_lock = threading.Lock()
        self.stopping = threading.Event()
        self.requests = 0
        self.expired = 0
        self._tcp = _TCPServer((host, port), _Handler)
        self._tcp.owner = self

    @property
    def name(self) -> str:
        """The served backends' names (policy, then affordance model)."""
        names = [getattr(b, "name", "?") for b in (self.policy, self.affordance) if b is not None]
        return "+".join(names)

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._tcp.server_address[:2]
        return str(host), int(port)

    def token_ok(self, token: Any) -> bool:
        if self._token is None:
            return True
        return isinstance(token, str) and hmac.compare_digest(token.encode(), self._token.encode())

    def handle_infer(self, req: Frame, peer: str) -> Frame:
        """Run one request under the model lock; every failure becomes an ERROR frame."""
        t0 = time.monotonic()
        budget = req.meta.get("budget_s")
        with self._model_lock:
            t1 = time.monotonic()
            self.requests += 1
            n = self.requests
            try:
                if isinstance(budget, (int, float)) and t1 - t0 > budget:
                    # the client gave up while this waited for the model: do not run it
                    reply = _error("expired", f"waited {t1 - t0:.2f} s for the model, longer than "
                                   f"the client's {budget:.2f} s budget")
                    self.expired += 1
                    log.info("request %d from %s: expired in the queue (%.1f ms)", n, peer,
                             (t1 - t0) * 1e3)
                    return reply
                if req.meta.get("reset"):
                    self.policy.reset()
                chunk = self.policy.infer(observation_from_frame(req))
                reply = Frame(MsgType.ACTION,
                              {"action_space": chunk.action_space, "trace_used": bool(chunk.trace_used),
                               "infer_s": time.monotonic() - t1},
                              {"values": np.asarray(chunk.values, np.float32)})
            except PolicyError as exc:
                reply = _error("policy", str(exc))
            except Exception as exc:  # noqa: BLE001 - forwarded to the client, logged with traceback
                log.exception("request %d from %s: backend raised", n, peer)
                reply = _error("internal", f"{type(exc).__name__}: {exc}")
        t2 = time.monotonic()
        log.info("request %d from %s: %s in %.1f ms (queued %.1f ms, model %.1f ms)", n, peer,
                 "action" if reply.type == MsgType.ACTION else f"error ({reply.meta['kind']})",
                 (t2 - t0) * 1e3, (t1 - t0) * 1e3, (t2 - t1) * 1e3)
        return reply

    def handle_afford(self, req: Frame, peer: str) -> Frame:
        """One affordance question under the model lock: a POINTS frame with the model's text
        answer (the client parses it), or an ERROR frame."""
        from tracevla_ros.affordance.backend import AffordanceError

        t0 = time.monotonic()
        budget = req.meta.get("budget_s")
        with self._model_lock:
            t1 = time.monotonic()
            self.requests += 1
            if isinstance(budget, (int, float)) and t1 - t0 > budget:
                self.expired += 1
                return _error("expired", f"waited {t1 - t0:.2f} s for the model, longer than "
                              f"the client's {budget:.2f} s budget")
            image, instruction = req.arrays.get("image"), req.meta.get("instruction")
            if image is None or not isinstance(instruction, str):
                return _error("policy", "affordance request needs an 'image' and an instruction")
            try:
                result = self.affordance.predict(np.asarray(image), instruction)
            except AffordanceError as exc:
                return _error("policy", str(exc))
            except Exception as exc:  # noqa: BLE001 - forwarded to the client, logged
                log.exception("affordance request from %s: backend raised", peer)
                return _error("internal", f"{type(exc).__name__}: {exc}")
        log.info("affordance request from %s answered in %.1f ms", peer,
                 (time.monotonic() - t0) * 1e3)
        return Frame(MsgType.POINTS, {"text": result.raw_text, "infer_s": time.monotonic() - t1})

    def serve_forever(self) -> None:
        self._tcp.serve_forever(poll_interval=0.1)

    def shutdown(self) -> None:
        """Stop accepting, close the listening socket (open connections end with the process)."""
        self.stopping.set()
        self._tcp.shutdown()
        self._tcp.server_close()
