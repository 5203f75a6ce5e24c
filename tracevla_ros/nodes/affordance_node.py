"""affordance_node: image + instruction -> TRACE affordance points and a PixelVLA prompt.

On a new instruction (latched ``instruction`` topic) or a ``~/request`` service
call (std_srvs/Trigger: ask again on the newest image), the worker thread runs
the affordance backend (``tracevla_ros.affordance.backend``) on the newest
camera frame; a request that arrives while one runs supersedes it (the old
answer is dropped). Callbacks are O(1).

Subscribes: image (sensor_msgs/Image), instruction (std_msgs/String, latched).
Publishes:  affordance (AffordancePoints: instruction, reasoning, points, scores),
            prompt (VisualPrompt of the points, for the PixelVLA policy),
            image_affordance (rgb8 overlay of the points, for rviz).
Bad input (empty instruction, an image that is not rgb8/bgr8/mono8, a backend
that fails or times out, an answer without points in [0, 1]) is one warning
and nothing is published.
"""

from __future__ import annotations

import numpy as np
from rclpy.node import Node
from sensor_msgs.msg import Image
from std_msgs.msg import String
from std_srvs.srv import Trigger

from tracevla_ros.affordance.backend import AffordanceBackend, AffordanceError, make_backend
from tracevla_ros.affordance.config import AffordanceNodeConfig
from tracevla_ros.affordance.requests import AffordanceRequests, draw_points, prompt_from_result
from tracevla_ros.msg import AffordancePoints, VisualPrompt
from tracevla_ros.nodes.common import LATCHED_QOS, RELIABLE_QOS, SENSOR_QOS, declare_config, \
    run_node, stamp_to_sec
from tracevla_ros.ros_image import ImageConversionError, image_to_rgb, numpy_to_image
from tracevla_ros.worker import WakeWorker


class AffordanceNode(Node):
    def __init__(self, backend: AffordanceBackend | None = None, **kwargs: object) -> None:
        super().__init__("affordance_node", **kwargs)  # type: ignore[arg-type]
        self.cfg = declare_config(self, AffordanceNodeConfig)
        self._backend = backend if backend is not None else make_backend(self.cfg)
        self._requests = AffordanceRequests()
        self._image: Image | None = None
        self._instruction = ""
        self.published = 0
        self.create_subscription(Image, "image", self._on_image, SENSOR_QOS)
        self.create_subscription(String, "instruction", self._on_instruction, LATCHED_QOS)
        self.create_service(Trigger, "~/request", self._on_request)
        self._pub_points = self.create_publisher(AffordancePoints, "affordance", RELIABLE_QOS)
        self._pub_prompt = self.create_publisher(VisualPrompt, "prompt", LATCHED_QOS)
        self._pub_overlay = self.create_publisher(Image, "image_affordance", RELIABLE_QOS)
        self._worker = WakeWorker(self._on_wake, "affordance_worker", on_error=self._on_worker_error)
        self._worker.start()
        if self.cfg.instruction.strip():
            self._submit(self.cfg.instruction.strip())
        self.get_logger().info(f"affordance backend '{self._backend.name}'")

    # --- callbacks: O(1) -------------------------------------------------------
    def _on_image(self, msg: Image) -> None:
        self._image = msg  # converted in the worker (a bad encoding is reported there)
        self._worker.wake()

    def _on_instruction(self, msg: String) -> None:
        text = msg.data.strip()
        if not text:
            self.get_logger().warning("empty instruction: no affordance request, no prompt")
            return
        if text != self._instruction:
            self._submit(text)

    def _on_request(self, req: Trigger.Request, res: Trigger.Response) -> Trigger.Response:
        if not self._instruction:
            res.success, res.message = False, "no instruction yet: publish one on 'instruction'"
        else:
            n = self._submit(self._instruction)
            res.success, res.message = True, f"request {n} queued for '{self._instruction}'"
        return res

    def _submit(self, text: str) -> int:
        self._instruction = text
        n = self._requests.submit(text).number
        self._worker.wake()
        return n

    # --- worker ------------------------------------------------------------------
    def _on_worker_error(self, exc: Exception) -> None:
        self.get_logger().error(f"affordance step failed: {type(exc).__name__}: {exc}")

    def _on_wake(self) -> None:
        log = self.get_logger()
        req = self._requests.take()
        if req is None:
            return
        msg = self._image
        now = self.get_clock().now().nanoseconds * 1e-9
        if msg is None or now - stamp_to_sec(msg.header.stamp) > self.cfg.max_image_age_s:
            self._requests.put_back(req)  # waits for a (fresh) frame
            return
        try:
            image = image_to_rgb(msg)
        except ImageConversionError as exc:
            log.warning(f"request {req.number}: image unusable ({exc}); nothing published")
            return
        try:
            result = self._backend.predict(image, req.instruction)
        except AffordanceError as exc:
            log.warning(f"request {req.number} ('{req.instruction}'): no answer: {exc}; "
                        "nothing published")
            return
        if not self._requests.current(req):
            log.info(f"request {req.number} superseded while it ran: answer dropped")
            return
        for w in result.warnings:
            log.warning(f"request {req.number}: {w}")
        stamp = stamp_to_sec(msg.header.stamp)
        prompt, why = prompt_from_result(result, image.shape[1], image.shape[0], stamp,
                                         self.cfg.prompt_points)
        if prompt is None:
            log.warning(f"request {req.number}: no prompt published: {why}")
            return
        out = AffordancePoints(instruction=req.instruction, reasoning=result.reasoning,
                               points=np.asarray(result.points, np.float64).ravel().tolist(),
                               scores=np.asarray(result.scores, np.float32).tolist())
        out.header = msg.header
        vp = VisualPrompt(image_width=image.shape[1], image_height=image.shape[0],
                          points=prompt.points.ravel().tolist())
        vp.header = msg.header
        self._pub_points.publish(out)
        self._pub_prompt.publish(vp)
        self._pub_overlay.publish(numpy_to_image(draw_points(image, prompt.points), "rgb8", msg.header))
        self.published += 1
        log.info(f"request {req.number}: {len(prompt.points)} point(s) for '{req.instruction}'")

    def close(self) -> None:
        self._worker.close()
        close = getattr(self._backend, "close", None)
        if callable(close):
            close()


def main(args: list[str] | None = None) -> int:
    return run_node(AffordanceNode, args, name="affordance_node", config=AffordanceNodeConfig)
