"""The exact prompts the published checkpoints were trained with.

Instructions are stripped and lower-cased, as the training pipelines did with
the dataset's language instruction. TraceVLA-7B and OpenVLA take a plain
``In: ...\\nOut:`` prompt; TraceVLA-Phi3V takes one user message with
``<|image_1|>`` / ``<|image_2|>`` placeholders rendered by the tokenizer's chat
template (its trace prompt says "historial", spelled as in training).
"""

from __future__ import annotations

from typing import Any, Protocol

from tracevla_ros.policy.base import PolicyError

__all__ = [
    "OPENVLA_PROMPT",
    "TRACEVLA_TRACE_PROMPT",
    "PHI3_NO_TRACE_CONTENT",
    "PHI3_TRACE_CONTENT",
    "clean_instruction",
    "openvla_prompt",
    "tracevla_prompt",
    "phi3_message",
    "phi3_prompt",
]

OPENVLA_PROMPT = "In: What action should the robot take to {instruction}?\nOut:"
TRACEVLA_TRACE_PROMPT = (
    "In: You are given two images: one with the original robot observation, and another one "
    "marked with historical traces of the robot end effector and moving objects, separated by a "
    "special separator token. What action should the robot take to {instruction}?\nOut:")
PHI3_NO_TRACE_CONTENT = "<|image_1|><|image_2|>\nWhat action should the robot take to {instruction}?"
PHI3_TRACE_CONTENT = (
    "You are given two images: one with the original robot observation <|image_1|>, and another "
    "one marked with historial traces of the robot end effector and moving objects <|image_2|>.\n"
    "What action should the robot take to {instruction}?")


class ChatTokenizer(Protocol):
    def apply_chat_template(self, conversation: Any, tokenize: bool = ...,
                            add_generation_prompt: bool = ...) -> Any: ...


def clean_instruction(instruction: str) -> str:
    """Stripped, lower-cased instruction; PolicyError when empty."""
    text = " ".join(instruction.split()).lower()
    if not text:
        raise PolicyError("the instruction is empty")
    return text


def openvla_prompt(instruction: str) -> str:
    """OpenVLA's single-image prompt (also TraceVLA-7B's prompt without a trace)."""
    return OPENVLA_PROMPT.format(instruction=clean_instruction(instruction))


def tracevla_prompt(instruction: str, has_trace: bool) -> str:
    """TraceVLA-7B: the two-image trace prompt, or OpenVLA's prompt before a valid trace exists."""
    if not has_trace:
        return openvla_prompt(instruction)
    return TRACEVLA_TRACE_PROMPT.format(instruction=clean_instruction(instruction))


def phi3_message(instruction: str, has_trace: bool) -> dict[str, str]:
    """The single user message of TraceVLA-Phi3V."""
    template = PHI3_TRACE_CONTENT if has_trace else PHI3_NO_TRACE_CONTENT
    return {"role": "user", "content": template.format(instruction=clean_instruction(instruction))}


def phi3_prompt(instruction: str, has_trace: bool, tokenizer: ChatTokenizer) -> str:
    """The message rendered by the checkpoint's chat template, with the generation prompt."""
    text = tokenizer.apply_chat_template([phi3_message(instruction, has_trace)], tokenize=False,
                                         add_generation_prompt=True)
    if not isinstance(text, str):
        raise PolicyError(f"the tokenizer's chat template returned {type(text).__name__}, not text")
    return text
