"""The guest handlers' interlocks, on a fake node shell: what they re-read or re-render
right before acting, and that they refuse when it changed since the diff."""

from dataclasses import replace

import pytest

from orchestrator.changes import Change
from orchestrator.guest.facts import Disk
from orchestrator.guest.render import Secrets, desired_state, sha256
from orchestrator.guest.ssh import GuestError, Result
from orchestrator.logs import Redactor
from orchestrator.plan import load_plan
from orchestrator.progress import Reporter
from orchestrator.stages.contract import RunContext
from orchestrator.stages.guest import apply
from orchestrator.stages.guest.operations import CreateDrbdMetadata, InitializeDrbd, NodeDevices, WriteFile
from orchestrator.state import StateDir
from tests.unit.conftest import EXAMPLE_PLAN

PLAN = load_plan(EXAMPLE_PLAN)
NODES = tuple(node.node for node in PLAN.storage_nodes)
DISKS = [
    Disk(f"sd{letter}", f"2:0:{i}:0", 2**30, f"/dev/disk/by-path/scsi-{i}", None)
    for i, letter in enumerate("bcd", 1)
]
DEVICES = tuple(NodeDevices(node, *(disk.path for disk in DISKS)) for node in NODES)


class FakeShell:
    def __init__(self, node: str) -> None:
        self.node = node
        self.ran: list[str] = []
        self.written: dict[str, str] = {}

    def run(self, command: str, stdin: str | None = None, check: bool = True) -> Result:
        self.ran.append(command)
        return Result(0, "", "")

    def write_file(self, path: str, content: str, mode: int) -> None:
        self.written[path] = content

    def close(self) -> None:
        pass


@pytest.fixture
def ctx(tmp_path) -> RunContext:
    context = RunContext(
        plan=PLAN,
        session=None,
        state=StateDir(tmp_path / "state", persist=True),
        reporter=Reporter(None),
        allow_destroy=frozenset(),
        redactor=Redactor(),
    )
    context.shells.update({node: FakeShell(node) for node in NODES})
    return context


def on_disk(monkeypatch, disks: list[Disk], metadata: dict[str, bool]) -> None:
    monkeypatch.setattr(apply, "disks_and_metadata", lambda shell: (list(disks), dict(metadata)))


def test_a_file_is_written_only_with_the_content_the_diff_showed(ctx):
    secrets = Secrets(ctx.secret("drbd"), ctx.secret("heartbeat"), ctx.secret("chap"))
    by_node = {d.node: {"meta": d.meta, "config": d.config, "data": d.data} for d in DEVICES}
    file = desired_state(PLAN, secrets, by_node)["node1"].files["/etc/ha.d/authkeys"]
    op = WriteFile("node1", "/etc/ha.d/authkeys", sha256(file.content), 0o600, True, DEVICES)
    apply.apply(ctx, Change("guest", "update", "node node1 files", operations=(op,)))
    assert ctx.shells["node1"].written == {"/etc/ha.d/authkeys": file.content}
    stale = replace(op, content_sha256="0" * 64)
    with pytest.raises(GuestError, match=r"renders to sha256 .* not 000000000000 as the diff showed"):
        apply.apply(ctx, Change("guest", "update", "node node1 files", operations=(stale,)))


def test_metadata_is_created_only_on_disks_still_empty(ctx, monkeypatch):
    op = CreateDrbdMetadata("node2", ("iscsi.config", "iscsi.target.0"))
    on_disk(monkeypatch, DISKS, {})
    apply.apply(ctx, Change("guest", "update", "node node2 files", operations=(op,)))
    assert ctx.shells["node2"].ran == [
        "drbdadm -- --force create-md iscsi.config",
        "drbdadm -- --force create-md iscsi.target.0",
    ]
    on_disk(monkeypatch, [*DISKS[:2], replace(DISKS[2], signature="xfs")], {})
    with pytest.raises(
        GuestError, match=r"refusing drbdadm create-md iscsi\.target\.0: .*holds data \(xfs\)"
    ):
        apply.apply(ctx, Change("guest", "update", "node node2 files", operations=(op,)))
    on_disk(monkeypatch, DISKS, {"iscsi.target.0": True})
    with pytest.raises(GuestError, match="has DRBD metadata already"):
        apply.apply(ctx, Change("guest", "update", "node node2 files", operations=(op,)))
    assert len(ctx.shells["node2"].ran) == 2  # nothing more: neither resource got metadata


def test_first_creation_refuses_when_a_disk_was_written_since_the_diff(ctx, monkeypatch):
    on_disk(monkeypatch, [replace(DISKS[0], signature="dos"), *DISKS[1:]], {})
    op = InitializeDrbd("node1", NODES, "0" * 64)
    with pytest.raises(GuestError, match="refusing to create DRBD on node1, node2"):
        apply.apply(ctx, Change("guest", "create", "drbd", operations=(op,)))
    assert all(shell.ran == [] for shell in ctx.shells.values())
