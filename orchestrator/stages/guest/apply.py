"""Executor of the `guest` stage: each operation runs over its node's SSH session
(ctx.shells, opened by observe).

What a handler writes is rendered again here from the plan and the state
folder's secrets, and written only if its sha256 is the one the diff showed.
The destructive operations re-read the disks right before they act.
"""

import logging
import time
from collections.abc import Callable
from xml.etree import ElementTree

from orchestrator.changes import Change
from orchestrator.executors import NODE, run_operations
from orchestrator.guest import layout
from orchestrator.guest.facts import DrbdState, ProcDrbd, ServicesFact
from orchestrator.guest.managers import manager_for
from orchestrator.guest.managers.pacemaker import CIB_FILE
from orchestrator.guest.render import (
    Desired,
    Secrets,
    desired_state,
    lun_serial,
    sha256,
    target_definition,
    witness_desired,
)
from orchestrator.guest.ssh import GuestError, NodeShell
from orchestrator.plan import ISCSI_PORT
from orchestrator.stages.contract import RunContext
from orchestrator.stages.guest.diff import fresh_pair, metadata_refusal
from orchestrator.stages.guest.facts import disks_and_metadata
from orchestrator.stages.guest.operations import (
    DOPD_HELPERS,
    AllowDopd,
    CleanupServe,
    CreateDrbdMetadata,
    DrbdAdjust,
    DrbdConnect,
    DrbdUp,
    EnableService,
    ForgetSplitBrain,
    InitializeDrbd,
    LoadCib,
    NodeDevices,
    RestartService,
    StartService,
    StartTarget,
    WaitServing,
    WriteFile,
    WriteTargetDefinition,
)

log = logging.getLogger(__name__)

CONNECT_WAIT_S = 120.0
SERVE_WAIT_S = 180.0
QUORUM_WAIT_S = 120.0
# Every unit we enable has a native unit file, which systemd uses instead of the package's SysV
# script; syncing the script's rc links runs update-rc.d (7-10 s per unit under emulation), and
# the unit files are unchanged, so no daemon reload is needed either.
ENABLE = "SYSTEMCTL_SKIP_SYSV=1 systemctl enable --no-reload"


def apply(ctx: RunContext, change: Change) -> None:
    run_operations(ctx, change)


def _shell(ctx: RunContext, node: str) -> NodeShell:
    shell = ctx.shells.get(node)
    if shell is None:
        raise GuestError(f"{node}: no SSH session (the guest stage did not observe it in this run)")
    return shell


def secrets(ctx: RunContext) -> Secrets:
    """The state folder's secrets (the diff stored or adopted them while planning)."""
    return Secrets(
        drbd=ctx.secret("drbd"),
        cluster=ctx.secret(manager_for(ctx.plan).secret),
        chap=ctx.secret("chap") if ctx.plan.target.chap else None,
    )


def _desired(ctx: RunContext, node: str, devices: tuple[NodeDevices, ...]) -> Desired:
    witness = ctx.plan.witness
    if witness is not None and node == witness.node:
        return witness_desired(ctx.plan, secrets(ctx))
    by_node = {
        found.node: {"meta": found.meta, "config": found.config, "data": found.data} for found in devices
    }
    return desired_state(ctx.plan, secrets(ctx), by_node)[node]


def _checked(node: str, what: str, content: str, expected: str) -> str:
    if sha256(content) != expected:
        raise GuestError(
            f"{node}: {what} renders to sha256 {sha256(content)[:12]} now, not {expected[:12]} as the "
            "diff showed (the plan or the state folder's secrets changed); nothing written, rerun"
        )
    return content


def _target_definition(ctx: RunContext, node: str, expected: str) -> str:
    content = target_definition(ctx.plan, lun_serial(ctx.plan), secrets(ctx).chap)
    return _checked(node, layout.TARGET_DEFINITION, content, expected)


@NODE.handles(WriteFile)
def write_file(op: WriteFile, ctx: RunContext) -> None:
    file = _desired(ctx, op.node, op.devices).files[op.path]
    content = _checked(op.node, op.path, file.content, op.content_sha256)
    _shell(ctx, op.node).write_file(op.path, content, op.mode)


@NODE.handles(AllowDopd)
def allow_dopd(op: AllowDopd, ctx: RunContext) -> None:
    for helper in DOPD_HELPERS:
        _shell(ctx, op.node).run(
            f"dpkg-statoverride --remove {helper} >/dev/null 2>&1; "
            f"dpkg-statoverride --update --add root haclient 4750 {helper}"
        )


@NODE.handles(ForgetSplitBrain)
def forget_split_brain(op: ForgetSplitBrain, ctx: RunContext) -> None:
    markers = " ".join(f"{layout.SPLIT_BRAIN_DIR}/{layout.SPLIT_BRAIN_PREFIX}{name}" for name in op.resources)
    _shell(ctx, op.node).run(f"rm -f {markers}")


def _resource(name: str) -> layout.DrbdResource:
    return next(resource for resource in layout.RESOURCES if resource.name == name)


@NODE.handles(CreateDrbdMetadata)
def create_metadata(op: CreateDrbdMetadata, ctx: RunContext) -> None:
    shell = _shell(ctx, op.node)
    disks, metadata = disks_and_metadata(shell)
    for name in op.resources:
        refusal = metadata_refusal(disks, metadata, _resource(name))
        if refusal is not None:
            raise GuestError(f"{op.node}: refusing drbdadm create-md {name}: {refusal} (since the diff)")
    for name in op.resources:
        # The disks hold no signature (re-read just now); --force only skips drbdmeta's prompt.
        shell.run(f"drbdadm -- --force create-md {name}")


def _drbdadm(verb: str, op: DrbdUp | DrbdAdjust | DrbdConnect, ctx: RunContext) -> None:
    for name in op.resources:
        _shell(ctx, op.node).run(f"drbdadm {verb} {name}")


@NODE.handles(DrbdUp)
def drbd_up(op: DrbdUp, ctx: RunContext) -> None:
    _drbdadm("up", op, ctx)


@NODE.handles(DrbdAdjust)
def drbd_adjust(op: DrbdAdjust, ctx: RunContext) -> None:
    _drbdadm("adjust", op, ctx)


@NODE.handles(DrbdConnect)
def drbd_connect(op: DrbdConnect, ctx: RunContext) -> None:
    _drbdadm("connect", op, ctx)


@NODE.handles(EnableService)
def enable_service(op: EnableService, ctx: RunContext) -> None:
    _shell(ctx, op.node).run(f"{ENABLE} {op.unit}")


@NODE.handles(StartService)
def start_service(op: StartService, ctx: RunContext) -> None:
    _shell(ctx, op.node).run(f"systemctl start {op.unit}")


@NODE.handles(RestartService)
def restart_service(op: RestartService, ctx: RunContext) -> None:
    _shell(ctx, op.node).run(f"systemctl restart {op.unit}")


@NODE.handles(WriteTargetDefinition)
def write_target_definition(op: WriteTargetDefinition, ctx: RunContext) -> None:
    content = _target_definition(ctx, op.node, op.content_sha256)
    _shell(ctx, op.node).write_file(layout.TARGET_DEFINITION, content, 0o600)


@NODE.handles(StartTarget)
def start_target(op: StartTarget, ctx: RunContext) -> None:
    _shell(ctx, op.node).run(f"/etc/ha.d/resource.d/{layout.TARGET_SCRIPT} start")


@NODE.handles(InitializeDrbd)
def initialize(op: InitializeDrbd, ctx: RunContext) -> None:
    """First creation only: every node's disks are read again and must still be empty."""
    shells = {node: _shell(ctx, node) for node in op.nodes}
    if not fresh_pair({node: disks_and_metadata(shell) for node, shell in shells.items()}):
        raise GuestError(
            f"refusing to create DRBD on {', '.join(op.nodes)}: a node's disks hold metadata or data "
            "since the diff; nothing was changed, rerun to see what they hold"
        )
    definition = _target_definition(ctx, op.first, op.target_definition_sha256)
    names = " ".join(r.name for r in layout.RESOURCES)
    for shell in shells.values():
        for resource in layout.RESOURCES:
            shell.run(f"drbdadm -- --force create-md {resource.name}")
        shell.run(f"drbdadm up {names}")
    first = shells[op.first]
    with ctx.reporter.task("DRBD: wait for the nodes to connect"):
        _wait(
            lambda: _every_resource(first, lambda state: state.cs == "Connected"),
            CONNECT_WAIT_S,
            f"{first.node}: DRBD did not connect to its peer within {CONNECT_WAIT_S:.0f} s; check the "
            "replication network",
        )
    for resource in layout.RESOURCES:
        first.run(f"drbdadm -- --clear-bitmap new-current-uuid {resource.name}")
    _wait(
        lambda: _every_resource(first, lambda state: state.ds == "UpToDate/UpToDate"),
        CONNECT_WAIT_S,
        f"{first.node}: DRBD did not reach UpToDate/UpToDate after skipping the initial sync",
    )
    config = layout.CONFIG
    first.run(f"drbdadm primary {config.name}")
    try:
        if first.run(f"blkid -p {config.device}", check=False).code != 2:
            raise GuestError(
                f"{first.node}: {config.device} already holds a filesystem; it is never formatted"
            )
        first.run(f"mkfs.{layout.CONFIG_FSTYPE} -q -L vsa-config {config.device}")
        first.run(
            f"mkdir -p {layout.CONFIG_MOUNT} && "
            f"mount -o {layout.CONFIG_MOUNT_OPTIONS} {config.device} {layout.CONFIG_MOUNT}"
        )
        first.write_file(layout.TARGET_DEFINITION, definition, 0o600)
        first.run(f"umount {layout.CONFIG_MOUNT}")
    finally:
        first.run(f"drbdadm secondary {config.name}", check=False)


# cibadmin --modify merges children by id and deletes nothing; --replace swaps the section.
CIB_SECTIONS = (
    ("crm_config", "--modify --allow-create"),
    ("resources", "--replace"),
    ("constraints", "--modify --allow-create"),
)


@NODE.handles(LoadCib)
def load_cib(op: LoadCib, ctx: RunContext) -> None:
    """Wait (bounded) for quorum, then merge our cluster options, replace the resources
    section and merge our constraints (the witness ban) by id: the constraints the
    fence-peer handler placed are never replaced."""
    shell = _shell(ctx, op.node)
    rendered = manager_for(ctx.plan).files(ctx.plan, secrets(ctx).cluster)[CIB_FILE].content
    content = _checked(op.node, CIB_FILE, rendered, op.content_sha256)
    with ctx.reporter.task(f"pacemaker: wait for quorum on {op.node}"):
        _wait(
            lambda: shell.run("crm_node -q", check=False).out.strip() == "1",
            QUORUM_WAIT_S,
            f"{op.node}: Pacemaker has no quorum after {QUORUM_WAIT_S:.0f} s; check that both storage "
            "nodes run corosync and reach each other on the iSCSI network (corosync-cfgtool -s)",
        )
    configuration = ElementTree.fromstring(content)
    for section, verb in CIB_SECTIONS:
        element = configuration.find(section)
        if element is None:
            if section == "constraints":
                continue  # no witness: none of ours
            raise GuestError(f"{op.node}: {CIB_FILE} has no <{section}>")
        staged = f"/run/vsa-cib-{section}.xml"
        shell.write_file(staged, ElementTree.tostring(element, encoding="unicode"), 0o600)
        shell.run(f"cibadmin {verb} -o {section} --xml-file {staged} && rm -f {staged}")


@NODE.handles(CleanupServe)
def cleanup_serve(op: CleanupServe, ctx: RunContext) -> None:
    _shell(ctx, op.node).run("crm_resource --cleanup --resource vsa-serve")


@NODE.handles(WaitServing)
def wait_serving(op: WaitServing, ctx: RunContext) -> None:
    """Until one node holds the VIP with the target running (the cluster manager takes over)."""
    plan = ctx.plan
    manager = manager_for(plan)
    fact = ServicesFact(str(plan.network.vip))

    def serving() -> bool:
        for shell in ctx.shells.values():
            services = fact.process(shell.run(fact.command).out)
            if services.vip_here and services.target_running:
                log.info("%s holds the VIP and serves the target", shell.node)
                return True
        return False

    with ctx.reporter.task(f"{manager.name}: wait for the target on {plan.network.vip}:{ISCSI_PORT}"):
        _wait(
            serving,
            SERVE_WAIT_S + (plan.ha.initdead if manager.name == "heartbeat" else 0),
            f"no node took the VIP {plan.network.vip} with a running target; check {manager.name}'s log "
            "(journalctl on the storage nodes)",
        )


def _every_resource(shell: NodeShell, predicate: Callable[[DrbdState], bool]) -> bool:
    states = ProcDrbd().process(shell.run(ProcDrbd.command).out)
    return all(r.minor in states and predicate(states[r.minor]) for r in layout.RESOURCES)


def _wait(condition: Callable[[], bool], timeout: float, message: str) -> None:
    """Poll a condition with back-off until it holds or the bound passes."""
    deadline = time.monotonic() + timeout
    delay = 0.5
    while not condition():
        if time.monotonic() > deadline:
            raise GuestError(message)
        time.sleep(delay)
        delay = min(delay * 1.5, 5.0)
