"""Node fact parsers, on output captured from real lab storage VMs (tests/unit/fixtures)."""

import subprocess
from pathlib import Path

from orchestrator.guest import layout
from orchestrator.guest.facts import (
    MARKER,
    DeployedSecrets,
    Disks,
    DrbdMetadata,
    DrbdState,
    FileHashes,
    ProcDrbd,
    ServicesFact,
    split,
)
from orchestrator.guest.managers.heartbeat import HEARTBEAT
from orchestrator.guest.render import Secrets, node_files, target_definition
from orchestrator.plan import load_plan
from tests.unit.conftest import EXAMPLE_PLAN

FIXTURES = Path(__file__).with_name("fixtures")


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


def test_disks_are_the_non_os_disks_in_scsi_order_with_stable_paths():
    disks = Disks().process(fixture("disks_node1.txt"))
    assert [disk.name for disk in disks] == ["sdb", "sdc", "sdd"]
    assert [disk.size for disk in disks] == [2**30, 2**30, 4 * 2**30]
    assert all(disk.path.startswith("/dev/disk/by-path/pci-") for disk in disks)
    assert [disk.hctl for disk in disks] == ["2:0:1:0", "2:0:2:0", "2:0:3:0"]


def test_proc_drbd_on_the_primary_and_the_secondary():
    primary = ProcDrbd().process(fixture("proc_drbd_primary.txt"))
    assert primary == {
        0: DrbdState("Connected", "Primary/Secondary", "UpToDate/UpToDate", 0),
        1: DrbdState("Connected", "Primary/Secondary", "UpToDate/UpToDate", 0),
    }
    secondary = ProcDrbd().process(fixture("proc_drbd_secondary.txt"))
    assert secondary[1].ro == "Secondary/Primary"
    assert ProcDrbd().process("") == {}


def test_proc_drbd_reports_resync_progress():
    text = (
        " 1: cs:SyncTarget ro:Secondary/Primary ds:Inconsistent/UpToDate C r-----\n"
        "    ns:0 nr:1024 dw:1024 dr:0 al:0 bm:0 lo:0 pe:0 ua:0 ap:0 ep:1 wo:f oos:4193024\n"
    )
    assert ProcDrbd().process(text)[1] == DrbdState(
        "SyncTarget", "Secondary/Primary", "Inconsistent/UpToDate", 4193024
    )


def test_services_on_the_active_and_the_standby_node():
    fact = ServicesFact("10.11.55.50")
    active = fact.process(fixture("services_active.txt"))
    assert "heartbeat" in active.active and active.config_mounted and active.vip_here
    assert active.target_running
    assert active.dopd_ready and {"heartbeat", "drbd"} <= active.enabled
    assert not {"corosync", "pacemaker"} & (active.active | active.enabled)
    assert active.quorate is None and not active.cib_loaded  # Pacemaker does not run there
    standby = fact.process(fixture("services_standby.txt"))
    assert "heartbeat" in standby.active and not standby.config_mounted and not standby.vip_here
    assert not standby.target_running


def test_metadata_and_file_hashes_and_sections():
    assert DrbdMetadata("/dev/sdb").process("iscsi.config 0\niscsi.target.0 255\n") == {
        "iscsi.config": True,
        "iscsi.target.0": False,
    }
    assert FileHashes(["/etc/hosts"]).process("ab12 644 /etc/hosts\n") == {"/etc/hosts": ("ab12", 0o644)}
    output = f"{MARKER}one\na\nb\n{MARKER}two\nc\n"
    assert split(output) == {"one": "a\nb\n", "two": "c\n"}


def test_deployed_secrets_are_read_back_from_the_rendered_files(tmp_path):
    """The real command (paths moved into tmp_path) on the files the templates render."""
    plan = load_plan(EXAMPLE_PLAN)
    secrets = Secrets(drbd="Drbd-secret_1", cluster="Hb-secret_2", chap="Chap-secret_3")
    devices = {
        node.node: {"meta": "/dev/a", "config": "/dev/b", "data": "/dev/c"} for node in plan.storage_nodes
    }
    readback = DeployedSecrets("heartbeat", HEARTBEAT.secret_readback())
    command = readback.command
    rendered = {
        **{path: file.content for path, file in node_files(plan, secrets, devices).items()},
        layout.TARGET_DEFINITION: target_definition(plan, "serial", secrets.chap),
    }
    for path, content in rendered.items():
        moved = tmp_path / path.lstrip("/")
        moved.parent.mkdir(parents=True, exist_ok=True)
        moved.write_text(content)
        command = command.replace(path, str(moved))
    output = subprocess.run(["sh", "-c", command], capture_output=True, text=True, check=True).stdout
    assert readback.process(output) == {
        "drbd": "Drbd-secret_1",
        "heartbeat": "Hb-secret_2",
        "chap": "Chap-secret_3",
    }
    assert readback.process("drbd\nheartbeat\nchap\n") == {}  # an unconfigured node
