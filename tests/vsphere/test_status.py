"""`vsa-orchestrate status` against the simulated vCenter.

The simulated site has no real storage VMs, so the nodes are unreachable
(lab addresses are blackholed outside the lab namespace): status is degraded
(exit 2) and says so per node; the vSphere half is read for real.
"""

import json
import socket

import pytest
from pyVmomi import vim

from orchestrator.cli import main
from orchestrator.guest.render import lun_naa
from orchestrator.plan import load_plan
from tests.vsphere.conftest import Site, vsa, wait_task

IQN = "iqn.2011-08.local.demo:storage.disk.0"
HOSTS = ["esx1.lab.local", "esx2.lab.local", "esx3.lab.local"]


def status(site: Site, capsys, *extra: str) -> tuple[int, str]:
    code = main(["status", str(site.plan), *extra])
    return code, capsys.readouterr().out


def status_errors(site: Site, capsys) -> tuple[int, str]:
    """Exit code and stderr of a status run whose stdout must stay empty."""
    code = main(["status", str(site.plan)])
    captured = capsys.readouterr()
    assert captured.out == ""
    return code, captured.err


def status_json(site: Site, capsys) -> tuple[int, dict]:
    code, out = status(site, capsys, "--json")
    return code, json.loads(out)


@pytest.fixture
def deployed(site: Site, capsys) -> Site:
    assert vsa(site.plan, "--yes") == 0
    capsys.readouterr()
    return site


def test_deployed_site_reads_every_host_healthy_and_the_nodes_unreachable(deployed: Site, capsys):
    deployed.info.reset_calls()
    code, document = status_json(deployed, capsys)
    assert code == 2 and document["exit_code"] == 2 and document["healthy"] is False
    assert deployed.tasks_since_reset() == {}
    naa = lun_naa(load_plan(deployed.plan))
    assert document["expected"]["naa"] == naa
    assert [host["host"] for host in document["hosts"]] == HOSTS
    for host in document["hosts"]:
        assert host["adapter_enabled"] and host["send_target"] and host["lun"] == naa
        assert [path["state"] for path in host["paths"]] == ["active"]
        assert host["datastore_mounted"] and host["datastore_accessible"]
    assert document["datastore"] == {"name": "vsa-ds0", "found": True, "naa": naa}
    assert document["cluster"]["exists"] and document["cluster"]["ha_enabled"]
    for node, host in (("node1", "esx1.lab.local"), ("node2", "esx2.lab.local")):
        view = next(view for view in document["nodes"] if view["node"] == node)
        assert (view["power"], view["vm_host"], view["reachable"]) == ("poweredOn", host, False)
    # Only the nodes are findings: nothing on the ESXi side or the cluster.
    problems = document["problems"]
    assert any(line.startswith("node node1: unreachable") for line in problems)
    assert any(line.startswith("node node2: unreachable") for line in problems)
    assert not [line for line in problems if "host " in line or "cluster" in line or "datastore" in line]
    chap = (deployed.plan.with_name("lab.toml.state") / "secrets" / "chap").read_text().strip()
    password = deployed.plan.with_name("vsphere-password").read_text().strip()
    shown = json.dumps(document) + status(deployed, capsys)[1]
    assert chap not in shown and password not in shown


def test_table_for_people_names_the_findings(deployed: Site, capsys):
    code, out = status(deployed, capsys)
    assert code == 2
    assert "storage nodes" in out and "ESXi hosts" in out
    assert f"target: {IQN}" in out and lun_naa(load_plan(deployed.plan)) in out
    assert "cluster vsa-cluster: HA on, host monitoring enabled" in out
    assert "Degraded: 3 finding(s)" in out
    assert "no reachable storage node holds the VIP 10.11.55.50" in out


def test_a_host_without_the_datastore_is_named(deployed: Site, capsys):
    ds = next(ds for ds in deployed.content.rootFolder.childEntity[0].datastore if ds.name == "vsa-ds0")
    deployed.host("esx3.lab.local").configManager.storageSystem.UnmountVmfsVolume(ds.info.vmfs.uuid)
    code, document = status_json(deployed, capsys)
    assert code == 2
    esx3 = next(host for host in document["hosts"] if host["host"] == "esx3.lab.local")
    assert not esx3["datastore_mounted"]
    hosts = [line for line in document["problems"] if line.startswith("host ")]
    assert hosts == ["host esx3.lab.local: datastore vsa-ds0 not mounted"]


def test_a_disabled_adapter_and_ha_off_are_findings(deployed: Site, capsys):
    storage = deployed.host("esx2.lab.local").configManager.storageSystem
    storage.UpdateSoftwareInternetScsiEnabled(False)
    cluster = deployed.host("esx1.lab.local").parent
    spec = vim.cluster.ConfigSpecEx(dasConfig=vim.cluster.DasConfigInfo(enabled=False))
    wait_task(cluster.ReconfigureComputeResource_Task(spec, True))
    code, document = status_json(deployed, capsys)
    assert code == 2
    problems = document["problems"]
    assert "host esx2.lab.local: software iSCSI adapter disabled" in problems
    assert "host esx2.lab.local: no LUN of " + IQN in problems
    assert "cluster vsa-cluster: vSphere HA is off, the plan says True" in problems


def test_empty_site_is_degraded_not_an_error(site: Site, capsys):
    site.info.reset_calls()
    code, document = status_json(site, capsys)
    assert code == 2
    assert site.tasks_since_reset() == {}
    assert "node node1: VM vsa-node1 not found in our VM folder" in document["problems"]
    assert "datastore vsa-ds0: not found" in document["problems"]
    assert "cluster vsa-cluster: not found" in document["problems"]
    assert not site.plan.with_name("lab.toml.state").exists() or not any(
        site.plan.with_name("lab.toml.state").rglob("run.log")
    )


def test_esxi_host_skips_the_cluster(esxi_site: Site, capsys):
    code, document = status_json(esxi_site, capsys)
    assert code == 2
    assert document["cluster"]["checked"] is False
    assert "ESXi host" in document["cluster"]["note"]


def test_wrong_password_is_one_line_and_exit_1(site: Site, capsys):
    site.plan.with_name("vsphere-password").write_text("not-the-password\n")
    code, out = status_errors(site, capsys)
    assert code == 1
    assert out.strip().splitlines() == [
        f"error: vSphere at 127.0.0.1:{site.info.port} rejected user vsa-admin: wrong user name or "
        "password (check [vsphere].user and the password source in the plan)"
    ]
    code, document = status_json(site, capsys)
    assert code == 1 and "wrong user name or password" in document["error"]
    assert "not-the-password" not in json.dumps(document)


def test_unreachable_vcenter_is_one_line_and_exit_1(site: Site, capsys):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free_port = probe.getsockname()[1]
    site.edit_plan(f"port = {site.info.port}", f"port = {free_port}")
    code, out = status_errors(site, capsys)
    assert code == 1
    [line] = out.strip().splitlines()
    assert line.startswith(f"error: cannot reach vSphere at 127.0.0.1:{free_port}")


def test_bad_plan_is_exit_1_without_connecting(site: Site, capsys):
    site.edit_plan('name = "vsa"', 'name = "vsa"\nnmae = "typo"')
    site.info.reset_calls()
    code = main(["status", str(site.plan)])
    captured = capsys.readouterr()
    assert code == 1
    assert "nmae" in captured.err and "Traceback" not in captured.err + captured.out
    assert site.info.calls()["total"] == 0


def test_a_host_missing_from_the_datacenter_is_a_finding(deployed: Site, capsys):
    deployed.edit_plan('esxi = "esx3.lab.local"', 'esxi = "esx9.lab.local"')
    code, document = status_json(deployed, capsys)
    assert code == 2
    assert "host esx9.lab.local: not found in the datacenter" in document["problems"]
    assert [host["found"] for host in document["hosts"]] == [True, True, False]
