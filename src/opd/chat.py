"""How a model is prompted: bare, or through its own chat template, and for Qwen3's hybrid
models in thinking or non-thinking mode.

A config's model entry says it (``chat_template``, ``enable_thinking``); the rules pass it
to every script that renders a prompt for that model as one word, ``--chat MODE``:

  ``bare``          the filled-in prompt template alone (a base model without a chat template)
  ``chat``          the chat template at its own default (the default)
  ``thinking``      the chat template with ``enable_thinking=True``
  ``non-thinking``  the chat template with ``enable_thinking=False`` (Qwen3's template then
                    closes an empty ``<think>\\n\\n</think>\\n\\n`` block after the generation prompt)

Kept free of transformers: the workflow builds its DAG with it.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

MODES = {"bare": (False, None), "chat": (True, None), "thinking": (True, True), "non-thinking": (True, False)}
# the flavours of opd.qwen_tokenizers whose chat template has the switch (the toy tokenizers' has none)
THINKING_SWITCH = ("qwen3",)


@dataclass(frozen=True)
class ChatFormat:
    template: bool = True
    enable_thinking: bool | None = None  # None: the chat template's own default

    def __post_init__(self):
        if not self.template and self.enable_thinking is not None:
            raise ValueError("enable_thinking is a switch of the chat template: a bare prompt has none")

    @property
    def mode(self) -> str:
        return next(m for m, v in MODES.items() if v == (self.template, self.enable_thinking))

    @classmethod
    def parse(cls, mode: str) -> ChatFormat:
        if mode not in MODES:
            raise ValueError(f"unknown chat mode {mode!r}; expected one of {', '.join(MODES)}")
        return cls(*MODES[mode])

    @classmethod
    def of_entry(cls, entry: dict) -> ChatFormat:
        """A config model entry's settings (the schema's defaults where it gives none)."""
        return cls(entry.get("chat_template", True), entry.get("enable_thinking"))

    def template_kwargs(self) -> dict:
        """What ``apply_chat_template`` takes besides the messages: the switch only where set,
        so that ``None`` leaves the template at its default."""
        return {} if self.enable_thinking is None else {"enable_thinking": self.enable_thinking}


DEFAULT = ChatFormat()


def entry_error(entry: dict) -> str | None:
    """What is wrong with a config model entry's ``enable_thinking``, if anything: a switch
    without the chat template, or on a model built around a template that has none."""
    if entry.get("enable_thinking") is None:
        return None
    if not entry.get("chat_template", True):
        return "needs chat_template: true (a bare prompt has no thinking switch)"
    if "toy" in entry:
        return "the toy tokenizers' chat template has no thinking switch; leave it null"
    flavour = (entry.get("tiny") or {}).get("tokenizer", "qwen3")
    if "tiny" in entry and flavour not in THINKING_SWITCH:
        return f"the {flavour} tokenizer's chat template has no thinking switch; leave it null"
    return None


def teacher_chats(items: list[str]) -> dict[str, ChatFormat]:
    """``NAME=MODE`` items (a script's repeated ``--teacher-chat``) as {name: format}."""
    out = {}
    for item in items:
        name, sep, mode = item.partition("=")
        if not sep:
            raise ValueError(f"--teacher-chat {item!r}: expected NAME=MODE")
        out[name] = ChatFormat.parse(mode)
    return out


def add_chat_option(parser, option: str = "--chat", whose: str = "the model") -> None:
    """A script's ``--chat MODE`` option (or the teacher's), parsed into a :class:`ChatFormat`."""
    def mode(text: str) -> ChatFormat:
        try:
            return ChatFormat.parse(text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    parser.add_argument(option, type=mode, default=DEFAULT, metavar="|".join(MODES),
                        help=f"how {whose} is prompted (default: chat, its chat template's own default)")
