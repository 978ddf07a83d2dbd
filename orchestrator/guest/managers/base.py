"""The interface every cluster manager module implements."""

from dataclasses import dataclass, field
from typing import Protocol

from orchestrator.guest.node_file import NodeFile
from orchestrator.plan import Plan


@dataclass(frozen=True)
class DrbdFencing:
    policy: str  # drbd.conf `fencing`
    handlers: dict[str, str]  # drbd.conf handler -> command
    net: dict[str, str] = field(default_factory=dict)  # drbd.conf `net` options: how soon a peer is lost


class ClusterManager(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def units(self) -> tuple[str, ...]:
        """The systemd units it runs, in start order."""
        ...

    @property
    def secret(self) -> str:
        """The state folder's secret its nodes authenticate with."""
        ...

    @property
    def fencing(self) -> DrbdFencing: ...

    @property
    def dopd(self) -> bool:
        """heartbeat's outdate-peer daemon runs DRBD's helpers (their permissions are set)."""
        ...

    def files(self, plan: Plan, secret: str) -> dict[str, NodeFile]:
        """Its managed files on every node."""
        ...

    def paths(self) -> list[str]:
        """Those files' paths, without rendering."""
        ...

    def secret_path(self) -> str:
        """The file its secret is read back from when the state folder lost it."""
        ...

    def secret_readback(self) -> str:
        """A shell command printing the secret as the node uses it (or nothing)."""
        ...
