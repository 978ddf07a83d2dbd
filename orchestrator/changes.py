"""Changes (what a run would do) and Problems (why it refuses), and their rendering.

A Change is data: the stage that owns it, the resource, its attributes'
before/after (what the user reads), and the typed operations that carry it
out (what runs; orchestrator/operations.py). Deciding (diff) and doing
(apply) never live in the same function.
"""

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from rich.console import Console
from rich.text import Text

from orchestrator.operations import Operation
from orchestrator.output import error_line

Action = Literal["create", "update", "delete", "replace"]

SYMBOLS: dict[Action, tuple[str, str]] = {
    "create": ("+", "green"),
    "update": ("~", "yellow"),
    "delete": ("-", "red"),
    "replace": ("-/+", "magenta"),
}

REDACTED = "(sensitive value)"


@dataclass(frozen=True)
class Attr:
    """One attribute of a resource; None means absent."""

    name: str
    before: Any
    after: Any
    sensitive: bool = False

    def shown(self, value: Any) -> str:
        if value is None:
            return "(none)"
        if self.sensitive:
            return REDACTED
        return str(value)


@dataclass
class Change:
    stage: str
    action: Action
    resource: str
    attrs: list[Attr] = field(default_factory=list)
    note: str | None = None
    operations: tuple[Operation, ...] = ()

    def as_json(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "action": self.action,
            "resource": self.resource,
            "attributes": [
                {
                    "name": attr.name,
                    "before": REDACTED if attr.sensitive and attr.before is not None else attr.before,
                    "after": REDACTED if attr.sensitive and attr.after is not None else attr.after,
                }
                for attr in self.attrs
            ],
            "operations": [operation.as_json() for operation in self.operations],
            "note": self.note,
        }


@dataclass(frozen=True)
class Problem:
    """A reason to refuse the whole run: nothing is applied while one exists."""

    stage: str
    resource: str
    message: str

    def __str__(self) -> str:
        return f"{self.resource}: {self.message}"


def render_text(console: Console, changes: list[Change], verbose: bool = False) -> None:
    """Terraform-like: one block per resource, + ~ - per attribute; verbose adds every
    operation that would run (`describe()` never holds a secret)."""
    for change in changes:
        symbol, colour = SYMBOLS[change.action]
        console.print(Text(f"{symbol} {change.resource}", style=f"bold {colour}"))
        for attr in change.attrs:
            console.print(_attr_line(attr), highlight=False)
        if change.note:
            console.print(Text(f"    ! {change.note}", style="yellow"))
        if verbose:
            for operation in change.operations:
                console.print(Text(f"      > {operation.describe()}", style="dim"), highlight=False)


def render_problems(errors: Console, problems: list[Problem]) -> None:
    """One error line per problem, on the error console (stderr)."""
    for problem in problems:
        errors.print(error_line(problem))


def _attr_line(attr: Attr) -> Text:
    if attr.before is None:
        return Text(f"    + {attr.name}: {attr.shown(attr.after)}", style="green")
    if attr.after is None:
        return Text(f"    - {attr.name}: {attr.shown(attr.before)}", style="red")
    return Text(f"    ~ {attr.name}: {attr.shown(attr.before)} -> {attr.shown(attr.after)}", style="yellow")


def render_json(payload: dict[str, Any]) -> str:
    return json.dumps(payload, indent=2, default=str)


def problems_json(problems: list[Problem]) -> list[dict[str, str]]:
    return [asdict(problem) for problem in problems]
