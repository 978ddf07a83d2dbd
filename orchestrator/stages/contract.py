"""What every stage shares: the run's context, and the Stage contract the engine
knows stages by.

A stage observes (facts: plain data, read from the run's one inventory snapshot
or over SSH), diffs (pure: plan + facts -> changes and problems), applies one
change (its operations, by the executors) and closes what it opened.
"""

from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from orchestrator.changes import Change, Problem
from orchestrator.guest.ssh import NodeShell
from orchestrator.identity import NodeIdentity
from orchestrator.logs import Redactor
from orchestrator.plan import Plan
from orchestrator.progress import Reporter
from orchestrator.stages.vms import facts as vms_facts
from orchestrator.state import HostKey, StateDir
from orchestrator.vsphere.inventory import Inventory, take_snapshot
from orchestrator.vsphere.session import Session

STAGE_ORDER = ("hosts", "network", "vms", "guest", "iscsi", "datastore", "cluster")
# Every stage but the guest stage (which needs real storage VMs), as --only takes them.
VSPHERE_STAGES = ",".join(name for name in STAGE_ORDER if name != "guest")


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
    # Each storage node's SSH session, opened by the guest stage's observe, used by its
    # handlers, closed by its close().
    shells: dict[str, NodeShell] = field(default_factory=dict)
    # What this run's handlers made, for the later operations of the same change
    # (no lookup round trip): new VMs by name -> moId; software iSCSI adapters
    # enabled, by HostStorageSystem moId -> device.
    created_vms: dict[str, str] = field(default_factory=dict)
    enabled_adapters: dict[str, str] = field(default_factory=dict)
    # What the hosts and network stages plan to make in this run, for the later
    # stages' plans before it exists: hosts to add (by name); per host, the portgroups
    # created and the iSCSI vmknic's address ("ip/prefix") made or re-addressed.
    pending_hosts: set[str] = field(default_factory=set)
    pending_portgroups: dict[str, set[str]] = field(default_factory=dict)
    pending_vmknics: dict[str, str] = field(default_factory=dict)

    def secret(self, name: str, deployed: str | None = None) -> str:
        """A generated secret from the state folder (or, when the folder lost it, the
        one deployed), masked in the run log from now on."""
        value = self.state.secret(name, deployed)
        self.redactor.add(value)
        return value

    @property
    def vsphere(self) -> Session:
        """The session (a stage that needs vSphere runs only with one)."""
        if self.session is None:
            raise RuntimeError("a vSphere stage ran without a vSphere session")
        return self.session

    @property
    def snapshot(self) -> Inventory:
        """The inventory snapshot (taken before any vSphere stage observes)."""
        if self.inventory is None:
            raise RuntimeError("a vSphere stage observed before the inventory snapshot")
        return self.inventory

    def refresh(self) -> None:
        if self.session is None:
            return
        plan = self.plan
        self.inventory = take_snapshot(
            self.session,
            plan.vsphere.datacenter,
            vms_facts.vm_folder(plan, self.session.esxi),
            vms_facts.vm_paths(plan),
        )


FactsT = TypeVar("FactsT")


class Stage(Protocol[FactsT]):
    name: str
    needs_vsphere: bool

    def observe(self, ctx: RunContext) -> FactsT: ...

    def diff(self, ctx: RunContext, facts: FactsT) -> tuple[list[Change], list[Problem]]: ...

    def apply(self, ctx: RunContext, change: Change) -> None: ...

    def close(self, ctx: RunContext) -> None: ...
