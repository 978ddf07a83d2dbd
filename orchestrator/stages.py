"""The stages in dependency order, and the context a run shares between them.

A stage has a name, `plan(ctx) -> (changes, problems)` (observe + pure
diff) and `apply(ctx, change)`. One inventory snapshot serves every vSphere
stage; ctx.refresh() takes a new one after changes were applied.
"""

import base64
import json
from dataclasses import dataclass, field
from typing import Any

from pyVmomi import vim

from orchestrator.changes import Change, Problem
from orchestrator.guest.stage import GuestStage
from orchestrator.identity import NodeIdentity, node_identity, ssh_public_key
from orchestrator.logs import Redactor
from orchestrator.plan import Plan
from orchestrator.progress import Reporter
from orchestrator.state import HostKey, StateDir
from orchestrator.vsphere import (
    autostart,
    cluster,
    cluster_apply,
    datastore,
    datastore_apply,
    guest_liveness,
    iscsi,
    iscsi_apply,
    storage_vm_apply,
    storage_vms,
)
from orchestrator.vsphere.inventory import Inventory, take_snapshot
from orchestrator.vsphere.session import Session
from orchestrator.vsphere.vm_facts import VmFact

STAGE_ORDER = ("vms", "guest", "iscsi", "datastore", "cluster")


@dataclass
class RunContext:
    plan: Plan
    session: Session | None  # None when no selected stage talks to vSphere
    state: StateDir
    reporter: Reporter
    allow_destroy: frozenset[str]
    redactor: Redactor
    # True only while stages are applied: a stage may then wait for what an earlier
    # stage just started: the guest stage for the nodes in `starting`, whose VMs the
    # vms stage creates or powers on in this run (before the prompt they show as
    # pending; any other node that does not answer is an error).
    applying: bool = False
    starting: set[str] = field(default_factory=set)
    stages: tuple[str, ...] = STAGE_ORDER  # the stages this run selected
    # Powered-on nodes whose guest does not answer SSH (the vms stage resets or refuses
    # them; the guest stage does not try them again before applying), and since when
    # this run has seen each silent (time.monotonic()).
    silent: set[str] = field(default_factory=set)
    silent_since: dict[str, float] = field(default_factory=dict)
    host_keys: dict[str, HostKey | None] = field(default_factory=dict)  # per node, as the vms stage pins them
    inventory: Inventory | None = None
    identities: dict[str, NodeIdentity] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # one-line remarks, e.g. a stage skipped

    def secret(self, name: str, deployed: str | None = None) -> str:
        """A generated secret from the state folder (or, when the folder lost it, the
        one deployed), masked in the run log from now on."""
        value = self.state.secret(name, deployed)
        self.redactor.add(value)
        return value

    @property
    def vsphere(self) -> Session:
        """The session, for a stage that talks to vSphere (it has one whenever such a stage runs)."""
        if self.session is None:
            raise RuntimeError("no vSphere session: no selected stage was to talk to vSphere")
        return self.session

    @property
    def snapshot(self) -> Inventory:
        """The inventory snapshot, taken by refresh() before any vSphere stage plans."""
        if self.inventory is None:
            raise RuntimeError("no inventory snapshot: refresh() was not called")
        return self.inventory

    def refresh(self) -> None:
        if self.session is None:
            return
        plan = self.plan
        self.inventory = take_snapshot(
            self.session,
            plan.vsphere.datacenter,
            storage_vms.vm_folder(plan, self.session.esxi),
            storage_vms.vm_paths(plan),
        )


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
    name = "vms"

    def plan(self, ctx: RunContext) -> tuple[list[Change], list[Problem]]:
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


class IscsiStage:
    name = "iscsi"

    def plan(self, ctx: RunContext) -> tuple[list[Change], list[Problem]]:
        return iscsi.diff(ctx.plan, iscsi.observe(ctx.plan, ctx.snapshot))

    def apply(self, ctx: RunContext, change: Change) -> None:
        secret = ctx.secret("chap") if ctx.plan.target.chap else None
        iscsi_apply.apply(ctx.vsphere, ctx.plan, change, secret, ctx.reporter)


class DatastoreStage:
    name = "datastore"

    def plan(self, ctx: RunContext) -> tuple[list[Change], list[Problem]]:
        return datastore.diff(ctx.plan, datastore.observe(ctx.plan, ctx.snapshot))

    def apply(self, ctx: RunContext, change: Change) -> None:
        datastore_apply.apply(ctx.vsphere, ctx.plan, change, ctx.reporter)


class ClusterStage:
    name = "cluster"

    def plan(self, ctx: RunContext) -> tuple[list[Change], list[Problem]]:
        if ctx.plan.cluster is None:
            ctx.notes.append("stage cluster: the plan has no [cluster]; skipped")
            return [], []
        if ctx.vsphere.content.about.apiType != "VirtualCenter":
            ctx.notes.append(
                "stage cluster: connected to an ESXi host, not vCenter; clusters need vCenter; skipped"
            )
            return [], []
        return cluster.diff(ctx.plan, cluster.observe(ctx.plan, ctx.snapshot))

    def apply(self, ctx: RunContext, change: Change) -> None:
        cluster_apply.apply(ctx.vsphere, ctx.plan, ctx.snapshot, change, ctx.reporter)


STAGES: dict[str, Any] = {
    "vms": VmsStage(),
    "guest": GuestStage(),
    "iscsi": IscsiStage(),
    "datastore": DatastoreStage(),
    "cluster": ClusterStage(),
}
