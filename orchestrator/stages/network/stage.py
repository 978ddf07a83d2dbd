"""The `network` stage: storage vSwitch, portgroups and iSCSI vmknics on every host."""

from orchestrator.changes import Change, Problem
from orchestrator.stages.contract import RunContext
from orchestrator.stages.network import apply, diff, facts
from orchestrator.stages.network.facts import NetworkFacts


class NetworkStage:
    name = "network"
    needs_vsphere = True

    def observe(self, ctx: RunContext) -> NetworkFacts:
        return facts.observe(ctx.plan, ctx.snapshot)

    def diff(self, ctx: RunContext, found: NetworkFacts) -> tuple[list[Change], list[Problem]]:
        changes, problems = diff.diff(ctx.plan, found)
        # What this run creates, for the later stages' plans (the vms stage's NICs,
        # the iscsi stage's reachability and binding).
        ctx.pending_portgroups = diff.created_portgroups(changes)
        ctx.pending_vmknics = diff.created_vmknics(changes)
        return changes, problems

    def apply(self, ctx: RunContext, change: Change) -> None:
        apply.apply(ctx, change)

    def close(self, ctx: RunContext) -> None:
        pass
