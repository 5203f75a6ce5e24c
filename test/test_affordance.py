"""Affordance backends, prompt, remote protocol, requests and the answer-file scorer (no ROS)."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tracevla_ros.affordance.backend import AffordanceError, result_from_text
from tracevla_ros.affordance.requests import AffordanceRequests, prompt_from_result
from tracevla_ros.affordance.robopoint import SUFFIX, build_prompt, checkpoint_format

IMG = np.zeros((24, 32, 3), np.uint8)


def test_robopoint_prompt_is_llava_v1_with_the_suffix() -> None:
    p = build_prompt("  place the cup left of the plate ")
    assert p == ("A chat between a curious human and an artificial intelligence assistant. The "
                 "assistant gives helpful, detailed, and polite answers to the human's questions. "
                 "USER: <image>\nplace the cup left of the plate Your answer should be formatted "
                 "as a list of tuples, i.e. [(x1, y1), (x2, y2), ...], where each tuple contains "
                 "the x and y coordinates of a point satisfying the conditions above. The "
                 "coordinates should be between 0 and 1, indicating the normalized pixel "
                 "locations of the points in the image. ASSISTANT:")
    assert SUFFIX.startswith(" Your answer")


def test_checkpoint_format_names_what_it_loads(tmp_path: Path) -> None:
    with pytest.raises(AffordanceError, match="no config.json"):
        checkpoint_format(tmp_path / "absent")
    (tmp_path / "config.json").write_text(json.dumps(
        {"architectures": ["LlavaLlamaForCausalLM"], "mm_vision_tower": "openai/clip-vit-large-patch14-336",
         "mm_projector_type": "mlp2x_gelu"}))
    with pytest.raises(AffordanceError, match="original LLaVA repository format.*convert_llava_weights_to_hf"):
        checkpoint_format(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps(
        {"architectures": ["LlavaForConditionalGeneration"], "model_type": "llava"}))
    with pytest.raises(AffordanceError, match="lacks.*preprocessor_config.json.*model weights"):
        checkpoint_format(tmp_path)


def _tiny_llava(d: Path) -> Path:
    """A tiny random HF-llava checkpoint (CLIP vision + projector + Llama), built locally."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import (CLIPImageProcessor, CLIPVisionConfig, LlamaConfig, LlavaConfig,
                              LlavaForConditionalGeneration, LlavaProcessor,
                              LlamaTokenizerFast)

    words = ("<unk> <s> </s> <image> ( ) , . [ ] 0 1 2 3 4 5 6 7 8 9 final answer : a the "
             "point to cube red <pad>").split()
    vocab = {w: i for i, w in enumerate(words)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = LlamaTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>",
                                   eos_token="</s>", pad_token="<pad>")
    fast.add_special_tokens({"additional_special_tokens": ["<image>"]})
    proc = LlavaProcessor(CLIPImageProcessor(size={"shortest_edge": 16},
                                             crop_size={"height": 16, "width": 16}), fast)
    torch.manual_seed(0)
    cfg = LlavaConfig(
        vision_config=CLIPVisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                                       num_attention_heads=2, image_size=16, patch_size=8,
                                       projection_dim=16),
        text_config=LlamaConfig(vocab_size=len(words), hidden_size=16, intermediate_size=32,
                                num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2,
                                max_position_embeddings=512, bos_token_id=1, eos_token_id=2,
                                pad_token_id=vocab["<pad>"]),  # not 0 = <unk>: its embedding
                                # would be zero, which llava's merge takes for an image slot
        image_token_index=vocab["<image>"], vision_feature_layer=-2, projector_hidden_act="gelu")
    LlavaForConditionalGeneration(cfg).save_pretrained(d, safe_serialization=True)
    proc.save_pretrained(d)
    return d


def test_robopoint_hf_runs_a_tiny_random_llava(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    from tracevla_ros.affordance.robopoint import RoboPointHF

    d = _tiny_llava(tmp_path / "tiny")
    assert checkpoint_format(d) == "hf-llava"
    backend = RoboPointHF(d, "cpu", max_new_tokens=8, seed=3)
    a = backend.predict(np.full((20, 20, 3), 90, np.uint8), "point to the red cube")
    b = backend.predict(np.full((20, 20, 3), 90, np.uint8), "point to the red cube")
    assert a.raw_text == b.raw_text  # seeded sampling at temperature 0.2: reproducible
    assert a.points.shape[1] == 2 and np.all((a.points >= 0) & (a.points <= 1))
    if len(a.points) == 0:  # random weights: usually no points, which is a warning
        assert any("no points" in w for w in a.warnings)


def test_small_model_answers_with_reasoning_and_points() -> None:
    import torch

    from tracevla_ros.affordance.small import AffordanceNet, SmallAffordance, SmallConfig

    torch.manual_seed(0)
    backend = SmallAffordance(AffordanceNet(SmallConfig(num_points=3)))
    r = backend.predict(np.full((64, 48, 3), 120, np.uint8), "point to free space left of the red cube")
    assert r.points.shape == (3, 2) and np.all((r.points > 0) & (r.points < 1))
    assert r.reasoning.startswith("Subtype: ") and "Reference: the red cube at (" in r.reasoning
    assert r.scores[0] == 1.0 and np.all(np.diff(r.scores) <= 0)
    with pytest.raises(AffordanceError, match="empty instruction"):
        backend.predict(IMG, " ")
    with pytest.raises(AffordanceError, match="uint8 RGB"):
        backend.predict(np.zeros((8, 8), np.float32), "point to the cube")


def test_remote_backend_round_trip_timeout_and_down() -> None:
    from tracevla_ros.affordance.remote import RemoteAffordance
    from tracevla_ros.policy.remote.server import PolicyServer

    class Slow:
        name = "slow"
        delay = 0.0

        def predict(self, image: np.ndarray, instruction: str):  # noqa: ANN201
            time.sleep(self.delay)
            return result_from_text(f"{instruction}: Final Answer: [(0.5, 0.25)]")

    backend = Slow()
    server = PolicyServer(policy=None, port=0, affordance=backend)  # type: ignore[arg-type]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    host, port = server.address
    try:
        client = RemoteAffordance(host, port, timeout_s=2.0)
        r = client.predict(IMG, "point to the cube")
        assert r.points.tolist() == [[0.5, 0.25]] and r.reasoning == "point to the cube:"
        client.close()
        backend.delay = 1.0
        slow = RemoteAffordance(host, port, timeout_s=0.2)
        with pytest.raises(AffordanceError, match="sent no answer within 0.2 s"):
            slow.predict(IMG, "point to the cube")
        slow.close()
    finally:
        server.shutdown()
        thread.join(timeout=5)
    with pytest.raises(AffordanceError, match="not running"):
        RemoteAffordance(host, port, timeout_s=0.5).predict(IMG, "point to the cube")


def test_requests_supersede_and_prompt_needs_points() -> None:
    reqs = AffordanceRequests()
    a = reqs.submit("a")
    b = reqs.submit("b")
    assert reqs.take() == b and reqs.take() is None
    assert not reqs.current(a) and reqs.current(b)
    reqs.put_back(b)
    assert reqs.take() == b
    p, why = prompt_from_result(result_from_text("Final Answer: [(1.5, 0.2)]"), 32, 24, 1.0)
    assert p is None and "outside [0, 1]" in why
    p, why = prompt_from_result(result_from_text("[(0.5, 0.25)]"), 32, 24, 1.0)
    assert p is not None and why == "" and p.pixel_points().tolist() == [[16.0, 6.0]]
    # max_points: the best scored points (affordance_node's prompt_points); ties keep the
    # answer's order, and without one score per point the answer's order decides
    five = result_from_text("[(0.1, 0.1), (0.2, 0.2), (0.3, 0.3), (0.4, 0.4), (0.5, 0.5)]",
                            np.array([0.2, 1.0, 0.5, 1.0, 0.1]))
    p, _ = prompt_from_result(five, 10, 10, 1.0, max_points=3)
    assert p is not None and np.allclose(p.points, [[0.2, 0.2], [0.4, 0.4], [0.3, 0.3]])
    p, _ = prompt_from_result(result_from_text("[(0.1, 0.1), (0.2, 0.2), (0.3, 0.3)]"), 10, 10,
                              1.0, max_points=2)
    assert p is not None and np.allclose(p.points, [[0.1, 0.1], [0.2, 0.2]])
    p, _ = prompt_from_result(five, 10, 10, 1.0, max_points=0)  # 0 = every point
    assert p is not None and len(p.points) == 5


def test_answer_file_scorer_pins_where2place_values(tmp_path: Path) -> None:
    """Hand-built 10 x 10 masks and RoboPoint-format answers, scored as Where2Place does."""
    from tracevla_ros.bench.affordance import main

    masks = tmp_path / "masks"
    masks.mkdir()
    left = np.zeros((10, 10), np.uint8)
    left[:, :5] = 255
    top = np.zeros((10, 10), np.uint8)
    top[:2, :] = 255
    Image.fromarray(left).save(masks / "00.png")
    Image.fromarray(top).save(masks / "01.png")
    Image.fromarray(left).save(masks / "02.png")
    answers = tmp_path / "answers.jsonl"
    answers.write_text("\n".join(json.dumps({"text": t}) for t in (
        "[(0.25, 0.5), (0.75, 0.5), (0.45, 0.9), (0.5, 0.5)]",  # 2 of 4 inside: 0.5
        "(2, 1), (3, 5)",  # integer pixels: (2, 1) inside, (3, 5) not: 0.5
        "[(0.0, 0.0, 0.5, 0.2)]",  # a box: x 0..4, y 0..1 = 10 pixels, all inside: 1.0
    )) + "\n")
    out = main(["--answers", str(answers), "--masks", str(masks), "--boot", "200"])
    assert out["questions"] == 3
    assert out["score"] == pytest.approx((0.5 + 0.5 + 1.0) / 3)
