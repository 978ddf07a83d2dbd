"""The simulator's lab mode (sim/lab_hook.go) against a stub hook that records
its calls: the hook contract the real lab (orchestrator/lab/hook.py, proven in
tests/lab) relies on. Power operations reach the hook with the VM's files,
NICs and guestinfo; a rescan asks the hook's probe, and only its answer
(with the right CHAP) makes the disk, on the naa id the probe read."""

import base64
import json
import sys
from pathlib import Path

import pytest
from pyVmomi import vim, vmodl

from orchestrator.identity import nic_mac
from orchestrator.plan import load_plan
from tests.vsphere.conftest import Site, running_site, vsa, wait_task

VIP = "10.11.55.50"
NAA = "naa.6001405" + "0123456789abcdef012345678"
LUN_BYTES = 4 * 2**30
HOSTS = ["esx1.lab.local", "esx2.lab.local", "esx3.lab.local"]

STUB = r"""
import json, sys
from pathlib import Path
record, secret_file, verb = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
doc = json.load(sys.stdin)
entry = {"verb": verb}
if verb == "probe":
    chap = doc.pop("chap")
    secret = secret_file.read_text().strip() if secret_file.exists() else None
    entry["chap_ok"] = chap is not None and chap["secret"] == secret
    entry["chap_name"] = chap and chap["name"]
entry["doc"] = doc
with record.open("a") as out:
    out.write(json.dumps(entry) + "\n")
if (record.parent / f"fail-{verb}").exists():
    sys.exit(f"stub {verb} failed: qemu exploded")
if verb == "probe":
    if doc["address"] != "@VIP@" or not entry["chap_ok"]:
        sys.exit("login failed: authentication failure")
    print(json.dumps({"luns": [{"iqn": "iqn.2011-08.local.demo:storage.disk.0", "lun": 0,
                                "naa": "@NAA@", "capacity_bytes": @SIZE@, "block_size": 512}]}))
"""
STUB = STUB.replace("@VIP@", VIP).replace("@NAA@", NAA).replace("@SIZE@", str(LUN_BYTES))


@pytest.fixture
def lab_site(tmp_path: Path, _simulator_available: None):
    stub = tmp_path / "stub_hook.py"
    stub.write_text(STUB)
    record = tmp_path / "hook" / "calls.jsonl"
    record.parent.mkdir()
    secret = tmp_path / "lab" / "lab.toml.state" / "secrets" / "chap"
    yield from running_site(tmp_path, "VirtualCenter", [sys.executable, str(stub), str(record), str(secret)])


def calls(site: Site) -> list[dict]:
    record = site.plan.parent.parent / "hook" / "calls.jsonl"
    if not record.exists():
        return []
    return [json.loads(line) for line in record.read_text().splitlines()]


def clear_calls(site: Site) -> None:
    (site.plan.parent.parent / "hook" / "calls.jsonl").unlink(missing_ok=True)


def lun_naas(site: Site, host: str) -> list[str]:
    info = site.host(host).configManager.storageSystem.storageDeviceInfo
    return [lun.canonicalName for lun in info.scsiLun if lun.canonicalName.startswith("naa.")]


def test_apply_boots_each_vm_through_the_hook_and_the_datastore_sits_on_the_probed_naa(lab_site, capsys):
    site = lab_site
    assert vsa(site.plan, "--yes") == 0
    plan = load_plan(site.plan)

    power_ons = [c["doc"] for c in calls(site) if c["verb"] == "power-on"]
    assert sorted(doc["name"] for doc in power_ons) == ["vsa-node1", "vsa-node2"]
    for doc in power_ons:
        node = doc["name"].removeprefix("vsa-")
        assert Path(doc["folder"]).is_dir() and doc["uuid"]
        assert doc["memory_mb"] == 1024 and doc["cpus"] == 1
        layout = [(d["bus"], d["unit"], d["capacity_bytes"]) for d in doc["disks"]]
        gib = 2**30
        assert layout == [(0, 0, 2 * gib), (1, 0, gib), (1, 1, gib), (1, 2, 4 * gib)]
        for disk in doc["disks"]:
            # The file the vms stage created on the host's local datastore, sparse at its capacity.
            assert disk["file"].startswith(doc["folder"] + "/") and disk["file"].endswith("-flat.vmdk")
            assert Path(disk["file"]).stat().st_size == disk["capacity_bytes"]
            assert Path(disk["descriptor"]).exists()
        assert doc["nics"] == [
            {"portgroup": "VSA-iSCSI", "mac": nic_mac(plan, node, "iscsi")},
            {"portgroup": "VSA-Replication", "mac": nic_mac(plan, node, "replication")},
        ]
        info = doc["guestinfo"]
        assert info["guestinfo.metadata.encoding"] == "base64"
        metadata = json.loads(base64.b64decode(info["guestinfo.metadata"]))
        assert metadata["local-hostname"] == node
        assert base64.b64decode(info["guestinfo.userdata"]).startswith(b"#cloud-config")

    probes = [c for c in calls(site) if c["verb"] == "probe"]
    assert probes and all(c["doc"]["address"] == VIP and c["doc"]["port"] == 3260 for c in probes)
    assert probes[-1]["chap_ok"] and probes[-1]["chap_name"] == plan.chap_name
    assert all(c["doc"]["initiator"].startswith("iqn.1998-01.com.vmware:") for c in probes)
    for host in HOSTS:
        assert lun_naas(site, host) == [NAA]
    ds = next(ds for ds in site.content.rootFolder.childEntity[0].datastore if ds.name == "vsa-ds0")
    assert [extent.diskName for extent in ds.info.vmfs.extent] == [NAA]
    assert ds.summary.capacity <= LUN_BYTES

    # A rerun changes nothing and boots nothing.
    clear_calls(site)
    site.info.reset_calls()
    assert vsa(site.plan, "--yes") == 0
    assert site.tasks_since_reset() == {}
    assert [c["verb"] for c in calls(site) if c["verb"] != "probe"] == []


def test_power_operations_drive_the_hook(lab_site):
    site = lab_site
    assert vsa(site.plan, "--yes", "--only", "vms") == 0
    vm = site.vm("vsa-node1")
    clear_calls(site)

    wait_task(vm.PowerOffVM_Task())
    wait_task(vm.PowerOnVM_Task())
    wait_task(vm.ResetVM_Task())
    assert [c["verb"] for c in calls(site)] == ["power-off", "power-on", "power-off", "power-on"]
    assert vm.runtime.powerState == "poweredOn"

    clear_calls(site)
    wait_task(vm.Destroy_Task())
    assert [c["verb"] for c in calls(site)] == ["power-off", "remove"]
    assert [c["doc"]["name"] for c in calls(site)] == ["vsa-node1", "vsa-node1"]
    # The template is no lab VM: nothing reaches the hook for it.
    assert site.vm("vsa-node1") is None


def test_a_failing_hook_fails_the_task_with_its_message(lab_site):
    site = lab_site
    assert vsa(site.plan, "--yes", "--only", "vms") == 0
    vm = site.vm("vsa-node2")
    wait_task(vm.PowerOffVM_Task())
    (site.plan.parent.parent / "hook" / "fail-power-on").touch()
    task = vm.PowerOnVM_Task()
    with pytest.raises(vmodl.fault.SystemError):
        wait_task(task)
    assert task.info.error.msg == "stub power-on failed: qemu exploded"
    assert vm.runtime.powerState == "poweredOff"


def test_wrong_chap_gives_no_disk_and_the_rerun_heals_it(lab_site, capsys):
    site = lab_site
    assert vsa(site.plan, "--yes") == 0
    storage = site.host("esx3.lab.local").configManager.storageSystem
    auth = vim.host.InternetScsiHba.AuthenticationProperties(
        chapAuthEnabled=True, chapAuthenticationType="chapRequired", chapName="vsa", chapSecret="wrong-secret"
    )
    target = vim.host.InternetScsiHba.SendTarget(address=VIP, port=3260)
    targets = vim.host.InternetScsiHba.TargetSet(sendTargets=[target])
    storage.UpdateInternetScsiAuthenticationProperties("vmhba65", auth, targets)
    storage.RescanHba("vmhba65")
    assert lun_naas(site, "esx3.lab.local") == []
    assert calls(site)[-1]["verb"] == "probe" and not calls(site)[-1]["chap_ok"]
    log = (site.plan.parent.parent / "sim" / "sim.log").read_text()
    assert "esx3.lab.local: rescan 10.11.55.50:3260: no disk: login failed: authentication failure" in log
    assert "wrong-secret" not in log

    capsys.readouterr()
    assert vsa(site.plan, "--yes") == 0
    assert lun_naas(site, "esx3.lab.local") == [NAA]
