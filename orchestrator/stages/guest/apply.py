"""Executor of the `guest` stage: runs each Change's steps over the nodes' SSH sessions."""

import json
import logging
import time
from collections.abc import Callable

from orchestrator.changes import Change
from orchestrator.guest import layout
from orchestrator.guest.facts import DrbdState, ProcDrbd, ServicesFact
from orchestrator.guest.ssh import GuestError, NodeShell
from orchestrator.plan import ISCSI_PORT, Plan
from orchestrator.progress import Reporter
from orchestrator.stages.guest.diff import Desired

log = logging.getLogger(__name__)

CONNECT_WAIT_S = 120.0
SERVE_WAIT_S = 180.0
DOPD_HELPERS = ("/lib/drbd/drbdsetup-84", "/usr/sbin/drbdmeta")


def apply(
    plan: Plan,
    change: Change,
    shells: dict[str, NodeShell],
    desired: dict[str, Desired],
    reporter: Reporter,
) -> None:
    if change.resource == "drbd":
        _initialize(plan, change, shells, desired, reporter)
        return
    node = change.params["node"]
    shell = shells[node]
    for step in change.steps:
        _STEPS[step](plan, change, shell, desired[node])
    if change.params.get("wait_serving"):
        wait_serving(plan, shells, reporter)


def _write(plan: Plan, change: Change, shell: NodeShell, desired: Desired) -> None:
    for path in change.params["write"]:
        file = desired.files[path]
        shell.write_file(path, file.content, file.mode)


def _dopd(plan: Plan, change: Change, shell: NodeShell, desired: Desired) -> None:
    for helper in DOPD_HELPERS:
        shell.run(
            f"dpkg-statoverride --remove {helper} >/dev/null 2>&1; "
            f"dpkg-statoverride --update --add root haclient 4750 {helper}"
        )


def _create_md(plan: Plan, change: Change, shell: NodeShell, desired: Desired) -> None:
    for name in change.params["create_md"]:
        # The diff verified the disks hold no signature; --force only skips drbdmeta's prompt.
        shell.run(f"drbdadm -- --force create-md {name}")


def _drbdadm(verb: str, key: str) -> Callable[[Plan, Change, NodeShell, Desired], None]:
    def step(plan: Plan, change: Change, shell: NodeShell, desired: Desired) -> None:
        for name in change.params[key]:
            shell.run(f"drbdadm {verb} {name}")

    return step


def _heartbeat(verb: str) -> Callable[[Plan, Change, NodeShell, Desired], None]:
    def step(plan: Plan, change: Change, shell: NodeShell, desired: Desired) -> None:
        shell.run(f"systemctl {verb} heartbeat")

    return step


def _enable_drbd(plan: Plan, change: Change, shell: NodeShell, desired: Desired) -> None:
    shell.run("systemctl enable drbd")


def _forget_split_brain(plan: Plan, change: Change, shell: NodeShell, desired: Desired) -> None:
    markers = " ".join(
        f"{layout.SPLIT_BRAIN_DIR}/{layout.SPLIT_BRAIN_PREFIX}{name}"
        for name in change.params["resolved_split_brain"]
    )
    shell.run(f"rm -f {markers}")


def _target_definition(plan: Plan, change: Change, shell: NodeShell, desired: Desired) -> None:
    shell.write_file(layout.TARGET_DEFINITION, desired.target_definition, 0o600)


def _target(plan: Plan, change: Change, shell: NodeShell, desired: Desired) -> None:
    shell.run(f"/etc/ha.d/resource.d/{layout.TARGET_SCRIPT} start")


_STEPS = {
    "write": _write,
    "dopd": _dopd,
    "forget_split_brain": _forget_split_brain,
    "create_md": _create_md,
    "up": _drbdadm("up", "up"),
    "adjust": _drbdadm("adjust", "adjust"),
    "connect": _drbdadm("connect", "connect"),
    "enable": _heartbeat("enable"),
    "enable_drbd": _enable_drbd,
    "start": _heartbeat("start"),
    "restart": _heartbeat("restart"),
    "target_definition": _target_definition,
    "target": _target,
}


def _initialize(
    plan: Plan, change: Change, shells: dict[str, NodeShell], desired: dict[str, Desired], reporter: Reporter
) -> None:
    """First creation only: both nodes' disks were verified empty by the diff."""
    names = " ".join(r.name for r in layout.RESOURCES)
    for shell in shells.values():
        for resource in layout.RESOURCES:
            shell.run(f"drbdadm -- --force create-md {resource.name}")
        shell.run(f"drbdadm up {names}")
    first = shells[change.params["first"]]
    with reporter.task("DRBD: wait for the nodes to connect"):
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
        first.run(f"mkdir -p {layout.CONFIG_MOUNT} && mount {config.device} {layout.CONFIG_MOUNT}")
        first.write_file(layout.TARGET_DEFINITION, desired[first.node].target_definition, 0o600)
        first.run(f"umount {layout.CONFIG_MOUNT}")
    finally:
        first.run(f"drbdadm secondary {config.name}", check=False)


def wait_serving(plan: Plan, shells: dict[str, NodeShell], reporter: Reporter) -> None:
    """Until one node holds the VIP with the target running (heartbeat takes over)."""
    fact = ServicesFact(str(plan.network.vip))

    def serving() -> bool:
        for shell in shells.values():
            services = fact.process(shell.run(fact.command).out)
            if services.vip_here and services.target_running:
                log.info("%s holds the VIP and serves the target", shell.node)
                return True
        return False

    with reporter.task(f"heartbeat: wait for the target on {plan.network.vip}:{ISCSI_PORT}"):
        _wait(
            serving,
            SERVE_WAIT_S + plan.ha.initdead,
            f"no node took the VIP {plan.network.vip} with a running target; check heartbeat's log "
            "(/var/log/syslog) on the storage nodes",
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


def target_definition(plan: Plan, serial: str, chap_secret: str | None) -> str:
    chap = {"userid": plan.chap_name, "password": chap_secret} if plan.target.chap else None
    body = {"iqn": plan.iqn, "device": layout.LUN.device, "serial": serial, "chap": chap}
    return json.dumps(body, indent=1, sort_keys=True) + "\n"
