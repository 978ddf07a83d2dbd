"""The two executors: one for vSphere, one for a node's shell. Each stage's
apply module registers a handler per operation type it declares."""

from orchestrator.changes import Change
from orchestrator.operations import Executor
from orchestrator.stages.contract import RunContext

VSPHERE: Executor[RunContext] = Executor("vsphere")
NODE: Executor[RunContext] = Executor("node")


def run_operations(ctx: RunContext, change: Change) -> None:
    """A change's operations, in order, each by the executor of its side."""
    for operation in change.operations:
        (VSPHERE if operation.side == "vsphere" else NODE).run(operation, ctx)
