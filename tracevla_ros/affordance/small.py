"""Backend ``small``: a small affordance model trained on the sim question set (no rclpy).

``AffordanceNet`` reads a 128 x 128 RGB image and a bag-of-words instruction
and answers the TRACE way, one stage per part of the reasoning:

1. relation head (text): the subtype and the target area's relation
   (touch, left of, right of, in front of, behind, on);
2. reference head: a 32 x 32 heatmap of where the reference object is;
3. target head: a 32 x 32 heatmap of the valid region, computed from the image
   features, the reference heatmap (as an input channel) and the relation.

Points = the ``num_points`` most probable target cells (cell centres), scores =
their probability relative to the best one. The answer is text: the reasoning
generated from the heads (subtype -> reference and where it is -> target area)
then ``Final Answer: [(x, y), ...]``, read back by ``answer.parse_answer`` like
every other backend's.

With reasoning supervision (``reasoning: true`` in the checkpoint) the relation
and reference heads are trained on the ground-truth reasoning as well as the
target; without it, the same network learns from the target alone (its stages
get no direct supervision) and answers without a reasoning text.

Checkpoint: ``config.json`` + ``model.safetensors`` (tracetrain's format);
the shipped one is ``tracevla_ros/affordance/checkpoints/sim_small``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import tracetrain.checkpoint as core
from tracetrain.config import from_dict, to_dict
from tracetrain.errors import CheckpointError as CoreCheckpointError

from tracevla_ros.affordance.backend import AffordanceError, AffordanceResult, check_image, \
    result_from_text
from tracevla_ros.affordance.scenes import COLORS, RELATIONS, SHAPES
from tracevla_ros.config import ConfigError

__all__ = ["SmallConfig", "AffordanceNet", "VOCAB", "tokenize", "SmallAffordance", "make",
           "load_small", "save_small", "CHECKPOINTS_DIR", "DEFAULT_CHECKPOINT", "IMAGE_SIZE",
           "GRID", "prepare_image", "answer_text"]

FORMAT_NAME, FORMAT_VERSION = "tracevla_affordance_small", 1
IMAGE_SIZE = 128  # px, the network's input (any image is resized to it)
GRID = 32  # heatmap cells per side (4 px of the input each)
CHECKPOINTS_DIR = Path(__file__).resolve().parent / "checkpoints"
DEFAULT_CHECKPOINT = "sim_small"
VOCAB = ("<unk>", "point", "to", "the", "free", "space", "of", "in", "front", "left", "right",
         "behind", "on", "plate", *COLORS, *SHAPES, "pick", "up", "grasp", "push")
_WORD = re.compile(r"[a-z]+")


class CheckpointError(ConfigError, CoreCheckpointError):
    """An affordance checkpoint that cannot be loaded; the message names the file and key."""


def tokenize(text: str, max_len: int = 16) -> np.ndarray:
    """(max_len,) int64 word ids (0 = unknown/padding)."""
    index = {w: i for i, w in enumerate(VOCAB)}
    ids = [index.get(w, 0) for w in _WORD.findall(text.lower())][:max_len]
    return np.asarray(ids + [0] * (max_len - len(ids)), np.int64)


@dataclass(frozen=True)
class SmallConfig:
    width: int = 32  # channels of the image features (CPU training: ~0.2 s per step of 16)
    text_dim: int = 32  # instruction embedding
    num_points: int = 5  # points answered per question
    reasoning: bool = True  # trained with reasoning supervision (relation + reference)


def _block(cin: int, cout: int, stride: int = 1, dilation: int = 1) -> nn.Module:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, padding=dilation, dilation=dilation),
                         nn.GroupNorm(8, cout), nn.ReLU(inplace=True))


class AffordanceNet(nn.Module):
    """image (B, 3, 128, 128) float in [0, 1], tokens (B, L) int64 ->
    relation logits (B, 6), reference logits (B, 32, 32), target logits (B, 32, 32)."""

    def __init__(self, cfg: SmallConfig) -> None:
        super().__init__()
        w, t = cfg.width, cfg.text_dim
        self.cfg = cfg
        self.embed = nn.Embedding(len(VOCAB), t, padding_idx=0)
        self.text = nn.Sequential(nn.Linear(t, t), nn.ReLU(inplace=True), nn.Linear(t, t))
        self.enc = nn.Sequential(_block(5, 32, 2), _block(32, w, 2), _block(w, w), _block(w, w, 1, 2))
        self.film = nn.Linear(t, 2 * w)
        self.ref_head = nn.Sequential(_block(w, w), nn.Conv2d(w, 1, 1))
        self.relation = nn.Linear(t, len(RELATIONS))
        self.rel_film = nn.Linear(len(RELATIONS), 2 * w)
        self.target = nn.Sequential(_block(w + 1, w), _block(w, w, 1, 2), _block(w, w, 1, 4),
                                    _block(w, w, 1, 2), nn.Conv2d(w, 1, 1))

    def forward(self, image: torch.Tensor, tokens: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        b, _, h, w = image.shape
        ys = torch.linspace(-1, 1, h, device=image.device).view(1, 1, h, 1).expand(b, 1, h, w)
        xs = torch.linspace(-1, 1, w, device=image.device).view(1, 1, 1, w).expand(b, 1, h, w)
        feat = self.enc(torch.cat([image - 0.5, xs, ys], 1))
        mask = (tokens > 0).float().unsqueeze(-1)
        text = self.text((self.embed(tokens) * mask).sum(1) / mask.sum(1).clamp(min=1.0))
        g, beta = self.film(text).chunk(2, -1)
        feat = F.relu(feat * (1 + g[..., None, None]) + beta[..., None, None])
        ref = self.ref_head(feat).squeeze(1)
        rel = self.relation(text)
        ref_map = torch.softmax(ref.flatten(1), -1).view_as(ref).unsqueeze(1) * ref[0].numel()
        g2, b2 = self.rel_film(torch.softmax(rel, -1)).chunk(2, -1)
        x = torch.cat([feat * (1 + g2[..., None, None]) + b2[..., None, None], ref_map], 1)
        return rel, ref, self.target(x).squeeze(1)


def prepare_image(image: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 -> (3, 128, 128) float in [0, 1] (bilinear resize)."""
    t = torch.from_numpy(np.array(image, np.uint8)).permute(2, 0, 1).float().div(255.0)
    if t.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE):
        t = F.interpolate(t[None], size=(IMAGE_SIZE, IMAGE_SIZE), mode="bilinear",
                          align_corners=False)[0]
    return t


def _cells_to_points(prob: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    flat = prob.ravel()
    top = np.argsort(-flat, kind="stable")[:k]
    ys, xs = np.divmod(top, prob.shape[1])
    pts = np.stack([(xs + 0.5) / prob.shape[1], (ys + 0.5) / prob.shape[0]], 1)
    return pts.astype(np.float32), (flat[top] / max(float(flat[top[0]]), 1e-12)).astype(np.float32)


def answer_text(instruction: str, relation: str, ref_point: tuple[float, float] | None,
                points: np.ndarray) -> str:
    """The model's answer: reasoning (when ``ref_point`` is given) + ``Final Answer:``."""
    words = _WORD.findall(instruction.lower())
    color = next((w for w in words if w in COLORS), "")
    shape = next((w for w in words if w in SHAPES or w == "plate"), "object")
    answer = "[" + ", ".join(f"({x:.3f}, {y:.3f})" for x, y in points) + "]"
    if ref_point is None:
        return f"Final Answer: {answer}"
    from tracevla_ros.affordance.scenes import reasoning_text

    subtype = "touch" if relation == "touch" else "place"
    return (f"{reasoning_text(subtype, relation, (color or 'unnamed'), shape, ref_point)} "
            f"Final Answer: {answer}")


class SmallAffordance:
    """The ``small`` backend around a loaded ``AffordanceNet``."""

    def __init__(self, net: AffordanceNet, device: str = "cpu", name: str = "small") -> None:
        self.net = net.eval().to(device)
        self.device = device
        self.name = name

    @torch.no_grad()
    def predict_many(self, images: list[np.ndarray], instructions: list[str]) -> list[AffordanceResult]:
        x = torch.stack([prepare_image(check_image(im)) for im in images]).to(self.device)
        tok = torch.from_numpy(np.stack([tokenize(s) for s in instructions])).to(self.device)
        rel, ref, tgt = self.net(x, tok)
        out = []
        for i, instruction in enumerate(instructions):
            prob = torch.softmax(tgt[i].flatten(), -1).view(GRID, GRID).cpu().numpy()
            pts, scores = _cells_to_points(prob, self.net.cfg.num_points)
            ref_point = None
            if self.net.cfg.reasoning:
                rp, _ = _cells_to_points(ref[i].cpu().numpy(), 1)
                ref_point = (float(rp[0, 0]), float(rp[0, 1]))
            text = answer_text(instruction, RELATIONS[int(rel[i].argmax())], ref_point, pts)
            out.append(result_from_text(text, scores))
        return out

    def predict(self, image: np.ndarray, instruction: str) -> AffordanceResult:
        if not instruction.strip():
            raise AffordanceError("empty instruction")
        return self.predict_many([image], [instruction])[0]


def save_small(directory: Path, net: AffordanceNet, training: dict[str, Any]) -> Path:
    return core.save_checkpoint(directory, net.state_dict(),
                                {"model": to_dict(net.cfg), "training": training},
                                FORMAT_NAME, FORMAT_VERSION)


def resolve(path: str) -> Path:
    return CHECKPOINTS_DIR / DEFAULT_CHECKPOINT if not path else Path(path).expanduser()


def load_small(path: str | Path = "") -> AffordanceNet:
    """The network of a checkpoint dir ('' = the shipped one); CheckpointError if unusable."""
    d = core.checkpoint_dir(resolve(str(path)), "python -m tracevla_ros.affordance.train",
                            CheckpointError)
    body = core.read_config(d, FORMAT_NAME, FORMAT_VERSION, ("model",),
                            "python -m tracevla_ros.affordance.train", CheckpointError)
    cfg = from_dict(SmallConfig, body["model"], f"{d / core.CONFIG_FILE} [model]")
    net = AffordanceNet(cfg)
    tensors = core.load_tensors(d / core.WEIGHTS_FILE, CheckpointError)
    core.check_tensors(d / core.WEIGHTS_FILE, tensors, net.state_dict(), d / core.CONFIG_FILE,
                       CheckpointError)
    net.load_state_dict(tensors)
    return net


def make(cfg: Any) -> SmallAffordance:
    """Backend 'small' from the node config (``checkpoint``, ``device``)."""
    device = "cpu" if cfg.device == "auto" and not torch.cuda.is_available() else \
        ("cuda" if cfg.device == "auto" else cfg.device)
    return SmallAffordance(load_small(cfg.checkpoint), device)
