"""The `guest` stage: observe the two storage nodes (and the witness) over SSH, diff, apply.

It needs no vSphere: nodes are reached at their iSCSI addresses, their host
keys pinned from the state folder. Generated secrets (DRBD shared secret,
the cluster manager's key, CHAP) come from the state folder and are never rotated;
they are resolved here, while planning, to render what the nodes must hold.
"""

from orchestrator.changes import Attr, Change, Problem
from orchestrator.guest.managers import manager_for
from orchestrator.guest.render import Secrets, desired_state
from orchestrator.stages.contract import RunContext
from orchestrator.stages.guest import apply, diff, facts
from orchestrator.stages.guest.facts import GuestFacts


def _pending(node: str) -> Change:
    return Change(
        stage="guest",
        action="create",
        resource=f"node {node}",
        attrs=[
            Attr(
                "configuration",
                None,
                "DRBD, the cluster manager and the iSCSI target, once the VM answers on SSH",
            )
        ],
    )


class GuestStage:
    name = "guest"
    needs_vsphere = False

    def observe(self, ctx: RunContext) -> GuestFacts:
        return facts.observe(ctx)

    def diff(self, ctx: RunContext, observed: GuestFacts) -> tuple[list[Change], list[Problem]]:
        if observed.pending:
            return [_pending(node) for node in observed.pending], []
        nodes = observed.nodes
        problems = diff.disk_problems(nodes)
        deployed, disagree = diff.deployed_secrets(ctx.plan, nodes, list(observed.lost))
        problems += disagree
        if problems:
            return [], problems
        plan = ctx.plan
        cluster = manager_for(plan).secret
        secrets = Secrets(
            drbd=ctx.secret("drbd", deployed.get("drbd")),
            cluster=ctx.secret(cluster, deployed.get(cluster)),
            chap=ctx.secret("chap", deployed.get("chap")) if plan.target.chap else None,
        )
        node_devices = {node: found for node, f in nodes.items() if (found := diff.devices(f)) is not None}
        return diff.diff(plan, desired_state(plan, secrets, node_devices), nodes, observed.witness)

    def apply(self, ctx: RunContext, change: Change) -> None:
        apply.apply(ctx, change)

    def close(self, ctx: RunContext) -> None:
        for shell in ctx.shells.values():
            shell.close()
        ctx.shells.clear()
