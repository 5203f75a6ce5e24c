"""tracevla-prompt: send one visual prompt (PixelVLA) to the running stack.

    tracevla-prompt --point 0.42 0.61 --label carrot
    tracevla-prompt --box 0.2 0.3 0.5 0.7 --line 0.1 0.9 0.6 0.4
    tracevla-prompt --pixels --image-size 640 480 --point 270 293
    tracevla-prompt --pixels --point 270 293      # image size from /camera/camera_info
    tracevla-prompt --mask region.png             # non-zero pixels = inside
    tracevla-prompt --clear                       # policy_node drops its prompt

Coordinates are normalized (x = column / width, y = row / height, in [0, 1], origin
top-left) unless ``--pixels``. Publishes one tracevla_ros/VisualPrompt on
``--topic`` (reliable, keep-last 1, as policy_node subscribes), after waiting up to
``--timeout`` s for a subscriber (none by then: a warning, still sent, exit 0).

The message is stamped 0 ("unstamped"): policy_node counts its age from arrival on its
own clock, so ``prompt_max_age_s`` works the same under sim time (replay). Bad input
(values outside [0, 1] or the image, an inverted box, an unreadable PNG, nothing to send)
is one line on stderr and exit 2, before anything is published.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from tracevla_ros.cli import ArgParser, UsageError, existing_file, finite_float, int_range, require, run_main

PROG = "tracevla-prompt"


def build_parser() -> ArgParser:
    ap = ArgParser(PROG, description=__doc__)
    num = finite_float()
    ap.add_argument("--point", nargs=2, type=num, action="append", default=[], metavar=("X", "Y"),
                    help="a point (repeatable)")
    ap.add_argument("--line", nargs=4, type=num, action="append", default=[],
                    metavar=("X0", "Y0", "X1", "Y1"), help="a line segment (repeatable)")
    ap.add_argument("--box", nargs=4, type=num, action="append", default=[],
                    metavar=("X0", "Y0", "X1", "Y1"), help="a box, top-left then bottom-right "
                    "corner (repeatable)")
    ap.add_argument("--mask", type=existing_file, default=None, metavar="PNG",
                    help="region mask image: non-zero pixels are inside; sets the image size")
    ap.add_argument("--label", action="append", default=[],
                    help="a label per point, line, box in that order (all or none)")
    ap.add_argument("--pixels", action="store_true",
                    help="values are pixels of the image (size from --image-size, the mask or "
                    "--camera-info)")
    ap.add_argument("--image-size", nargs=2, type=int_range(1, 100_000), default=None,
                    metavar=("W", "H"), help="image size in pixels (default: unknown, or as --pixels says)")
    ap.add_argument("--clear", action="store_true", help="send an empty prompt: the policy drops its prompt")
    ap.add_argument("--topic", default="/visual_prompt", help="VisualPrompt topic")
    ap.add_argument("--camera-info", default="/camera/camera_info",
                    help="CameraInfo topic read for the image size with --pixels and no --image-size")
    ap.add_argument("--frame-id", default="", help="header.frame_id (the camera's optical frame)")
    ap.add_argument("--timeout", type=finite_float(gt=0, le=600), default=5.0,
                    help="seconds to wait for a subscriber (and for the camera info)")
    return ap


def _read_mask(path: Path) -> np.ndarray:
    import cv2

    img = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if img is None or img.size == 0:
        raise UsageError(f"--mask {path}: not a readable image (give a PNG: non-zero = inside)")
    return img != 0


def _normalized(flag: str, values: list[list[float]], size: tuple[int, int] | None) -> np.ndarray:
    """(N, k) values -> normalized, each checked inside [0, 1] (or the image, with pixels)."""
    width = 2 if flag == "--point" else 4
    arr = np.asarray(values, np.float64).reshape(-1, width)
    if size is not None:
        arr = arr / np.tile(np.asarray(size, np.float64), width // 2)
    for row, raw in zip(arr, values):
        if np.any((row < 0.0) | (row > 1.0)):
            where = (f"inside the {size[0]}x{size[1]} image (--pixels)" if size is not None
                     else "in [0, 1] (normalized; add --pixels for pixel values)")
            raise UsageError(f"{flag} {' '.join(f'{v:g}' for v in raw)}: values must be {where}")
        if flag == "--box" and (row[2] < row[0] or row[3] < row[1]):
            raise UsageError(f"--box {' '.join(f'{v:g}' for v in raw)}: inverted; give the top-left "
                             "corner X0 Y0 first, then the bottom-right X1 Y1 (X1 >= X0, Y1 >= Y0)")
    return arr.astype(np.float32)


def _camera_info_size(node: Any, topic: str, timeout: float) -> tuple[int, int]:
    from rclpy.executors import SingleThreadedExecutor
    from sensor_msgs.msg import CameraInfo

    from tracevla_ros.nodes.common import SENSOR_QOS

    got: list[Any] = []
    sub = node.create_subscription(CameraInfo, topic, got.append, SENSOR_QOS)
    ex = SingleThreadedExecutor(context=node.context)
    ex.add_node(node)
    end = time.monotonic() + timeout
    while not got and time.monotonic() < end:
        ex.spin_once(timeout_sec=0.05)
    ex.remove_node(node)
    ex.shutdown()
    node.destroy_subscription(sub)
    require(bool(got) and got[-1].width > 0 and got[-1].height > 0,
            f"--pixels: no CameraInfo with a size on {topic} within {timeout:g} s; give "
            "--image-size W H (or --camera-info TOPIC)")
    return int(got[-1].width), int(got[-1].height)


def build_prompt(args: argparse.Namespace, size: tuple[int, int] | None) -> Any:
    """The VisualPrompt the arguments describe (``size``: pixels -> normalized), stamp 0."""
    from tracevla_ros.policy.prompt import PromptError, VisualPrompt

    mask = _read_mask(args.mask) if args.mask is not None else None
    image_size = tuple(args.image_size) if args.image_size else size
    if mask is not None:
        msize = (mask.shape[1], mask.shape[0])
        require(image_size is None or tuple(image_size) == msize,
                f"--mask {args.mask} is {msize[0]}x{msize[1]}, the image is "
                f"{image_size[0] if image_size else 0}x{image_size[1] if image_size else 0}: "
                "give a mask of the image's size")
        image_size = msize
    scale = image_size if args.pixels else None
    try:
        return VisualPrompt(points=_normalized("--point", args.point, scale),
                            lines=_normalized("--line", args.line, scale),
                            boxes=_normalized("--box", args.box, scale), mask=mask,
                            image_size=image_size or (0, 0), labels=tuple(args.label), stamp=0.0)
    except PromptError as exc:
        raise UsageError(str(exc)) from None


def _main(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    given = bool(args.point or args.line or args.box or args.mask)
    require(given or args.clear, "nothing to send: give --point, --line, --box, --mask or --clear")
    require(not (given and args.clear), "--clear sends an empty prompt: give it alone")
    require(not (args.label and args.clear), "--label needs a --point, --line or --box")
    need_info = args.pixels and not args.image_size and args.mask is None and not args.clear
    prompt = None if args.clear or need_info else build_prompt(args, None)

    import rclpy
    from rclpy.duration import Duration

    from tracevla_ros.msg import VisualPrompt as VisualPromptMsg
    from tracevla_ros.nodes.common import PROMPT_QOS
    from tracevla_ros.ros_prompt import clear_msg, prompt_to_msg

    ctx = rclpy.Context()
    rclpy.init(args=[], context=ctx)
    node = rclpy.create_node("tracevla_prompt", context=ctx)
    try:
        if need_info:
            prompt = build_prompt(args, _camera_info_size(node, args.camera_info, args.timeout))
        pub = node.create_publisher(VisualPromptMsg, args.topic, PROMPT_QOS)
        end = time.monotonic() + args.timeout
        while pub.get_subscription_count() == 0 and time.monotonic() < end:
            time.sleep(0.02)
        if pub.get_subscription_count() == 0:
            print(f"{PROG}: warning: no subscriber on {args.topic} within {args.timeout:g} s; "
                  "sent anyway (is policy_node running?)", file=sys.stderr)
        msg = clear_msg(0.0, args.frame_id) if prompt is None else prompt_to_msg(prompt, args.frame_id)
        pub.publish(msg)
        pub.wait_for_all_acked(timeout=Duration(seconds=min(args.timeout, 2.0)))
        what = "clear" if prompt is None else ", ".join(prompt.kinds())
        print(f"{PROG}: sent {what} on {args.topic}")
    finally:
        node.destroy_node()
        rclpy.shutdown(context=ctx)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(PROG, _main, argv)


if __name__ == "__main__":
    raise SystemExit(main())
