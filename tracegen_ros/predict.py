"""TraceGen inference: one RGB-D frame + instruction -> a 3D trace (and ``tracegen-predict``).

``TraceGenPredictor.predict`` returns (400, 32, 3) float32 screen-aligned
(u px, v px, z m) in the input camera's frame, step 0 = the reference frame,
for the keypoint grid ``grid_keypoints(H, W)`` (row-major). Predicted depth is
rescaled to the sensor depth with a Gaussian-blurred pixel-wise ratio map
(``tracegen_ros.transforms.depth_ratio_rescale``).

Example::

    tracegen-predict --checkpoint tracegen_ros/checkpoints/fr3_small \\
        --rgb frame.png --depth frame_raw.npz --intrinsics 221.7,221.7,127.5,127.5 \\
        --instruction "push the block into the green region" --out /tmp/pred

writes ``/tmp/pred/trace.npz`` (the ``Trace3D`` message layout, below) and
``/tmp/pred/overlay.png``. ``--depth`` is an ``.npz`` with key ``depth``
(uint16 millimetres, the TraceForge raw depth) or float metres, or a ``.npy``.
"""

from __future__ import annotations

import io
import json
import logging
import sys
import zipfile
from pathlib import Path
from typing import Any, Mapping

import cv2
import numpy as np
import torch

from tracegen_ros.checkpoint import CheckpointError, load_checkpoint
from tracegen_ros.model.encoders import EncoderUnavailableError
from tracegen_ros.model.tracegen import TraceGenModel
from tracegen_ros.transforms import (
    depth_ratio_rescale,
    grid_keypoints,
    increments_to_trace,
    resize_depth,
    resize_rgb,
)
from tracevla_ros.cli import (
    ArgParser,
    UsageError,
    existing_dir,
    existing_file,
    finite_float,
    int_range,
    nonempty_str,
    output_dir,
    run_main,
    write_bytes_atomic,
)

__all__ = ["TraceGenPredictor", "TraceGenInputError", "trace3d_arrays", "draw_overlay", "main"]

log = logging.getLogger(__name__)

COORDS_PIXEL_DEPTH = 0  # Trace3D.COORDS_PIXEL_DEPTH


class TraceGenInputError(ValueError):
    """An input to ``TraceGenPredictor.predict`` is unusable; the message says which and why."""


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


class TraceGenPredictor:
    """A loaded TraceGen model with the input checks and transforms of inference."""

    def __init__(self, model: TraceGenModel, meta: Mapping[str, Any] | None = None,
                 device: str | torch.device = "cpu") -> None:
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.cfg = model.cfg
        self.meta = dict(meta or {})

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str = "auto",
                        encoder_paths: Mapping[str, str] | None = None) -> "TraceGenPredictor":
        """Load ``path`` (a directory with model.safetensors + config.json).

        ``encoder_paths`` maps 'dinov3' / 'siglip' / 't5' to local directories
        for a published-config checkpoint. Raises CheckpointError (missing,
        pickle, config mismatch) or EncoderUnavailableError.
        """
        dev = _device(device)
        model, meta = load_checkpoint(path, dev, encoder_paths)
        return cls(model, meta, dev)

    def grid_keypoints(self, height: int, width: int) -> np.ndarray:
        """(K, 2) float32 pixels of the keypoint grid the traces start from (row-major)."""
        return grid_keypoints(height, width, self.cfg.grid_size)

    # --- validation -----------------------------------------------------------------------
    def _check(self, rgb: np.ndarray, depth_m: np.ndarray | None, K: np.ndarray, instruction: str,
               steps: int, guidance: float) -> tuple[np.ndarray, np.ndarray]:
        if not isinstance(rgb, np.ndarray) or rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise TraceGenInputError(
                f"rgb must be an (H, W, 3) uint8 array, got "
                f"{getattr(rgb, 'shape', type(rgb).__name__)} {getattr(rgb, 'dtype', '')}")
        if depth_m is None:
            raise TraceGenInputError("depth is missing: TraceGen needs an aligned depth image in metres")
        depth = np.asarray(depth_m)
        if depth.ndim == 3 and depth.shape[2] == 1:
            depth = depth[..., 0]
        if depth.ndim != 2:
            raise TraceGenInputError(f"depth must be (H, W) metres, got shape {depth.shape}")
        if depth.shape != rgb.shape[:2]:
            raise TraceGenInputError(
                f"mismatched RGB/depth sizes: rgb {rgb.shape[1]}x{rgb.shape[0]}, depth "
                f"{depth.shape[1]}x{depth.shape[0]} (W x H); align/resize depth to the RGB image")
        depth = np.where(np.isfinite(depth) & (depth > 0), depth, 0.0).astype(np.float32)
        if not (depth > 0).any():
            raise TraceGenInputError("depth is all zero / invalid: no pixel has a depth reading "
                                     "(is the depth stream running and registered to RGB?)")
        if float(np.median(depth[depth > 0])) > 100.0:
            raise TraceGenInputError("depth looks like millimetres (median > 100); pass metres")
        kk = np.asarray(K, dtype=np.float64)
        if kk.shape != (3, 3) or not np.isfinite(kk).all() or kk[0, 0] <= 0 or kk[1, 1] <= 0:
            raise TraceGenInputError(f"K must be a finite 3x3 intrinsics matrix with fx, fy > 0, got {kk}")
        if not isinstance(instruction, str) or not instruction.strip():
            raise TraceGenInputError("instruction must be a non-empty string")
        if int(steps) < 1:
            raise TraceGenInputError(f"steps must be >= 1, got {steps}")
        if not np.isfinite(guidance) or guidance < 0:
            raise TraceGenInputError(f"guidance must be >= 0, got {guidance}")
        return depth, kk

    # --- inference ------------------------------------------------------------------------
    @torch.no_grad()
    def predict(self, rgb: np.ndarray, depth_m: np.ndarray, K: np.ndarray, instruction: str,
                steps: int = 100, guidance: float | None = None, seed: int = 0,
                temperature: float | None = None) -> np.ndarray:
        """(K=400, L=32, 3) float32 trace (u px, v px, z m) in this camera's frame.

        rgb: (H, W, 3) uint8; depth_m: (H, W) float32 metres aligned with rgb (0 =
        missing); K: (3, 3) intrinsics; guidance: CFG scale (None = the
        checkpoint's default, 1 = none); temperature: scale of the initial noise (None =
        the checkpoint's default). Raises TraceGenInputError on bad input.
        """
        g = self.cfg.default_guidance if guidance is None else float(guidance)
        temp = self.cfg.default_temperature if temperature is None else float(temperature)
        if not np.isfinite(temp) or temp < 0:
            raise TraceGenInputError(f"temperature must be >= 0, got {temperature}")
        depth, _ = self._check(rgb, depth_m, K, instruction, steps, g)
        h, w = rgb.shape[:2]
        tokens = self.model.tokenize([instruction])
        if tokens.truncated[0]:
            log.warning("instruction longer than the text limit of %d tokens, truncated: %r",
                        self.cfg.max_text_tokens, instruction)
        s = self.cfg.image_size
        rgb_t = torch.from_numpy(resize_rgb(rgb, s)).permute(2, 0, 1)[None].float().div(255.0)
        dep_t = torch.from_numpy(resize_depth(depth, s))[None, None]
        cond = self.model.encode(rgb_t.to(self.device), dep_t.to(self.device), tokens)
        gen = torch.Generator(device=self.device).manual_seed(int(seed))
        x = self.model.sample(cond, int(steps), g, gen, temperature=temp)
        inc = self.model.denormalise(x)[0].cpu().numpy()
        traj = increments_to_trace(inc, self.grid_keypoints(h, w), w, h)
        return depth_ratio_rescale(traj, depth, self.cfg.depth_ratio_sigma_px,
                                   self.cfg.depth_ratio_sigma_m)


# --- outputs -------------------------------------------------------------------------------
def trace3d_arrays(traj: np.ndarray, width: int, height: int, instruction: str) -> dict[str, np.ndarray]:
    """The ``Trace3D`` message fields as arrays (COORDS_PIXEL_DEPTH), plus ``traj`` (K, L, 3)."""
    k, length, _ = traj.shape
    valid = np.isfinite(traj).all(axis=-1)
    return {
        "coordinates": np.uint8(COORDS_PIXEL_DEPTH),
        "num_keypoints": np.uint32(k),
        "length": np.uint32(length),
        "points": traj.astype(np.float32).reshape(-1),
        "valid": valid.reshape(-1),
        "image_width": np.uint32(width),
        "image_height": np.uint32(height),
        "instruction": np.array(instruction),
        "traj": traj.astype(np.float32),
    }


def draw_overlay(rgb: np.ndarray, traj: np.ndarray, min_motion_px: float = 2.0) -> np.ndarray:
    """RGB copy with each keypoint's predicted path (blue = early -> red = late) and a dot
    at its start; paths moving less than ``min_motion_px`` are drawn as grey dots only."""
    img = rgb.copy()
    k, length, _ = traj.shape
    scale = max(1, int(round(max(img.shape[:2]) / 256)))
    for i in range(k):
        uv = traj[i, :, :2]
        if not np.isfinite(uv).all():
            continue
        moving = float(np.linalg.norm(uv[-1] - uv[0])) >= min_motion_px
        p0 = (int(round(uv[0, 0])), int(round(uv[0, 1])))
        if not moving:
            cv2.circle(img, p0, scale, (160, 160, 160), -1, cv2.LINE_AA)
            continue
        for t in range(length - 1):
            a = t / max(length - 2, 1)
            col = (int(255 * a), 40, int(255 * (1 - a)))
            cv2.line(img, (int(round(uv[t, 0])), int(round(uv[t, 1]))),
                     (int(round(uv[t + 1, 0])), int(round(uv[t + 1, 1]))), col, scale, cv2.LINE_AA)
        cv2.circle(img, p0, scale + 1, (255, 255, 255), -1, cv2.LINE_AA)
    return img


def _read_depth(path: Path) -> np.ndarray:
    try:
        if path.suffix == ".npy":
            arr = np.load(path, allow_pickle=False)
        else:
            with np.load(path, allow_pickle=False) as z:
                if "depth" not in z.files:
                    raise TraceGenInputError(f"--depth {path}: no array 'depth' (keys {z.files})")
                arr = z["depth"]
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        if isinstance(exc, TraceGenInputError):
            raise
        raise TraceGenInputError(f"--depth {path}: not a readable .npz/.npy array ({exc})") \
            from None
    if not isinstance(arr, np.ndarray) or arr.dtype.kind not in "uif":
        raise TraceGenInputError(f"--depth {path}: expected a numeric array, got "
                                 f"{getattr(arr, 'dtype', type(arr).__name__)}")
    if arr.dtype == np.uint16:
        return arr.astype(np.float32) * np.float32(1e-3)
    return arr.astype(np.float32)


def _read_intrinsics(text: str) -> np.ndarray:
    p = Path(text)
    try:
        if p.is_file():
            if p.suffix == ".json":
                data = json.loads(p.read_text())
                kk = np.asarray(data.get("K", data) if isinstance(data, dict) else data,
                                np.float64).reshape(3, 3)
            else:
                kk = np.asarray(np.load(p, allow_pickle=False), np.float64).reshape(3, 3)
        else:
            vals = [float(v) for v in text.split(",")]
            if len(vals) == 4:
                fx, fy, cx, cy = vals
                kk = np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1]])
            elif len(vals) == 9:
                kk = np.asarray(vals).reshape(3, 3)
            else:
                raise ValueError(f"{len(vals)} values")
    except (OSError, ValueError, TypeError) as exc:
        raise TraceGenInputError(f"--intrinsics '{text}': {exc}; give fx,fy,cx,cy or 9 "
                                 "row-major values or a .npy/.json file") from None
    if not np.isfinite(kk).all() or kk[0, 0] <= 0 or kk[1, 1] <= 0:
        raise TraceGenInputError(f"--intrinsics '{text}': need finite values with fx, fy > 0")
    return kk


def _parser() -> ArgParser:
    ap = ArgParser("tracegen-predict", description=__doc__)
    ap.add_argument("--checkpoint", type=existing_dir, required=True,
                    help="TraceGen checkpoint directory (model.safetensors + config.json)")
    ap.add_argument("--rgb", type=existing_file, required=True, help="RGB image (PNG/JPEG)")
    ap.add_argument("--depth", type=existing_file, required=True,
                    help=".npz (key depth) or .npy, metres or uint16 millimetres")
    ap.add_argument("--intrinsics", type=nonempty_str, required=True,
                    help="fx,fy,cx,cy | 9 values | .npy | .json")
    ap.add_argument("--instruction", type=nonempty_str, required=True,
                    help="the task in words")
    ap.add_argument("--out", type=output_dir, required=True, help="output directory")
    ap.add_argument("--steps", type=int_range(1, 10_000), default=100, help="ODE steps")
    ap.add_argument("--guidance", type=finite_float(ge=0, le=100), default=None,
                    help="CFG scale (default: the checkpoint's)")
    ap.add_argument("--seed", type=int_range(0, 2**63 - 1), default=0, help="sampling seed")
    ap.add_argument("--device", default="auto", help="torch device: auto, cpu, cuda, cuda:N")
    return ap


def main(argv: list[str] | None = None) -> int:
    return run_main("tracegen-predict", _main, argv)


def _main(argv: list[str] | None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        bgr = cv2.imread(str(args.rgb), cv2.IMREAD_COLOR)
        if bgr is None:
            raise TraceGenInputError(f"--rgb {args.rgb}: not a readable image (PNG/JPEG)")
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        depth = _read_depth(args.depth)
        K = _read_intrinsics(args.intrinsics)
        pred = TraceGenPredictor.from_checkpoint(args.checkpoint, args.device)
        traj = pred.predict(rgb, depth, K, args.instruction, args.steps, args.guidance, args.seed)
    except (TraceGenInputError, CheckpointError, EncoderUnavailableError) as exc:
        raise UsageError(str(exc)) from None
    h, w = rgb.shape[:2]
    buf = io.BytesIO()
    np.savez_compressed(buf, **trace3d_arrays(traj, w, h, args.instruction))  # type: ignore[arg-type]
    ok, png = cv2.imencode(".png", cv2.cvtColor(draw_overlay(rgb, traj), cv2.COLOR_RGB2BGR))
    write_bytes_atomic(args.out / "trace.npz", buf.getvalue())
    if ok:
        write_bytes_atomic(args.out / "overlay.png", png.tobytes())
    log.info("wrote %s and %s", args.out / "trace.npz", args.out / "overlay.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
