"""Operations: what an executor does, as frozen data.

A Change is what the user reads (a resource, its attributes' before/after); its
operations are what runs, in order. An operation is a frozen dataclass of plain
values, so a plan round-trips through JSON (saved plans) and an executor picks
its handler by the operation's type, never by a name or display text. It holds
no secret: a SecretRef names the state folder's secret, resolved only by the
executor while applying.

Each stage declares its operation types beside its diff and registers their
handlers with the executor of the side they act on (`VSPHERE` or `NODE`).
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, Literal, TypeVar

from pydantic import TypeAdapter

Side = Literal["vsphere", "node"]


@dataclass(frozen=True)
class SecretRef:
    """A generated secret by its name in the state folder (secrets/<name>)."""

    name: str


@dataclass(frozen=True)
class Operation:
    """Base of every operation; a subclass is registered by its class name."""

    side: ClassVar[Side]
    # Destroys or overwrites data when the fact that allowed it no longer holds: its
    # handler re-reads that fact right before it runs, and refuses if it changed.
    destructive: ClassVar[bool] = False
    registry: ClassVar[dict[str, type["Operation"]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        Operation.registry[cls.__name__] = cls

    def describe(self) -> str:
        """One line for --verbose: the vSphere method or the node command (never a secret)."""
        raise NotImplementedError(type(self).__name__)

    def as_json(self) -> dict[str, Any]:
        data = TypeAdapter(type(self)).dump_python(self, mode="json")
        return {"op": type(self).__name__, **data}


def operation_from_json(data: dict[str, Any]) -> Operation:
    """The operation a saved plan holds; ValueError for an unknown or malformed one."""
    fields = dict(data)
    kind = fields.pop("op", None)
    cls = Operation.registry.get(str(kind))
    if cls is None:
        raise ValueError(f"unknown operation {kind!r}")
    try:
        return TypeAdapter(cls).validate_python(fields)
    except ValueError as err:
        raise ValueError(f"operation {kind}: {err}") from None


OpT = TypeVar("OpT", bound=Operation)
ContextT = TypeVar("ContextT")
Handler = Callable[[Any, ContextT], None]


class Executor(Generic[ContextT]):
    """Runs operations of one side, each by the handler registered for its type."""

    def __init__(self, side: Side) -> None:
        self.side = side
        self._handlers: dict[type[Operation], Handler[ContextT]] = {}

    def handles(
        self, op_type: type[OpT]
    ) -> Callable[[Callable[[OpT, ContextT], None]], Callable[[OpT, ContextT], None]]:
        if op_type.side != self.side:
            raise TypeError(f"{op_type.__name__} acts on {op_type.side}, not {self.side}")

        def register(handler: Callable[[OpT, ContextT], None]) -> Callable[[OpT, ContextT], None]:
            self._handlers[op_type] = handler
            return handler

        return register

    def run(self, operation: Operation, context: ContextT) -> None:
        handler = self._handlers.get(type(operation))
        if handler is None:
            raise TypeError(f"no {self.side} handler for {type(operation).__name__}")
        handler(operation, context)
