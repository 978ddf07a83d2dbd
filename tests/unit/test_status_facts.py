"""The node facts only `status` reads: DRBD resync progress, heartbeat's
resource status, the LIO target in configfs (tests/unit/fixtures)."""

import subprocess
from pathlib import Path

from orchestrator.guest.facts import DrbdState
from orchestrator.status.node_facts import DrbdStatus, HeartbeatResources, LioLun, LioTargets, naa_from_serial

FIXTURES = Path(__file__).with_name("fixtures")
IQN = "iqn.2011-08.local.demo:storage.disk.0"
SERIAL = "1b6636a930d7976ba07e5bcbf18531cc"


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


def test_drbd_in_sync_has_no_progress():
    status = DrbdStatus().process(fixture("proc_drbd_primary.txt"))
    assert status[1].state == DrbdState("Connected", "Primary/Secondary", "UpToDate/UpToDate", 0)
    assert (status[1].sync_percent, status[1].finish) == (None, None)


def test_drbd_resync_progress_belongs_to_the_resyncing_minor():
    status = DrbdStatus().process(fixture("proc_drbd_resync.txt"))
    assert status[0].sync_percent is None
    assert status[1].state.cs == "SyncSource" and status[1].state.ds == "UpToDate/Inconsistent"
    assert status[1].sync_percent == 18.8
    assert status[1].finish == "0:02:51"
    assert status[1].state.oos == 3403776


def test_drbd_verify_progress_is_read_too():
    text = (
        " 1: cs:VerifyS ro:Primary/Secondary ds:UpToDate/UpToDate C r-----\n"
        "    ns:0 nr:0 dw:0 dr:524288 al:0 bm:0 lo:0 pe:0 ua:0 ap:0 ep:1 wo:f oos:0\n"
        "\t[====>...............] verified: 24.9% (3148800/4194304)K\n"
        "\tfinish: 0:00:52 speed: 20,132 (20,132) want: 102,400 K/sec\n"
    )
    assert DrbdStatus().process(text)[1].sync_percent == 24.9


def test_drbd_with_the_peer_gone():
    status = DrbdStatus().process(fixture("proc_drbd_peer_down.txt"))
    assert status[0].state.cs == "WFConnection" and status[0].state.ro == "Primary/Unknown"
    assert status[1].state.ds == "UpToDate/Outdated"


def test_heartbeat_resource_status():
    fact = HeartbeatResources()
    assert fact.process(fixture("heartbeat_rscstatus_active.txt")) == "all"
    assert fact.process(fixture("heartbeat_rscstatus_standby.txt")) == "none"
    assert fact.process("unknown\n") is None
    assert fact.process("") is None


def test_lio_target_from_configfs_output():
    [tpg] = LioTargets().process(fixture("lio_configfs_active.txt"))
    assert (tpg.iqn, tpg.tpg, tpg.enabled, tpg.authentication) == (IQN, 1, True, True)
    assert tpg.luns == (LioLun(0, "iblock_0/vsa-lun0", "/dev/drbd1", SERIAL),)
    assert tpg.luns[0].naa == "naa.6001405" + SERIAL[:25]


def test_no_target_no_configfs():
    assert LioTargets().process("") == []


def test_naa_is_the_one_lio_reported_for_the_serial():
    # Seen in the lab: LIO's VPD 0x83 for unit serial 1b6636a930d7976ba07e5bcbf18531cc.
    assert naa_from_serial("1b6636a930d7976ba07e5bcbf18531cc") == "naa.60014051b6636a930d7976ba07e5bcbf"
    assert naa_from_serial("1b6636a9-30d7-976b-a07e-5bcbf18531cc") == naa_from_serial(SERIAL)
    assert len(naa_from_serial(SERIAL)) == len("naa.") + 32


def _configfs(root: Path, iqn: str, enable: str, serial: str | None) -> None:
    """A directory laid out like LIO's configfs (files and the LUN symlink)."""
    backstore = root / "core" / "iblock_0" / "vsa-lun0"
    (backstore / "wwn").mkdir(parents=True)
    (backstore / "udev_path").write_text("/dev/drbd1\n")
    (backstore / "wwn" / "vpd_unit_serial").write_text(f"T10 VPD Unit Serial Number: {serial}\n")
    tpg = root / "iscsi" / iqn / "tpgt_1"
    (tpg / "attrib").mkdir(parents=True)
    (tpg / "enable").write_text(enable + "\n")
    (tpg / "attrib" / "authentication").write_text("1\n")
    (root / "iscsi" / "discovery_auth").mkdir()
    (root / "iscsi" / "lio_version").write_text("Datera Inc. iSCSI Target v4.1.0\n")
    if serial is not None:
        lun = tpg / "lun" / "lun_0"
        lun.mkdir(parents=True)
        (lun / "alua_tg_pt_gp").write_text("default_tg_pt_gp\n")
        (lun / "statistics").mkdir()
        (lun / "7e1c42f0a9").symlink_to(backstore)
    else:
        (tpg / "lun").mkdir()


def _run(command: str) -> str:
    return subprocess.run(["sh", "-c", command], capture_output=True, text=True, check=True).stdout


def test_the_command_reads_the_configfs_layout(tmp_path: Path):
    _configfs(tmp_path, IQN, "1", SERIAL)
    [tpg] = LioTargets(str(tmp_path)).process(_run(LioTargets(str(tmp_path)).command))
    assert (tpg.iqn, tpg.enabled, tpg.authentication) == (IQN, True, True)
    assert tpg.luns == (LioLun(0, "iblock_0/vsa-lun0", "/dev/drbd1", SERIAL),)


def test_the_command_on_a_disabled_target_without_lun(tmp_path: Path):
    _configfs(tmp_path, IQN, "0", None)
    [tpg] = LioTargets(str(tmp_path)).process(_run(LioTargets(str(tmp_path)).command))
    assert not tpg.enabled and tpg.luns == ()


def test_the_command_without_configfs(tmp_path: Path):
    fact = LioTargets(str(tmp_path / "absent"))
    assert fact.process(_run(fact.command)) == []
