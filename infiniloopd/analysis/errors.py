"""The one error type of the loop engine."""

from __future__ import annotations


class AnalysisError(ValueError):
    """Audio that cannot be looped; the message is one line saying why."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))
