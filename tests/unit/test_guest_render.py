"""The storage nodes' files, rendered from the example plan, against golden copies."""

from pathlib import Path

from orchestrator.guest import layout
from orchestrator.guest.render import Secrets, lun_serial, node_files
from orchestrator.plan import load_plan
from tests.unit.conftest import EXAMPLE_PLAN

GOLDEN = Path(__file__).with_name("golden")
PLAN = load_plan(EXAMPLE_PLAN)
DEVICES = {
    node.node: {"meta": "/dev/sdb", "config": "/dev/sdc", "data": "/dev/sdd"} for node in PLAN.storage_nodes
}
SECRETS = Secrets(drbd="DRBDSECRET", cluster="HBSECRET", chap="CHAPSECRET")


def test_drbd_resource_matches_golden():
    files = node_files(PLAN, SECRETS, DEVICES)
    expected = (GOLDEN / "iscsi.target.0.res").read_text()
    assert files["/etc/drbd.d/iscsi.target.0.res"].content == expected


def test_one_resource_group_with_the_vip_last():
    line = node_files(PLAN, SECRETS, DEVICES)["/etc/ha.d/haresources"].content.splitlines()[-1]
    resources = line.split()
    assert resources[0] == "node1"
    assert resources[1:] == [
        "drbddisk::iscsi.config",
        f"Filesystem::/dev/drbd0::{layout.CONFIG_MOUNT}::ext4::sync",
        "drbddisk::iscsi.target.0",
        "vsa-target",
        "IPaddr2::10.11.55.50/8/eth0",
    ]


def test_files_holding_secrets_are_root_only_and_sensitive():
    files = node_files(PLAN, SECRETS, DEVICES)
    for path, file in files.items():
        holds_secret = any(s in file.content for s in ("DRBDSECRET", "HBSECRET", "CHAPSECRET"))
        assert file.sensitive == holds_secret, path
        if holds_secret:
            assert file.mode == 0o600, path


def test_ha_timings_and_failback_come_from_the_plan():
    ha_cf = node_files(PLAN, SECRETS, DEVICES)["/etc/ha.d/ha.cf"].content.splitlines()
    assert {"keepalive 1", "deadtime 10", "warntime 5", "initdead 60", "auto_failback off"} <= set(ha_cf)
    assert "respawn hacluster /usr/libexec/heartbeat/dopd" in ha_cf


def test_lun_serial_is_the_same_for_both_nodes_and_stable():
    assert lun_serial(PLAN) == lun_serial(load_plan(EXAMPLE_PLAN))
    assert len(lun_serial(PLAN)) == 32
