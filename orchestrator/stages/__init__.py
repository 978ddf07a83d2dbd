"""The stages in dependency order, each behind the Stage contract (contract.py).

One inventory snapshot serves every vSphere stage; ctx.refresh() takes a new
one after changes were applied.
"""

import base64
import json
from typing import Any

from pyVmomi import vim

from orchestrator.changes import Change, Problem
from orchestrator.guest.stage import GuestStage
from orchestrator.identity import node_identity, ssh_public_key
from orchestrator.plan import Plan
from orchestrator.stages.cluster.stage import ClusterStage
from orchestrator.stages.contract import RunContext, Stage
from orchestrator.stages.datastore.stage import DatastoreStage
from orchestrator.stages.iscsi.stage import IscsiStage
from orchestrator.state import HostKey
from orchestrator.vsphere import (
    autostart,
    guest_liveness,
    storage_vm_apply,
    storage_vms,
)
from orchestrator.vsphere.inventory import Inventory
from orchestrator.vsphere.vm_facts import VmFact


def missing_hosts(plan: Plan, inventory: Inventory) -> list[Problem]:
    """Every stage needs every host of the plan: an unknown one is reported once, here."""
    known = {obj.name for obj in inventory.of_type(vim.HostSystem)}
    return [
        Problem(
            "site",
            f"host {entry.esxi}",
            f"ESXi host {entry.esxi!r} not found in datacenter {plan.vsphere.datacenter!r}; check "
            "hosts[].esxi (the host's name in the inventory) or add the host to vCenter",
        )
        for entry in plan.hosts
        if entry.esxi not in known
    ]


class VmsStage:
    needs_vsphere = True

    def close(self) -> None:
        pass

    name = "vms"

    def observe(self, ctx: RunContext) -> None:
        return None

    def diff(self, ctx: RunContext, observed: None) -> tuple[list[Change], list[Problem]]:
        esxi = ctx.vsphere.esxi
        facts = storage_vms.observe(ctx.plan, ctx.snapshot, esxi=esxi)
        if ctx.plan.storage_vm.source.ova and storage_vms.needs_source(ctx.plan, facts):
            facts.ova = storage_vms.observe_ova(ctx.plan)  # every manifest digest, before any change
        admin_key = ssh_public_key(ctx.plan)
        for node_facts in facts.nodes:
            node = node_facts.node
            key = ctx.state.host_key(node.node, deployed=deployed_host_key(node_facts.vm))
            ctx.host_keys[node.node] = key
            ctx.identities[node.node] = node_identity(ctx.plan, node, key, admin_key)
            placement = node_facts.placement
            if storage_vms.needs_folder_listing(ctx.plan, node_facts) and placement.datastore_id:
                node_facts.folder_files = storage_vm_apply.list_folder(
                    ctx.vsphere,
                    ctx.reporter,
                    placement.datastore_id,
                    node.datastore,
                    ctx.plan.vm_name(node.node),
                )
        changes, problems = storage_vms.diff(ctx.plan, facts, ctx.identities, ctx.allow_destroy)
        if "guest" in ctx.stages:  # a run without the guest stage never contacts a node
            silences = guest_liveness.observe(ctx.plan, facts, ctx.host_keys, ctx.silent_since, ctx.reporter)
            ctx.silent = {silence.node for silence in silences}
            resets, refusals = guest_liveness.diff(ctx.plan, silences)
            changes, problems = resets + changes, problems + refusals
        powered_on = {change.resource for change in changes if {"power_on", "reset"} & set(change.steps)}
        ctx.starting = {
            node.node for node in ctx.plan.storage_nodes if f"vm {ctx.plan.vm_name(node.node)}" in powered_on
        }
        changes += autostart.diff(ctx.plan, autostart.observe(ctx.plan, ctx.snapshot))
        return changes, problems

    def apply(self, ctx: RunContext, change: Change) -> None:
        if "autostart" in change.steps:
            autostart.apply(ctx.vsphere, ctx.snapshot, change, ctx.reporter)
            return
        if "reset" in change.steps:
            guest_liveness.recheck(ctx.plan, change, ctx.host_keys)
        identity = ctx.identities.get(change.params.get("node", ""))
        storage_vm_apply.apply(ctx.vsphere, ctx.plan, ctx.snapshot, change, identity, ctx.reporter)


def deployed_host_key(vm: VmFact | None) -> HostKey | None:
    """The host key a VM of ours already carries in its cloud-init userdata.

    When the state folder is lost this keeps the key instead of rotating it.
    """
    if vm is None or vm.owner is None:
        return None
    encoded = vm.extra.get("guestinfo.userdata")
    if not encoded:
        return None
    try:
        text = base64.b64decode(encoded).decode()
        keys: dict[str, Any] = json.loads(text.removeprefix("#cloud-config\n"))["ssh_keys"]
        return HostKey(keys["ed25519_private"], keys["ed25519_public"])
    except (ValueError, KeyError, TypeError):
        return None


STAGES: dict[str, Stage[Any]] = {
    "vms": VmsStage(),
    "guest": GuestStage(),
    "iscsi": IscsiStage(),
    "datastore": DatastoreStage(),
    "cluster": ClusterStage(),
}
