"""Shared helpers for the plan tests: the example plan and a way to write variants of it."""

from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

EXAMPLE_PLAN = ROOT / "plans" / "two-node.toml"


@pytest.fixture
def plan_text() -> str:
    """The text of plans/two-node.toml."""
    return EXAMPLE_PLAN.read_text(encoding="utf-8")


@pytest.fixture
def write_plan(tmp_path: Path) -> Callable[..., Path]:
    """Write a plan text (or bytes) under tmp_path and return its path."""

    def write(content: str | bytes, name: str = "plan.toml") -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, str):
            path.write_text(content, encoding="utf-8")
        else:
            path.write_bytes(content)
        return path

    return write
