"""Errors every layer raises and every layer's callers catch."""

from __future__ import annotations


class ValidationProblem(ValueError):
    """Input that Sluice refuses; `field` names what is at fault."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
