"""Up to three phrasings of an episode's instruction (no rclpy).

Known tasks have hand-written paraphrases (the first is the task's own instruction);
any other instruction gets two template variants. TraceGen samples one phrasing per
training step, so the model does not overfit one wording.
"""

from __future__ import annotations

__all__ = ["PHRASINGS", "phrasings"]

PHRASINGS: dict[str, tuple[str, str, str]] = {
    "push_block_to_region": ("push the block into the purple region",
                             "slide the yellow block onto the purple square",
                             "move the block to the purple target area"),
    "put_ball_in_box": ("put the ball in the box",
                        "pick up the green ball and drop it into the box",
                        "place the ball inside the brown box"),
    "put_carrot_on_plate": ("put the carrot on the plate",
                            "place the carrot onto the plate",
                            "move the orange carrot to the plate"),
    "push_block_right": ("push the block to the right",
                         "slide the blue block to the right",
                         "move the block rightwards"),
    "lift_cube": ("pick up the red cube", "lift the red cube", "grasp the cube and raise it"),
}


def phrasings(instruction: str, task: str = "") -> list[str]:
    """Three phrasings: the known task's, else ``instruction`` and two template variants."""
    if task in PHRASINGS:
        return list(PHRASINGS[task])
    text = " ".join(instruction.strip().split())
    if not text:
        raise ValueError("empty instruction: pass --instruction or add instruction.txt")
    base = text[0].lower() + text[1:]
    base = base.rstrip(".!")
    return [text, f"please {base}", f"can you {base}?"]
