"""The `guest` stage: observe the two storage nodes over SSH, diff, apply.

It needs no vSphere: nodes are reached at their iSCSI addresses, their host
keys pinned from the state folder. Generated secrets (DRBD shared secret,
heartbeat authkeys, CHAP) come from the state folder and are never rotated.
"""

from importlib import resources

from orchestrator.changes import Attr, Change, Problem
from orchestrator.guest import layout
from orchestrator.guest.facts import (
    DeployedSecrets,
    Disks,
    DrbdMetadata,
    Fact,
    FileHashes,
    NodeFacts,
    ProcDrbd,
    ServicesFact,
    SplitBrainMarkers,
    TargetDefinitionHash,
    script,
    split,
)
from orchestrator.guest.render import NodeFile, Secrets, lun_serial, node_files
from orchestrator.guest.ssh import GuestError, NodeShell, Unreachable
from orchestrator.plan import Plan
from orchestrator.stages.guest import apply as guest_apply
from orchestrator.stages.guest import diff as guest_diff
from orchestrator.stages.guest.diff import Desired, devices

SCRIPT_PATH = f"/etc/ha.d/resource.d/{layout.TARGET_SCRIPT}"
BOOT_WAIT_S = 300.0  # a storage VM the vms stage just powered on boots (slowly under emulation)


def _pending(node: str) -> Change:
    return Change(
        stage="guest",
        action="create",
        resource=f"node {node}",
        attrs=[
            Attr("configuration", None, "DRBD, heartbeat and the iSCSI target, once the VM answers on SSH")
        ],
    )


class GuestStage:
    name = "guest"
    needs_vsphere = False

    def __init__(self) -> None:
        self.shells: dict[str, NodeShell] = {}
        self.desired: dict[str, Desired] = {}

    def observe(self, ctx) -> None:
        return None

    def diff(self, ctx, observed: None) -> tuple[list[Change], list[Problem]]:
        plan = ctx.plan
        names = ["drbd", "heartbeat", *(["chap"] if plan.target.chap else [])]
        lost = [name for name in names if not ctx.state.has_secret(name)]
        unreachable = []
        facts = {}
        for node in plan.storage_nodes:
            if node.node in ctx.silent and not ctx.applying:
                unreachable.append(node.node)  # the vms stage resets it (or refuses to)
                continue
            try:
                facts[node.node] = self._observe(ctx, node, read_secrets=bool(lost))
            except Unreachable:
                if ctx.applying or node.node not in ctx.starting:
                    raise
                unreachable.append(node.node)  # the vms stage powers it on first
        if unreachable:
            return [_pending(node) for node in unreachable], []
        problems = [p for node, f in facts.items() for p in guest_diff.disk_problems(plan, node, f)]
        deployed, disagree = deployed_secrets(facts, lost)
        problems += disagree
        if problems:
            return [], problems
        secrets = Secrets(
            drbd=ctx.secret("drbd", deployed.get("drbd")),
            heartbeat=ctx.secret("heartbeat", deployed.get("heartbeat")),
            chap=ctx.secret("chap", deployed.get("chap")) if plan.target.chap else None,
        )
        # every node has its data disks here (disk_problems above)
        node_devices = {node: found for node, f in facts.items() if (found := devices(f)) is not None}
        self.desired = desired_state(plan, secrets, node_devices)
        changes, problems = guest_diff.diff(plan, self.desired, facts)
        starts = [change for change in changes if {"start", "restart"} & set(change.steps)]
        if starts:
            starts[-1].params["wait_serving"] = True
        return changes, problems

    def _observe(self, ctx, node, read_secrets: bool) -> NodeFacts:
        plan: Plan = ctx.plan
        shell = self.shells.get(node.node)
        if shell is None:
            shell = NodeShell(
                node.node,
                str(node.iscsi_ip),
                plan.storage_vm.ssh_user,
                plan.ssh_key_file,
                ctx.state.host_key(node.node),
                wait_s=BOOT_WAIT_S if ctx.applying and node.node in ctx.starting else 0,
            )
            self.shells[node.node] = shell
        disks = Disks().process(shell.run(Disks.command).out)
        paths = [*_managed_paths(plan)]
        facts: dict[str, Fact] = {
            "drbd": ProcDrbd(),
            "metadata": DrbdMetadata(disks[0].path if disks else None),
            "files": FileHashes(paths),
            "services": ServicesFact(str(plan.network.vip)),
            "split_brain": SplitBrainMarkers(),
            "target_definition": TargetDefinitionHash(),
            **({"secrets": DeployedSecrets()} if read_secrets else {}),
        }
        result = shell.run(script(facts), check=False)
        if result.code != 0:  # its output may hold secrets (DeployedSecrets): never quoted
            raise GuestError(f"{node.node}: reading its state failed ({result.code}): {result.err.strip()}")
        sections = split(result.out)
        parsed = {name: fact.process(sections.get(name, "")) for name, fact in facts.items()}
        for resource in layout.RESOURCES:
            state = parsed["drbd"].get(resource.minor)
            if state is not None and not state.ds.startswith("Diskless"):
                parsed["metadata"][resource.name] = True  # attached: drbdmeta cannot read it, it exists
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

    def apply(self, ctx, change: Change) -> None:
        guest_apply.apply(ctx.plan, change, self.shells, self.desired, ctx.reporter)

    def close(self) -> None:
        for shell in self.shells.values():
            shell.close()
        self.shells.clear()


def deployed_secrets(facts: dict[str, NodeFacts], lost: list[str]) -> tuple[dict[str, str], list[Problem]]:
    """The secrets the state folder lost, as the nodes use them. A problem when nodes
    disagree, or when a node holds the secret's file but it could not be read back
    (a new secret would rotate it on a working pair)."""
    deployed, problems = {}, []
    for name in lost:
        values = {node_facts.secrets[name] for node_facts in facts.values() if name in node_facts.secrets}
        unread = [
            node
            for node, node_facts in facts.items()
            if _holds(node_facts, name) and name not in node_facts.secrets
        ]
        if len(values) > 1 or unread:
            why = "use different ones" if len(values) > 1 else f"hold it unreadably ({', '.join(unread)})"
            problems.append(
                Problem(
                    "guest",
                    f"secret {name}",
                    f"the state folder has no {name} secret and the storage nodes {why}; "
                    f"restore secrets/{name} in the state folder from a backup",
                )
            )
        elif values:
            deployed[name] = values.pop()
    return deployed, problems


def _holds(facts: NodeFacts, secret: str) -> bool:
    """Whether the node has the file a secret is read back from."""
    if secret == "chap":
        return facts.target_definition is not None
    path = {"drbd": f"/etc/drbd.d/{layout.CONFIG.name}.res", "heartbeat": "/etc/ha.d/authkeys"}[secret]
    return path in facts.files


def _managed_paths(plan: Plan) -> list[str]:
    """The managed files' paths (they do not depend on secrets or devices)."""
    dummy = {node.node: {role: "" for role in guest_diff.DISK_ROLES} for node in plan.storage_nodes}
    return [*node_files(plan, Secrets("", "", ""), dummy), SCRIPT_PATH]


def desired_state(
    plan: Plan, secrets: Secrets, node_devices: dict[str, dict[str, str]]
) -> dict[str, Desired]:
    files = node_files(plan, secrets, node_devices)
    script_text = resources.files("orchestrator.guest").joinpath("files", layout.TARGET_SCRIPT).read_text()
    files[SCRIPT_PATH] = NodeFile(script_text, 0o755, False, "target")
    definition = guest_apply.target_definition(plan, lun_serial(plan), secrets.chap)
    return {node.node: Desired(files=files, target_definition=definition) for node in plan.storage_nodes}
