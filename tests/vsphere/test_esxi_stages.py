"""The ESXi side (iscsi, datastore, cluster) against the simulated vCenter, whose
iSCSI data path serves the plan's LUN at the VIP (see tests/vsphere/portal.py)."""

import pytest
import requests
from pyVmomi import vim

from orchestrator.executors import VSPHERE
from orchestrator.guest.render import lun_naa
from orchestrator.logs import Redactor
from orchestrator.plan import load_plan
from orchestrator.progress import Reporter
from orchestrator.stages.contract import RunContext
from orchestrator.stages.datastore import diff as datastore_diff
from orchestrator.stages.datastore import facts as datastore_facts
from orchestrator.stages.datastore.operations import CreateVmfs
from orchestrator.stages.iscsi import apply as iscsi_apply
from orchestrator.state import StateDir
from orchestrator.vsphere.session import VSphereError, connect
from tests.vsphere.conftest import Site, vsa, wait_task
from tests.vsphere.portal import stop_portal

IQN = "iqn.2011-08.local.demo:storage.disk.0"
VIP = "10.11.55.50"
HOSTS = ["esx1.lab.local", "esx2.lab.local", "esx3.lab.local"]
Iscsi = vim.host.InternetScsiHba


@pytest.fixture
def deployed(site: Site, capsys) -> Site:
    assert vsa(site.plan, "--yes") == 0
    capsys.readouterr()
    return site


def adapter(site: Site, host: str):
    info = site.host(host).configManager.storageSystem.storageDeviceInfo
    return next(hba for hba in info.hostBusAdapter if isinstance(hba, Iscsi) and hba.isSoftwareBased)


def portal(site: Site, address: str = VIP) -> dict:
    return next(
        p
        for p in requests.get(f"{site.info.control_url}/portals", timeout=10).json()
        if p["address"] == address
    )


def datastore(site: Site, name: str = "vsa-ds0") -> vim.Datastore | None:
    return next((ds for ds in site.content.rootFolder.childEntity[0].datastore if ds.name == name), None)


def cluster(site: Site) -> vim.ClusterComputeResource:
    return next(
        entity
        for entity in site.content.rootFolder.childEntity[0].hostFolder.childEntity
        if isinstance(entity, vim.ClusterComputeResource)
    )


def heal(site: Site, capsys) -> str:
    assert vsa(site.plan, "--dry-run") == 2
    shown = capsys.readouterr().out
    assert vsa(site.plan, "--yes") == 0
    capsys.readouterr()
    site.info.reset_calls()
    assert vsa(site.plan, "--dry-run") == 0
    assert site.tasks_since_reset() == {}
    return shown


def test_dry_run_on_empty_site_shows_every_esxi_change(site: Site, capsys):
    site.info.reset_calls()
    assert vsa(site.plan, "--dry-run") == 2
    out = capsys.readouterr().out
    for host in HOSTS:
        assert f"~ host {host} iscsi" in out
    assert f"+ send targets: {VIP}:3260" in out
    assert "+ chap secret: (sensitive value)" in out
    assert "+ datastore vsa-ds0" in out
    assert "+ cluster vsa-cluster" in out and "+ ha: True" in out
    assert site.tasks_since_reset() == {}
    assert portal(site)["sessions"] == []


def test_verbose_dry_run_lists_every_operation_without_a_secret(site: Site, capsys):
    site.info.reset_calls()
    assert vsa(site.plan, "--dry-run", "--verbose") == 2
    out = capsys.readouterr().out
    for host in HOSTS:
        assert f"> host {host}: HostStorageSystem.UpdateSoftwareInternetScsiEnabled(true)" in out
        assert (
            f"> host {host}: HostStorageSystem.AddInternetScsiSendTargets(<software adapter>, {VIP}:3260)"
            in out
        )
    assert "chapRequired as vsa, secret chap" in out  # the secret by its name in the state folder
    assert site.tasks_since_reset() == {}
    quiet = vsa(site.plan, "--dry-run")
    assert quiet == 2 and "> host" not in capsys.readouterr().out


def test_full_apply_builds_the_esxi_side(deployed: Site):
    site = deployed
    naa = lun_naa(load_plan(site.plan))
    for host in HOSTS:
        hba = adapter(site, host)
        [target] = hba.configuredSendTarget
        assert (target.address, target.port) == (VIP, 3260)
        assert target.authenticationProperties.chapAuthenticationType == "chapRequired"
        assert target.authenticationProperties.chapName == "vsa"
        options = {option.key: option.value for option in target.advancedOptions}
        assert (options["RecoveryTimeout"], options["NoopOutInterval"]) == (30, 5)
        assert (options["NoopOutTimeout"], options["LoginTimeout"]) == (10, 5)
        luns = site.host(host).configManager.storageSystem.storageDeviceInfo.scsiLun
        assert naa in [lun.canonicalName for lun in luns]
    ds = datastore(site)
    assert ds.info.vmfs.extent[0].diskName == naa
    assert ds.info.vmfs.majorVersion == 6
    assert sorted(m.key.name for m in ds.host if m.mountInfo.mounted and m.mountInfo.accessible) == HOSTS
    assert portal(site)["formats"] == 1
    vsa_cluster = cluster(site)
    assert sorted(host.name for host in vsa_cluster.host) == HOSTS
    das = vsa_cluster.configurationEx.dasConfig
    assert das.enabled and das.hostMonitoring == "enabled"
    assert {o.key: o.value for o in das.option}["das.ignoreInsufficientHbDatastore"] == "true"
    overrides = {entry.key.name: entry.dasSettings for entry in vsa_cluster.configurationEx.dasVmConfig}
    assert sorted(overrides) == ["vsa-node1", "vsa-node2"]
    assert {(s.restartPriority, s.isolationResponse) for s in overrides.values()} == {("highest", "none")}
    for name in ("vsa-node1", "vsa-node2"):
        vm = site.vm(name)
        assert vm.resourcePool == vsa_cluster.resourcePool
        assert vm.runtime.powerState == "poweredOn"


def test_no_op_rerun_runs_no_task_in_any_stage(deployed: Site, capsys):
    deployed.info.reset_calls()
    assert vsa(deployed.plan, "--yes") == 0
    assert "No changes" in capsys.readouterr().out
    assert deployed.tasks_since_reset() == {}
    assert deployed.info.calls()["total"] < 15


def test_autostart_is_set_outside_an_ha_cluster(site: Site, capsys):
    assert vsa(site.plan, "--only", "vms", "--yes") == 0
    for host, vm in (("esx1.lab.local", "vsa-node1"), ("esx2.lab.local", "vsa-node2")):
        config = site.host(host).configManager.autoStartManager.config
        assert config.defaults.enabled
        [info] = config.powerInfo
        assert (info.key.name, info.startAction, info.startOrder) == (vm, "powerOn", 1)


def test_disabled_adapter_is_enabled_again(deployed: Site, capsys):
    storage = deployed.host("esx2.lab.local").configManager.storageSystem
    storage.UpdateSoftwareInternetScsiEnabled(False)
    shown = heal(deployed, capsys)
    assert "~ software adapter: disabled -> enabled" in shown
    assert adapter(deployed, "esx2.lab.local").configuredSendTarget[0].address == VIP


def test_removed_send_target_is_added_back(deployed: Site, capsys):
    storage = deployed.host("esx3.lab.local").configManager.storageSystem
    hba = adapter(deployed, "esx3.lab.local")
    storage.RemoveInternetScsiSendTargets(hba.device, [Iscsi.SendTarget(address=VIP, port=3260)])
    shown = heal(deployed, capsys)
    assert f"+ send targets: {VIP}:3260" in shown


def test_stale_target_of_ours_is_replaced_and_foreign_targets_are_left_alone(deployed: Site, capsys):
    site = deployed
    old_vip, foreign = "10.11.55.49", "10.11.55.200"
    control = site.info.control_url
    naa = lun_naa(load_plan(site.plan))
    body = {
        "address": old_vip,
        "iqn": IQN,
        "lun_size_bytes": 2**30,
        "naa": "naa.600140500000000000000000000000aa",
    }
    requests.post(f"{control}/portals", json=body, timeout=10).raise_for_status()
    other = {
        "address": foreign,
        "iqn": "iqn.2000-01.com.example:other",
        "lun_size_bytes": 2**30,
        "naa": naa[:-2] + "ff",
    }
    requests.post(f"{control}/portals", json=other, timeout=10).raise_for_status()
    storage = site.host("esx1.lab.local").configManager.storageSystem
    hba = adapter(site, "esx1.lab.local")
    targets = [Iscsi.SendTarget(address=old_vip, port=3260), Iscsi.SendTarget(address=foreign, port=3260)]
    storage.AddInternetScsiSendTargets(hba.device, targets)
    storage.RescanHba(hba.device)

    shown = heal(site, capsys)

    assert f"- send targets: {old_vip}:3260" in shown
    addresses = sorted(t.address for t in adapter(site, "esx1.lab.local").configuredSendTarget)
    assert addresses == sorted([VIP, foreign])


def test_chap_turned_off_is_required_again(deployed: Site, capsys):
    storage = deployed.host("esx1.lab.local").configManager.storageSystem
    hba = adapter(deployed, "esx1.lab.local")
    off = Iscsi.AuthenticationProperties(chapAuthEnabled=False, chapAuthenticationType="chapProhibited")
    target_set = Iscsi.TargetSet(sendTargets=[Iscsi.SendTarget(address=VIP, port=3260)])
    storage.UpdateInternetScsiAuthenticationProperties(hba.device, off, target_set)
    storage.RescanHba(hba.device)
    shown = heal(deployed, capsys)
    assert "~ chap: chapProhibited -> chapRequired as vsa" in shown
    auth = adapter(deployed, "esx1.lab.local").configuredSendTarget[0].authenticationProperties
    assert auth.chapAuthenticationType == "chapRequired"


def test_datastore_unmounted_on_one_host_is_mounted_again(deployed: Site, capsys):
    ds = datastore(deployed)
    deployed.host("esx3.lab.local").configManager.storageSystem.UnmountVmfsVolume(ds.info.vmfs.uuid)
    shown = heal(deployed, capsys)
    assert "~ on esx3.lab.local: not mounted -> mounted, accessible" in shown
    assert all(m.mountInfo.mounted and m.mountInfo.accessible for m in ds.host)


def test_host_moved_out_of_the_cluster_is_moved_back(deployed: Site, capsys):
    esx3 = deployed.host("esx3.lab.local")
    wait_task(esx3.EnterMaintenanceMode_Task(timeout=0))
    wait_task(deployed.content.rootFolder.childEntity[0].hostFolder.MoveIntoFolder_Task([esx3]))
    wait_task(esx3.ExitMaintenanceMode_Task(timeout=0))
    shown = heal(deployed, capsys)
    assert "+ hosts: esx3.lab.local" in shown
    assert esx3.parent == cluster(deployed)


def test_ha_disabled_and_overrides_removed_are_restored(deployed: Site, capsys):
    vsa_cluster = cluster(deployed)
    spec = vim.cluster.ConfigSpecEx(
        dasConfig=vim.cluster.DasConfigInfo(enabled=False),
        dasVmConfigSpec=[
            vim.cluster.DasVmConfigSpec(operation="remove", removeKey=deployed.vm("vsa-node1")),
        ],
    )
    wait_task(vsa_cluster.ReconfigureComputeResource_Task(spec, True))
    shown = heal(deployed, capsys)
    assert "~ ha: False -> True" in shown
    assert "HA override vsa-node1" in shown
    assert vsa_cluster.configurationEx.dasConfig.enabled
    assert len(vsa_cluster.configurationEx.dasVmConfig) == 2


def test_portal_that_never_answers_times_out_naming_host_and_vip(site: Site, capsys, monkeypatch):
    monkeypatch.setattr(iscsi_apply, "LUN_WAIT_S", 2.0)
    stop_portal(site.info, VIP)
    assert vsa(site.plan, "--yes") == 1
    out = capsys.readouterr().err
    assert f"error: host esx1.lab.local: no LUN of {IQN} via {VIP}:3260 after 2 s" in out
    assert datastore(site) is None


def test_lun_with_someone_elses_vmfs_is_never_formatted(site: Site, capsys):
    requests.post(
        f"{site.info.control_url}/portals/{VIP}/foreign-vmfs", json={}, timeout=10
    ).raise_for_status()
    assert vsa(site.plan, "--yes") == 1
    out = capsys.readouterr().err
    assert "is named 'foreign-vmfs', the plan says 'vsa-ds0'" in out
    assert portal(site)["formats"] == 0
    assert datastore(site) is None


def test_plan_without_cluster_skips_the_cluster_stage(site: Site, capsys):
    site.edit_plan('[cluster]\nname = "vsa-cluster"\nha = true\n', "")
    assert vsa(site.plan, "--yes") == 0
    assert "stage cluster: the plan has no [cluster]; skipped" in capsys.readouterr().out
    assert not any(
        isinstance(e, vim.ClusterComputeResource)
        for e in site.content.rootFolder.childEntity[0].hostFolder.childEntity
    )


def test_changed_lun_identity_stops_with_an_explanation(deployed: Site, capsys):
    new = "naa.6001405" + "b" * 25
    url = f"{deployed.info.control_url}/portals/{VIP}/change-identity"
    requests.post(url, json={"naa": new}, timeout=10).raise_for_status()
    for host in HOSTS:
        storage = deployed.host(host).configManager.storageSystem
        storage.RescanHba(adapter(deployed, host).device)
    deployed.info.reset_calls()

    assert vsa(deployed.plan, "--yes") == 1

    out = capsys.readouterr().err
    assert f"our LUN shows as {new}" in out and "changed the LUN's identity" in out
    assert portal(deployed)["formats"] == 1
    assert deployed.tasks_since_reset() == {}


def test_against_an_esxi_host_the_cluster_stage_is_skipped(esxi_site: Site, capsys):
    assert vsa(esxi_site.plan, "--yes") == 0
    out = capsys.readouterr().out
    assert "stage cluster: connected to an ESXi host, not vCenter; clusters need vCenter; skipped" in out
    host_folder = esxi_site.content.rootFolder.childEntity[0].hostFolder
    assert not any(isinstance(entity, vim.ClusterComputeResource) for entity in host_folder.childEntity)
    assert datastore(esxi_site) is not None


def test_drs_on_gets_drs_overrides_for_the_storage_vms(deployed: Site, capsys):
    vsa_cluster = cluster(deployed)
    spec = vim.cluster.ConfigSpecEx(drsConfig=vim.cluster.DrsConfigInfo(enabled=True))
    wait_task(vsa_cluster.ReconfigureComputeResource_Task(spec, True))
    shown = heal(deployed, capsys)
    assert "+ DRS override vsa-node1: False, manual" in shown
    drs = {
        entry.key.name: (entry.enabled, entry.behavior) for entry in vsa_cluster.configurationEx.drsVmConfig
    }
    assert drs == {"vsa-node1": (False, "manual"), "vsa-node2": (False, "manual")}


@pytest.fixture
def planned_create(site: Site, capsys) -> tuple[RunContext, CreateVmfs]:
    """Every host logged in to the LUN, and the datastore stage's CreateVmfs as planned then."""
    assert vsa(site.plan, "--only", "network,iscsi", "--yes") == 0
    capsys.readouterr()
    plan = load_plan(site.plan)
    ctx = RunContext(
        plan=plan,
        session=connect(plan, plan.resolve_password()),
        state=StateDir(plan.state_dir, persist=False),
        reporter=Reporter(None),
        allow_destroy=frozenset(),
        redactor=Redactor(),
    )
    ctx.refresh()
    [change], problems = datastore_diff.diff(plan, datastore_facts.observe(plan, ctx.snapshot))
    assert problems == []
    create = change.operations[0]
    assert isinstance(create, CreateVmfs) and create.naa == lun_naa(plan)
    yield ctx, create
    ctx.vsphere.close()


def test_create_vmfs_refuses_when_the_device_is_no_longer_our_lun(site: Site, planned_create):
    ctx, create = planned_create
    stop_portal(site.info, VIP)  # the LUN goes away between the plan and its apply
    storage = site.host(create.host).configManager.storageSystem
    storage.RescanHba(adapter(site, create.host).device)
    site.info.reset_calls()
    with pytest.raises(
        VSphereError, match=f"{create.naa} is no longer the LUN of {IQN}.*nothing was formatted"
    ):
        VSPHERE.run(create, ctx)
    assert "QueryAvailableDisksForVmfs" not in site.info.calls()["methods"]
    assert site.tasks_since_reset() == {}
    assert datastore(site) is None


def test_create_vmfs_refuses_a_lun_someone_formatted_after_the_plan(site: Site, planned_create):
    ctx, create = planned_create
    requests.post(
        f"{site.info.control_url}/portals/{VIP}/foreign-vmfs", json={}, timeout=10
    ).raise_for_status()
    site.info.reset_calls()
    with pytest.raises(VSphereError, match=f"LUN {create.naa} is not free for VMFS"):
        VSPHERE.run(create, ctx)
    assert site.tasks_since_reset() == {}
    assert portal(site)["formats"] == 0


def test_datastore_alone_before_any_host_sees_the_lun_is_one_line(site: Site, capsys):
    assert vsa(site.plan, "--only", "datastore", "--yes") == 1
    assert f"error: no host sees the LUN of {IQN}; run the iscsi stage first" in capsys.readouterr().err
    assert portal(site)["formats"] == 0
