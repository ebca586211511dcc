"""The prompt: one value, normalised and validated once, compared by its key.

A prompt arrives from the control socket, the config, presets, the schedule and the
state file. Whitespace is collapsed once here; two prompts are the same when their
keys (lower case, collapsed whitespace) are equal.
"""

from __future__ import annotations

from dataclasses import dataclass

from infiniloopd.core.errors import InvalidValue
from infiniloopd.text import text_problem

MAX_PROMPT = 1000


def prompt_key(text: str) -> str:
    """What two prompts are compared by: lower case, whitespace collapsed."""
    return " ".join(text.lower().split())


@dataclass(frozen=True)
class Prompt:
    """A prompt as the core keeps it: non-empty, printable, whitespace collapsed."""

    text: str

    @classmethod
    def parse(cls, value: object, where: str = "prompt") -> Prompt:
        """The normalised prompt; InvalidValue naming `where` when it cannot be one."""
        problem = text_problem(value, max_len=MAX_PROMPT)
        if problem is not None:
            raise InvalidValue(
                f"{where}: expected a non-empty prompt of at most {MAX_PROMPT} characters "
                f"({problem})"
            )
        assert isinstance(value, str)
        return cls(" ".join(value.split()))

    @property
    def key(self) -> str:
        return prompt_key(self.text)

    def same_as(self, other: str | Prompt) -> bool:
        other_key = other.key if isinstance(other, Prompt) else prompt_key(other)
        return self.key == other_key

    def __str__(self) -> str:
        return self.text
