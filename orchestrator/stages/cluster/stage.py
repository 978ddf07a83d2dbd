"""The `cluster` stage (vCenter only): the hosts in one cluster with vSphere HA.

Skipped, with a note, when the plan has no [cluster] or the session is with an
ESXi host (clusters need vCenter).
"""

from dataclasses import dataclass

from orchestrator.changes import Change, Problem
from orchestrator.stages.cluster import apply, diff, facts
from orchestrator.stages.cluster.facts import ClusterFacts
from orchestrator.stages.contract import RunContext


@dataclass(frozen=True)
class Skipped:
    """What observe finds when the stage does not apply to this plan and server."""

    note: str


class ClusterStage:
    name = "cluster"
    needs_vsphere = True

    def observe(self, ctx: RunContext) -> ClusterFacts | Skipped:
        if ctx.plan.cluster is None:
            return Skipped("stage cluster: the plan has no [cluster]; skipped")
        if ctx.vsphere.content.about.apiType != "VirtualCenter":
            return Skipped(
                "stage cluster: connected to an ESXi host, not vCenter; clusters need vCenter; skipped"
            )
        return facts.observe(ctx.plan, ctx.snapshot)

    def diff(self, ctx: RunContext, observed: ClusterFacts | Skipped) -> tuple[list[Change], list[Problem]]:
        if isinstance(observed, Skipped):
            ctx.notes.append(observed.note)
            return [], []
        return diff.diff(ctx.plan, observed)

    def apply(self, ctx: RunContext, change: Change) -> None:
        apply.apply(ctx, change)

    def close(self, ctx: RunContext) -> None:
        pass
