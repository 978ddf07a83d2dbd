"""The `vms` stage: one storage VM per storage node, reset when its guest is
silent (guest_liveness), started with its host (autostart)."""

from dataclasses import dataclass, replace

from orchestrator.changes import Change, Problem
from orchestrator.identity import node_identity, ssh_public_key
from orchestrator.stages.contract import RunContext
from orchestrator.stages.vms import apply, autostart, diff, facts, guest_liveness
from orchestrator.stages.vms.autostart import HostAutostart
from orchestrator.stages.vms.facts import PENDING_NETWORK, Placement, VmsFacts
from orchestrator.stages.vms.guest_liveness import Silence
from orchestrator.stages.vms.operations import PowerOnVm, ResetVm


@dataclass
class VmsObserved:
    vms: VmsFacts
    silences: list[Silence] | None  # None: the run has no guest stage, so no node is contacted
    autostart: list[HostAutostart]


class VmsStage:
    name = "vms"
    needs_vsphere = True

    def observe(self, ctx: RunContext) -> VmsObserved:
        plan = ctx.plan
        site = facts.observe(plan, ctx.snapshot, esxi=ctx.vsphere.esxi)
        if plan.storage_vm.source.ova and facts.needs_source(plan, site):
            site.ova = facts.observe_ova(plan)  # every manifest digest, before any change
        admin_key = ssh_public_key(plan)
        for node_facts in site.nodes:
            node = node_facts.node
            key = ctx.state.host_key(node.node, deployed=facts.deployed_host_key(node_facts.vm))
            ctx.host_keys[node.node] = key
            ctx.identities[node.node] = node_identity(plan, node, key, admin_key)
            placement = node_facts.placement = with_pending(
                node_facts.placement, ctx.pending_portgroups.get(node.esxi)
            )
            if facts.needs_disk_file_check(plan, node_facts) and placement.datastore_id:
                node_facts.folder_files = facts.disk_files_present(ctx.vsphere, plan, node)
        silences = None
        if "guest" in ctx.stages:  # a run without the guest stage never contacts a node
            silences = guest_liveness.observe(plan, site, ctx.host_keys, ctx.silent_since, ctx.reporter)
            ctx.silent = {silence.node for silence in silences}
        return VmsObserved(site, silences, autostart.observe(plan, ctx.snapshot))

    def diff(self, ctx: RunContext, observed: VmsObserved) -> tuple[list[Change], list[Problem]]:
        changes, problems = diff.diff(ctx.plan, observed.vms, ctx.identities, ctx.allow_destroy)
        if observed.silences is not None:
            resets, refusals = guest_liveness.diff(ctx.plan, observed.silences)
            changes, problems = resets + changes, problems + refusals
        ctx.starting = starting(changes)
        changes += autostart.diff(ctx.plan, observed.autostart)
        return changes, problems

    def apply(self, ctx: RunContext, change: Change) -> None:
        apply.apply(ctx, change)

    def close(self, ctx: RunContext) -> None:
        pass


def starting(changes: list[Change]) -> set[str]:
    """The nodes whose VMs these changes power on or reset (the guest stage waits for them)."""
    return {
        operation.node
        for change in changes
        for operation in change.operations
        if isinstance(operation, PowerOnVm | ResetVm)
    }


def with_pending(placement: Placement, created: set[str] | None) -> Placement:
    """The host's networks, counting the portgroups the network stage creates in this run
    (their id is known only once they exist: the stage is planned again before it applies)."""
    if not created:
        return placement
    pending = {name: PENDING_NETWORK for name in created if name not in placement.networks}
    return replace(placement, networks={**placement.networks, **pending})
