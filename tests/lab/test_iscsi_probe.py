"""The lab hook's iSCSI probe (orchestrator/lab/iscsi_probe.py) against a real
LIO target on a storage node: the right CHAP secret gives the LUN with the
NAA LIO derives from its unit serial and the exact capacity; a wrong secret,
or a portal that does not answer, gives an error and no LUN."""

import json
import re
import secrets
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.appliance.build import Appliance
from orchestrator.lab import netns
from orchestrator.lab.hook import write_config
from orchestrator.plan import Plan
from orchestrator.state import StateDir
from tests.lab.conftest import pinned_client, storage_vm
from tests.lab.test_boot import _connect, _wait_for_ssh

IQN = "iqn.2011-08.local.demo:probe"
LUN_BYTES = 64 * 2**20
CHAP_NAME = "vsa-probe"

# A fileio LUN behind a CHAP-protected demo-mode TPG, then the LUN's unit
# serial. The secret comes on stdin, never on a command line.
TARGET_SCRIPT = """
set -e
read -r secret
targetcli /backstores/fileio create probe0 /root/probe0.img {size} >/dev/null
targetcli /iscsi create {iqn} >/dev/null
targetcli /iscsi/{iqn}/tpg1/luns create /backstores/fileio/probe0 >/dev/null
targetcli /iscsi/{iqn}/tpg1 set attribute \
    authentication=1 generate_node_acls=1 demo_mode_write_protect=0 >/dev/null
auth=/sys/kernel/config/target/iscsi/{iqn}/tpgt_1/auth
printf %s {name} > $auth/userid
printf %s "$secret" > $auth/password
cat /sys/kernel/config/target/core/fileio_*/probe0/wwn/vpd_unit_serial
"""


@pytest.fixture
def target(lab_plan: Plan, appliance: Appliance, lab_network: None, tmp_path: Path):
    node = lab_plan.storage_nodes[0]
    vm = storage_vm(lab_plan, node, appliance, tmp_path / "node1")
    address = str(node.iscsi_ip)
    secret = secrets.token_urlsafe(12)
    try:
        vm.start()
        _wait_for_ssh(vm, address)
        host_key = StateDir(lab_plan.state_dir, persist=True).host_key(node.node)
        with _connect(pinned_client(host_key.public_openssh, address), lab_plan, address) as client:
            script = TARGET_SCRIPT.format(size=LUN_BYTES, iqn=IQN, name=CHAP_NAME)
            stdin, stdout, stderr = client.exec_command(f"sh -c {shlex.quote(script)}", timeout=120)
            stdin.write(secret + "\n")
            stdin.channel.shutdown_write()
            serial = stdout.read().decode()
            assert stdout.channel.recv_exit_status() == 0, stderr.read().decode()
        yield address, secret, serial.split(":")[-1].strip()
    finally:
        vm.remove()


def hook_probe(lab_dir: Path, address: str, chap: dict | None) -> tuple[int, str, str]:
    """The simulator's call: the hook's probe verb, run inside the lab namespace."""
    doc = {"address": address, "port": 3260, "initiator": "iqn.1998-01.com.vmware:esx1-test", "chap": chap}
    result = subprocess.run(
        [*netns.exec_prefix(), sys.executable, "-m", "orchestrator.lab.hook", "--lab-dir", lab_dir, "probe"],
        input=json.dumps(doc),
        capture_output=True,
        text=True,
        check=False,
    )
    return result.returncode, result.stdout, result.stderr


def test_probe_reads_the_real_lun_and_refuses_a_wrong_secret(target, appliance, tmp_path: Path) -> None:
    address, secret, serial = target
    write_config(tmp_path, appliance.disk, {})
    # LIO's NAA (IEEE registered extended): 6, its OUI 001405, then the unit serial's first hex digits.
    expected = "naa.6001405" + re.sub("[^0-9a-f]", "", serial.lower())[:25]

    code, out, err = hook_probe(tmp_path, address, {"name": CHAP_NAME, "secret": secret})
    assert code == 0, err
    assert json.loads(out) == {
        "luns": [{"iqn": IQN, "lun": 0, "naa": expected, "capacity_bytes": LUN_BYTES, "block_size": 512}]
    }

    code, out, err = hook_probe(tmp_path, address, {"name": CHAP_NAME, "secret": "not-" + secret})
    assert (code, out) == (1, "") and "Authentication failure" in err and secret not in err
    code, out, err = hook_probe(tmp_path, address, None)
    assert (code, out) == (1, "")
    code, out, err = hook_probe(tmp_path, "10.11.55.99", {"name": CHAP_NAME, "secret": secret})
    assert (code, out) == (1, "") and secret not in err
