"""The `datastore` stage: one VMFS datastore on our LUN, mounted on every host."""

from orchestrator.changes import Change, Problem
from orchestrator.stages.contract import RunContext
from orchestrator.stages.datastore import apply, diff, facts
from orchestrator.stages.datastore.facts import DatastoreFacts


class DatastoreStage:
    name = "datastore"
    needs_vsphere = True

    def observe(self, ctx: RunContext) -> DatastoreFacts:
        return facts.observe(ctx.plan, ctx.snapshot)

    def diff(self, ctx: RunContext, observed: DatastoreFacts) -> tuple[list[Change], list[Problem]]:
        return diff.diff(ctx.plan, observed)

    def apply(self, ctx: RunContext, change: Change) -> None:
        apply.apply(ctx, change)

    def close(self, ctx: RunContext) -> None:
        pass
