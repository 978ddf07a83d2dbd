"""SiteStatus as rich tables (people) or one JSON document (scripts).

Tables have one column per node / host (there are two or three), so they fit
an 80-column terminal; the long ids (IQN, serial, NAA) are printed once.
"""

import json
from dataclasses import asdict
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from orchestrator.guest import layout
from orchestrator.status.health import DRBD_HEALTHY
from orchestrator.status.model import DrbdView, Expected, HostView, NodeView, SiteStatus

OK, BAD = "green", "red"
Cell = Text | str


def as_json(status: SiteStatus, exit_code: int) -> str:
    document: dict[str, Any] = {"plan": status.plan, "healthy": status.healthy, "exit_code": exit_code}
    document.update({key: value for key, value in asdict(status).items() if key != "plan"})
    return json.dumps(document, indent=2)


def error_json(plan: str | None, message: str, exit_code: int) -> str:
    return json.dumps({"plan": plan, "healthy": False, "exit_code": exit_code, "error": message}, indent=2)


def _mark(ok: bool | None, text: str) -> Text:
    return Text(text, style=OK if ok else BAD)


def _drbd(drbd: DrbdView | None) -> Cell:
    if drbd is None:
        return ""
    if not drbd.configured:
        return _mark(False, "down")
    text = f"{drbd.role}/{drbd.peer_role}\n{drbd.disk}/{drbd.peer_disk}\n{drbd.connection}"
    if drbd.sync_percent is not None:
        text += f" {drbd.sync_percent}%, finish {drbd.sync_finish}"
    return _mark((drbd.connection, drbd.disk, drbd.peer_disk) == DRBD_HEALTHY, text)


def _node_column(node: NodeView) -> list[Cell]:
    vm = str(node.power) + (f"\non {node.vm_host}" if node.vm_host else "") if node.vm_found else "not found"
    cells: list[Cell] = [_mark(node.power == "poweredOn", vm)]
    if not node.reachable:
        reason = "not read" if node.vm_found and node.power != "poweredOn" else "unreachable"
        return [*cells, _mark(False, reason), *[""] * (len(layout.RESOURCES) + 2)]
    cells.append(_mark(True, f"ssh {node.address}"))
    by_name = {drbd.resource: drbd for drbd in node.drbd}
    cells += [_drbd(by_name.get(resource.name)) for resource in layout.RESOURCES]
    manager = "running" if node.manager_running else "stopped"
    if node.heartbeat_resources:
        manager += f"\nresources: {node.heartbeat_resources}"
    if node.quorate is not None:
        manager += "\nquorum" if node.quorate else "\nno quorum"
    cells.append(_mark(bool(node.manager_running) and node.quorate is not False, manager))
    if node.holds_vip:
        cells.append(_mark(node.target_running, "VIP + target" if node.target_running else "VIP, no target"))
    else:
        cells.append("standby")
    return cells


def _host_column(host: HostView, expected: Expected) -> list[Cell]:
    if not host.found:
        return [_mark(False, "not found"), "", "", "", ""]
    if host.lun is None:
        lun = _mark(False, "not visible")
    elif host.lun == expected.naa:
        lun = _mark(True, "ours")
    else:
        lun = _mark(False, host.lun)
    active = sum(path.state == "active" for path in host.paths)
    paths = _mark(active > 0, f"{active}/{len(host.paths)} active") if host.lun else ""
    if host.datastore_mounted:
        ds = _mark(host.datastore_accessible, "mounted" if host.datastore_accessible else "inaccessible")
    else:
        ds = _mark(False, "not mounted")
    return [
        _mark(host.adapter_enabled and host.connection == "connected", host.adapter or "disabled"),
        _mark(host.send_target, "yes" if host.send_target else "missing"),
        lun,
        paths,
        ds,
    ]


def _table(title: str, labels: list[str], columns: dict[str, list[Cell]]) -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column("")
    for name in columns:
        table.add_column(name)
    for index, label in enumerate(labels):
        table.add_row(label, *(cells[index] for cells in columns.values()))
    return table


def render_text(console: Console, status: SiteStatus) -> None:
    expected = status.expected
    node_labels = ["VM", "reached", *(f"DRBD {r.name}" for r in layout.RESOURCES), expected.manager, "serves"]
    nodes = {node.node: _node_column(node) for node in status.nodes}
    console.print(_table("storage nodes", node_labels, nodes))
    console.print(f"target: {expected.iqn}, serial {expected.serial}, {expected.naa} (from the plan)")
    active = next((node for node in status.nodes if node.node == status.active_node), None)
    target = next((t for t in active.targets if t.iqn == expected.iqn), None) if active else None
    if active is not None and target is not None:
        state = "enabled" if target.enabled else "disabled"
        chap = "CHAP" if target.chap else "no CHAP"
        console.print(
            f"  on {active.node}: LUN {target.lun} {target.device}, serial {target.serial}, {target.naa}, "
            f"{chap}, {state}"
        )
    datastore = f"datastore {status.datastore.name}"
    host_labels = ["sw iSCSI", f"send target {expected.vip}", "LUN", "paths", datastore]
    hosts = {host.host: _host_column(host, expected) for host in status.hosts}
    console.print(_table("ESXi hosts", host_labels, hosts))
    cluster = status.cluster
    if not cluster.checked:
        console.print(f"cluster: not checked ({cluster.note})")
    elif not cluster.exists:
        console.print(_mark(False, f"cluster {cluster.name}: not found"))
    else:
        ha = "HA on" if cluster.ha_enabled else "HA off"
        console.print(f"cluster {cluster.name}: {ha}, host monitoring {cluster.host_monitoring}")
    voting = next((node for node in status.nodes if node.expected_votes), None)
    if voting is not None:
        votes = f"quorum: {voting.votes} of {voting.expected_votes} votes present (as {voting.node} sees it)"
        console.print(_mark(voting.votes == voting.expected_votes, votes))
    if status.witness is not None:
        witness = status.witness
        running = witness.corosync_running and witness.pacemaker_running
        if running:
            state = "Corosync and Pacemaker running"
        elif witness.error:
            state = witness.error
        else:
            state = "Corosync not running" if not witness.corosync_running else "Pacemaker not running"
        console.print(_mark(bool(running), f"witness {witness.node} on {witness.esxi}: {state}"))
    if expected.two_node:
        console.print(
            _mark(False, "quorum: two votes, no witness (ha.two_node): a split can leave two primaries")
        )
    if status.healthy:
        console.print(_mark(True, "Healthy."))
        return
    console.print(_mark(False, f"Degraded: {len(status.problems)} finding(s)"))
    for line in status.problems:
        console.print(Text("  - ") + Text(line))
