"""Small shared helpers for provider tests."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Turn:
    """A turn token the test cancels by hand."""

    id: int = 1
    cancelled: bool = False
