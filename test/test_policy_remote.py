"""tracevla-serve + backend 'remote' over loopback with a real server process.

The server runs ``test/support/vla_test_backend.py`` (an action that encodes
what the server received), started as ``python -m tracevla_ros.tools.serve``.
"""

from __future__ import annotations

import os
import select
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest

from tracevla_ros.config import ConfigError
from tracevla_ros.policy.base import Observation, PolicyError
from tracevla_ros.policy.config import PolicyNodeConfig
from tracevla_ros.policy.registry import make_policy
from tracevla_ros.policy.remote.client import RemotePolicy
from tracevla_ros.policy.remote.protocol import (
    HEADER,
    Frame,
    MsgType,
    ProtocolError,
    decode_frame,
    encode_frame,
    parse_header,
)

SUPPORT = Path(__file__).resolve().parent / "support"
BACKEND = "vla_test_backend:make_policy"


class Server:
    """A tracevla-serve subprocess; ``port`` once it printed its address."""

    def __init__(self, tmp: Path, port: int = 0, token: str | None = None,
                 extra: tuple[str, ...] = ()) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SUPPORT), env.get("PYTHONPATH", "")]))
        args = [sys.executable, "-m", "tracevla_ros.tools.serve", "--backend", BACKEND,
                "--port", str(port), *extra]
        if token is not None:
            env["TEST_TVLA_TOKEN"] = token
            args += ["--token-env", "TEST_TVLA_TOKEN"]
        self.log = tmp / f"serve_{time.monotonic_ns()}.log"
        self._log_file = self.log.open("w")
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=self._log_file, text=True,
                                     env=env, cwd=Path(__file__).resolve().parent.parent)
        self.port = self._wait_ready()

    def _wait_ready(self, timeout: float = 30.0) -> int:
        assert self.proc.stdout is not None
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            ready, _, _ = select.select([self.proc.stdout], [], [], 0.2)
            if ready:
                line = self.proc.stdout.readline()
                if "serving" in line:
                    self.host = line.rsplit(" on ", 1)[1].rsplit(":", 1)[0]
                    return int(line.rsplit(":", 1)[1])
            if self.proc.poll() is not None:
                break
        self.stop()
        pytest.fail(f"tracevla-serve did not start:\n{self.log.read_text()}")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log_file.close()
        return int(self.proc.returncode)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    s = Server(tmp_path)
    yield s
    s.stop()


def _obs(instruction: str = "move right", overlay: bool = True) -> Observation:
    img = np.zeros((256, 256, 3), np.uint8)
    img[0, 0, 0] = 200
    img[10:20, 10:20] = 77
    ovl = img.copy()
    ovl[0, 0, 1] = 33
    return Observation(image=img, overlay=ovl if overlay else None, instruction=instruction,
                       proprio=np.array([0.25, -0.5, 1.5], np.float32), stamp=12.5)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- protocol (no sockets) ----------------------------------------------------------
def _roundtrip(frame: Frame) -> Frame:
    raw = b"".join(bytes(b) for b in encode_frame(frame))
    mtype, jl, pl = parse_header(raw[:HEADER.size], 1 << 20)
    body = raw[HEADER.size:]
    return decode_frame(mtype, body[:jl], bytearray(body[jl:jl + pl]))


def test_frames_round_trip_arrays_exactly() -> None:
    a = np.arange(24, dtype=np.float32).reshape(2, 3, 4) / 7
    b = np.array([[1, 2], [3, 4]], np.uint8)
    out = _roundtrip(Frame(MsgType.INFER, {"instruction": "go", "n": 3}, {"a": a, "b": b.T}))
    assert out.type == MsgType.INFER and out.meta == {"instruction": "go", "n": 3}
    assert out.arrays["a"].dtype == np.float32 and np.array_equal(out.arrays["a"], a)
    assert np.array_equal(out.arrays["b"], b.T)  # non-contiguous input arrives in C order
    out.arrays["b"][0, 0] = 9  # received arrays are writable
    odd = _roundtrip(Frame(MsgType.ACTION, {}, {"s": np.float64(3.5), "e": np.zeros((0, 7), np.float32),
                                                "m": np.array([True, False])}))
    assert odd.arrays["s"].shape == () and float(odd.arrays["s"]) == 3.5
    assert odd.arrays["e"].shape == (0, 7) and odd.arrays["m"].tolist() == [True, False]


def test_protocol_rejects_bad_frames() -> None:
    good = b"".join(bytes(b) for b in encode_frame(Frame(MsgType.ACTION, {}, {"v": np.zeros(7, np.float32)})))
    with pytest.raises(ProtocolError, match="not a tracevla frame"):
        parse_header(b"HTTP" + good[4:HEADER.size], 1 << 20)
    with pytest.raises(ProtocolError, match="exceeds the limit"):
        parse_header(HEADER.pack(b"TVLA", 1, 4, 0, 10, 1 << 40), 1 << 20)  # before any allocation
    with pytest.raises(ProtocolError, match="protocol version 9"):
        parse_header(HEADER.pack(b"TVLA", 9, 4, 0, 0, 0), 1 << 20)
    with pytest.raises(ProtocolError, match="dtype object not allowed"):
        encode_frame(Frame(MsgType.INFER, {}, {"x": np.array([object()])}))
    with pytest.raises(ProtocolError, match="not plain JSON"):
        encode_frame(Frame(MsgType.INFER, {"x": float("nan")}))
    js = b'{"meta": {}, "arrays": [{"name": "v", "dtype": "float32", "shape": [8], "offset": 0, "nbytes": 32}]}'
    with pytest.raises(ProtocolError, match="do not match"):
        decode_frame(MsgType.ACTION, js, bytearray(28))  # payload shorter than declared


# --- over loopback with a real server ---------------------------------------------------
def test_round_trip_exact_values_and_reset(server: Server) -> None:
    assert server.host == "127.0.0.1"  # loopback unless --host says otherwise
    client = RemotePolicy("127.0.0.1", server.port, timeout_s=5.0)
    chunk = client.infer(_obs("move right"))
    img = _obs().image
    expected = np.array([[0.2, img.mean() / 1000, 0.033, 0.010, 1.25, 0.0, 1.0]], np.float32)
    assert chunk.values.dtype == np.float32 and chunk.values.shape == (1, 7)
    assert np.array_equal(chunk.values, expected)
    assert chunk.trace_used and chunk.action_space == "ee_delta_7d"
    assert client.name == "remote:test-encoder"
    assert not client.infer(_obs(overlay=False)).trace_used
    client.reset()
    assert client.infer(_obs()).values[0, 5] == np.float32(0.01)  # the reset reached the backend
    assert client.infer(_obs()).values[0, 5] == np.float32(0.01)  # and only once
    assert server.stop() == 128 + signal.SIGTERM  # stopped by SIGTERM, cleanly
    assert "request 4 from 127.0.0.1" in server.log.read_text()  # per-request latency log


def test_server_down_is_one_clear_error() -> None:
    client = RemotePolicy("127.0.0.1", _free_port(), timeout_s=1.0)
    with pytest.raises(PolicyError, match=r"is not running \(connection refused\): start tracevla-serve"):
        client.infer(_obs())


def test_timeout_then_recovery(server: Server) -> None:
    client = RemotePolicy("127.0.0.1", server.port, timeout_s=0.3)
    with pytest.raises(PolicyError, match=r"sent no action within 0.3 s \(request_timeout_s\)"):
        client.infer(_obs("sleep 1.0"))
    client.timeout_s = 5.0
    chunk = client.infer(_obs("move right"))  # new connection; the late answer is not mixed in
    assert chunk.values[0, 3] == np.float32(0.010)


def test_requests_the_client_gave_up_on_are_not_run(server: Server) -> None:
    slow = RemotePolicy("127.0.0.1", server.port, timeout_s=0.2)
    for _ in range(4):  # the first occupies the model for 1 s, the next ones expire in the queue
        with pytest.raises(PolicyError, match="sent no action"):
            slow.infer(_obs("sleep 1.0"))
    fast = RemotePolicy("127.0.0.1", server.port, timeout_s=5.0)
    fast.infer(_obs("move right"))
    server.stop()
    log = server.log.read_text()
    assert log.count("expired in the queue") >= 2  # those sleeps never ran


def test_wrong_token_is_rejected(tmp_path: Path) -> None:
    srv = Server(tmp_path, token="s3cret")
    try:
        with pytest.raises(PolicyError, match="rejected the token"):
            RemotePolicy("127.0.0.1", srv.port, 2.0, token="wrong").infer(_obs())
        with pytest.raises(PolicyError, match="rejected the token"):
            RemotePolicy("127.0.0.1", srv.port, 2.0, token=None).infer(_obs())
        ok = RemotePolicy("127.0.0.1", srv.port, 2.0, token="s3cret").infer(_obs())
        assert ok.values.shape == (1, 7)
    finally:
        srv.stop()


def test_nan_output_is_rejected_by_the_client(server: Server) -> None:
    with pytest.raises(PolicyError, match="non-finite value at step 0, dim 2"):
        RemotePolicy("127.0.0.1", server.port, 5.0).infer(_obs("nan"))


def test_server_side_errors_are_forwarded(server: Server) -> None:
    client = RemotePolicy("127.0.0.1", server.port, 5.0)
    with pytest.raises(PolicyError, match="backend: test backend refuses this instruction"):
        client.infer(_obs("fail"))
    with pytest.raises(PolicyError, match="internal error: ZeroDivisionError: division by zero"):
        client.infer(_obs("crash"))
    assert client.infer(_obs()).values.shape == (1, 7)  # the server keeps serving


def test_reconnects_after_server_restart(tmp_path: Path) -> None:
    first = Server(tmp_path)
    client = RemotePolicy("127.0.0.1", first.port, 5.0)
    client.infer(_obs())
    assert first.stop() == 128 + signal.SIGTERM
    with pytest.raises(PolicyError, match="connection refused|lost the connection"):
        client.infer(_obs())
    second = Server(tmp_path, port=first.port)
    try:
        assert client.infer(_obs()).values.shape == (1, 7)
    finally:
        second.stop()


def test_remote_backend_from_config(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="'NO_SUCH_TVLA_VAR' is not set"):
        make_policy(PolicyNodeConfig(backend="remote", auth_token_env="NO_SUCH_TVLA_VAR"))
    monkeypatch.setenv("TVLA_T", "abc")
    p = make_policy(PolicyNodeConfig(backend="remote", server_port=9, auth_token_env="TVLA_T",
                                     request_timeout_s=0.5))
    assert isinstance(p, RemotePolicy) and p.port == 9 and p.timeout_s == 0.5
    with pytest.raises(ConfigError, match="auth_token_env"):
        PolicyNodeConfig(auth_token_env="abc def")


def test_serve_cli_errors_exit_2() -> None:
    env = {k: v for k, v in os.environ.items() if k != "NO_SUCH_TVLA_VAR"}
    r = subprocess.run([sys.executable, "-m", "tracevla_ros.tools.serve", "--backend", BACKEND,
                        "--token-env", "NO_SUCH_TVLA_VAR"], capture_output=True, text=True,
                       env=env | {"PYTHONPATH": str(SUPPORT)}, timeout=30)
    assert r.returncode == 2 and "NO_SUCH_TVLA_VAR' is not set" in r.stderr
    r = subprocess.run([sys.executable, "-m", "tracevla_ros.tools.serve", "--backend", "nope"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "unknown policy backend 'nope'" in r.stderr


# --- policy_node with backend 'remote' over real DDS (loopback, see conftest) ------------------
class NodeHarness:
    """policy_node (backend remote) + a node that feeds images/instructions and records outputs."""

    def __init__(self, port: int, **params: object) -> None:
        self.rclpy = pytest.importorskip("rclpy")
        from rcl_interfaces.msg import Log
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.node import Node
        from rclpy.parameter import Parameter
        from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import Image
        from std_msgs.msg import String

        from tracevla_ros.msg import PolicyAction
        from tracevla_ros.nodes.common import LATCHED_QOS, RELIABLE_QOS, SENSOR_QOS
        from tracevla_ros.nodes.policy_node import PolicyNode

        self.String = String
        self.ctx = self.rclpy.Context()
        self.rclpy.init(context=self.ctx)
        overrides = {"backend": "remote", "server_port": port, "use_trace": False,
                     "control_rate_hz": 5.0, **params}
        self.node = PolicyNode(context=self.ctx, parameter_overrides=[
            Parameter(k, value=v) for k, v in overrides.items()])
        self.io = Node("remote_policy_io", context=self.ctx)
        self.actions: list[PolicyAction] = []
        self.logs: list[str] = []
        self.io.create_subscription(PolicyAction, "action", self.actions.append, RELIABLE_QOS)
        self.io.create_subscription(
            Log, "/rosout", lambda m: self.logs.append(m.msg) if m.name == "policy_node" else None,
            QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE,
                       durability=DurabilityPolicy.TRANSIENT_LOCAL))
        self.pub_img = self.io.create_publisher(Image, "image", SENSOR_QOS)
        self.pub_in = self.io.create_publisher(String, "instruction", LATCHED_QOS)
        self.ex = SingleThreadedExecutor(context=self.ctx)
        self.ex.add_node(self.node)
        self.ex.add_node(self.io)

    def instruct(self, text: str) -> None:
        self.pub_in.publish(self.String(data=text))

    def spin(self, seconds: float, image: np.ndarray, encoding: str = "rgb8") -> None:
        from tracevla_ros.nodes.common import sec_to_stamp
        from tracevla_ros.ros_image import numpy_to_image

        end, last = time.monotonic() + seconds, 0.0
        while time.monotonic() < end:
            if time.monotonic() - last > 0.1:
                last = time.monotonic()
                m = numpy_to_image(image, encoding)
                m.header.stamp = sec_to_stamp(self.io.get_clock().now().nanoseconds * 1e-9)
                self.pub_img.publish(m)
            self.ex.spin_once(timeout_sec=0.02)

    def close(self) -> None:
        self.node.close()
        self.node.destroy_node()
        self.io.destroy_node()
        self.rclpy.shutdown(context=self.ctx)


IMG64 = np.full((64, 64, 3), 40, np.uint8)


@pytest.mark.ros
def test_policy_node_publishes_nothing_while_the_server_times_out(server: Server) -> None:
    h = NodeHarness(server.port, request_timeout_s=0.3)
    try:
        h.instruct("sleep 1.0")  # every answer takes 1 s > the 0.3 s timeout
        h.spin(2.5, IMG64)
        assert h.actions == []
        assert any("gave no usable action" in m and "sent no action within 0.3 s" in m
                   for m in h.logs), h.logs
        h.instruct("move right")  # the same server answers fast again
        h.spin(3.0, IMG64)
        assert h.actions, h.logs
        a = h.actions[-1]
        assert a.policy_name == "remote:test-encoder" and not a.trace_used
        assert a.values[0] == pytest.approx(0.040) and a.values[3] == pytest.approx(0.010)
    finally:
        h.close()


@pytest.mark.ros
def test_policy_node_drops_late_actions_and_bad_images(server: Server) -> None:
    h = NodeHarness(server.port, request_timeout_s=2.0, max_input_age_s=0.4)
    try:
        h.instruct("sleep 0.6")  # answered within the timeout, but 0.6 s after the frame
        h.spin(1.0, np.zeros((64, 64), np.uint16), encoding="16UC1")  # depth on the colour topic
        assert h.actions == []
        assert any("image dropped" in m and "'16UC1' is not a colour encoding" in m
                   for m in h.logs), h.logs
        h.spin(2.0, IMG64)
        assert h.actions == []
        assert any("dropped as stale" in m for m in h.logs), h.logs
    finally:
        h.close()


def test_prompt_round_trips_over_the_wire() -> None:
    """The active visual prompt (PixelVLA) reaches a server-side backend unchanged."""
    from tracevla_ros.policy.prompt import VisualPrompt
    from tracevla_ros.policy.remote.protocol import (Frame, MsgType, decode_frame, encode_frame,
                                                     prompt_to_wire)
    from tracevla_ros.policy.remote.server import observation_from_frame

    mask = np.zeros((4, 6), bool)
    mask[1:3, 2:4] = True
    p = VisualPrompt(points=[[0.5, 0.25]], boxes=[[0.1, 0.2, 0.3, 0.4]], mask=mask,
                     labels=("cup", "region"), stamp=3.5)
    client = RemotePolicy("127.0.0.1", 1, 1.0)  # builds the request only; never connects
    frame = client._request(Observation(np.zeros((4, 6, 3), np.uint8), None, "pick the cup",
                                        prompt=p), 1.0)
    meta, _ = prompt_to_wire(p)
    parts = encode_frame(frame)
    header, js, payload = bytes(parts[0]), bytes(parts[1]), bytearray(b"".join(map(bytes, parts[2:])))
    got = observation_from_frame(decode_frame(MsgType.INFER, js, payload)).prompt
    assert got is not None and got.kinds() == ("point", "box", "mask")
    np.testing.assert_array_equal(got.points, p.points)
    np.testing.assert_array_equal(got.boxes, p.boxes)
    np.testing.assert_array_equal(got.mask, mask)
    assert got.labels == ("cup", "region") and got.stamp == 3.5 and got.image_size == (6, 4)
    no_prompt = Frame(MsgType.INFER, {"instruction": "x"}, {"image": np.zeros((4, 6, 3), np.uint8)})
    assert observation_from_frame(no_prompt).prompt is None
    bad = Frame(MsgType.INFER, {"instruction": "x", "prompt": meta},
                {"image": np.zeros((4, 6, 3), np.uint8), "prompt_points": np.array([[2.0, 0.5]], np.float32)})
    with pytest.raises(PolicyError, match="prompt is malformed"):
        observation_from_frame(bad)
