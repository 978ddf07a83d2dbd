"""Facts of the `guest` stage: each storage node's state, read over SSH (one round trip
for its disks, one for the rest), parsed by orchestrator/guest/facts.py.

Nodes are reached at their iSCSI addresses, their host keys pinned from the
state folder; the shells stay open in ctx.shells for the handlers.
"""

from dataclasses import dataclass
from typing import Any

from orchestrator.guest import layout
from orchestrator.guest.facts import (
    DeployedSecrets,
    Disk,
    Disks,
    DrbdMetadata,
    DrbdState,
    Fact,
    FileHashes,
    NodeFacts,
    ProcDrbd,
    SplitBrainMarkers,
    TargetDefinitionHash,
    script,
    split,
)
from orchestrator.guest.managers import manager_for, services_fact
from orchestrator.guest.render import managed_paths
from orchestrator.guest.ssh import GuestError, NodeShell, Unreachable
from orchestrator.plan import Plan, VmNode
from orchestrator.stages.contract import RunContext
from orchestrator.stages.guest import witness
from orchestrator.stages.guest.witness import WitnessFacts

BOOT_WAIT_S = 300.0  # a storage VM the vms stage just powered on boots (slowly under emulation)


def secret_names(plan: Plan) -> tuple[str, ...]:
    """The generated secrets a configured pair uses (the manager's among them)."""
    chap = ("chap",) if plan.target.chap else ()
    return ("drbd", manager_for(plan).secret, *chap)


@dataclass(frozen=True)
class GuestFacts:
    nodes: dict[str, NodeFacts]  # the storage nodes that answered
    witness: WitnessFacts | None = None  # the witness, when the plan has one and it answered
    pending: tuple[str, ...] = ()  # nodes that do not answer yet (the vms stage starts or resets them)
    lost: tuple[str, ...] = ()  # secrets the state folder does not hold (read back from the nodes)


def observe(ctx: RunContext) -> GuestFacts:
    plan = ctx.plan
    lost = tuple(name for name in secret_names(plan) if not ctx.state.has_secret(name))
    pending = []
    nodes = {}
    witness_facts = None
    for node in plan.vm_nodes:
        if node.node in ctx.silent and not ctx.applying:
            pending.append(node.node)  # the vms stage resets it (or refuses to)
            continue
        try:
            if node == plan.witness:
                witness_facts = witness.from_parsed(read_facts(shell(ctx, node), witness.facts_to_read(plan)))
            else:
                nodes[node.node] = node_facts(plan, shell(ctx, node), read_secrets=bool(lost))
        except Unreachable:
            if ctx.applying or node.node not in ctx.starting:
                raise
            pending.append(node.node)  # the vms stage powers it on first
    return GuestFacts(nodes=nodes, witness=witness_facts, pending=tuple(pending), lost=lost)


def shell(ctx: RunContext, node: VmNode) -> NodeShell:
    """The node's SSH session, opened once per run and kept in ctx.shells."""
    found = ctx.shells.get(node.node)
    if found is None:
        plan = ctx.plan
        found = NodeShell(
            node.node,
            str(node.iscsi_ip),
            plan.storage_vm.ssh_user,
            plan.ssh_key_file,
            ctx.state.host_key(node.node),
            wait_s=BOOT_WAIT_S if ctx.applying and node.node in ctx.starting else 0,
        )
        ctx.shells[node.node] = found
    return found


def node_facts(plan: Plan, shell: NodeShell, read_secrets: bool) -> NodeFacts:
    manager = manager_for(plan)
    disks = Disks().process(shell.run(Disks.command).out)
    facts: dict[str, Fact] = {
        "drbd": ProcDrbd(),
        "metadata": DrbdMetadata(disks[0].path if disks else None),
        "files": FileHashes(managed_paths(plan)),
        "services": services_fact(plan),
        "split_brain": SplitBrainMarkers(),
        "target_definition": TargetDefinitionHash(),
        **({"secrets": DeployedSecrets(manager.secret, manager.secret_readback())} if read_secrets else {}),
    }
    parsed = read_facts(shell, facts)
    _attached_have_metadata(parsed["drbd"], parsed["metadata"])
    return NodeFacts(
        disks=disks,
        drbd=parsed["drbd"],
        metadata=parsed["metadata"],
        files=parsed["files"],
        services=parsed["services"],
        target_definition=parsed["target_definition"],
        split_brain=parsed["split_brain"],
        secrets=parsed.get("secrets", {}),
    )


def disks_and_metadata(shell: NodeShell) -> tuple[list[Disk], dict[str, bool]]:
    """Read again right before DRBD metadata is created: the node's data disks (with their
    signatures) and which resources have metadata, as node_facts reads them."""
    disks = Disks().process(shell.run(Disks.command).out)
    parsed = read_facts(
        shell, {"drbd": ProcDrbd(), "metadata": DrbdMetadata(disks[0].path if disks else None)}
    )
    _attached_have_metadata(parsed["drbd"], parsed["metadata"])
    return disks, parsed["metadata"]


def read_facts(shell: NodeShell, facts: dict[str, Fact]) -> dict[str, Any]:
    """Every fact in one SSH command, parsed."""
    result = shell.run(script(facts), check=False)
    if result.code != 0:  # its output may hold secrets (DeployedSecrets): never quoted
        raise GuestError(f"{shell.node}: reading its state failed ({result.code}): {result.err.strip()}")
    sections = split(result.out)
    return {name: fact.process(sections.get(name, "")) for name, fact in facts.items()}


def _attached_have_metadata(drbd: dict[int, DrbdState], metadata: dict[str, bool]) -> None:
    for resource in layout.RESOURCES:
        state = drbd.get(resource.minor)
        if state is not None and not state.ds.startswith("Diskless"):
            metadata[resource.name] = True  # attached: drbdmeta cannot read it, it exists
