"""The network and hosts stages against the simulated vCenter: vSwitch,
portgroups and vmknics made and healed, nothing else touched, the iscsi stage's
reachability check and port binding, and hosts added with a pinned thumbprint."""

import pytest
from pyVmomi import vim

from tests.vsphere.conftest import Site, vsa

ISCSI_PG, REPL_PG = "Storage-iSCSI", "Storage-Repl"
STORAGE_HOSTS = ("esx1.lab.local", "esx2.lab.local")
ALL_HOSTS = (*STORAGE_HOSTS, "esx3.lab.local")
SNAPSHOT_CALLS = {
    "RetrieveServiceContent",
    "Login",
    "FindByInventoryPath",
    "CreateContainerView",
    "RetrievePropertiesEx",
    "DestroyView",
    "Logout",
}
VMK_IPS = {"esx1.lab.local": "10.11.55.61", "esx2.lab.local": "10.11.55.62", "esx3.lab.local": "10.11.55.63"}


def storage_network_plan(site: Site, bind: bool = False) -> None:
    """The lab plan with the whole storage network opted in: a new vSwitch1 on
    vmnic1, MTU 9000, new portgroups with VLANs."""
    site.edit_plan('iscsi_portgroup = "VSA-iSCSI"', f'iscsi_portgroup = "{ISCSI_PG}"')
    site.edit_plan(
        'replication_portgroup = "VSA-Replication"',
        f'replication_portgroup = "{REPL_PG}"\nvswitch = "vSwitch1"\nuplinks = ["vmnic1"]\nmtu = 9000\n'
        f"iscsi_vlan = 55\nreplication_vlan = 22\nbind = {'true' if bind else 'false'}",
    )


def network(site: Site, host: str) -> vim.host.NetworkInfo:
    return site.host(host).config.network


def portgroups(info: vim.host.NetworkInfo) -> dict[str, tuple[str, int]]:
    return {pg.spec.name: (pg.spec.vswitchName, pg.spec.vlanId) for pg in info.portgroup}


def vnic_on(info: vim.host.NetworkInfo, portgroup: str) -> vim.host.VirtualNic | None:
    return next((vnic for vnic in info.vnic if vnic.portgroup == portgroup), None)


def system(site: Site, host: str) -> vim.host.NetworkSystem:
    return site.host(host).configManager.networkSystem


def test_a_fresh_site_gets_vswitch_portgroups_and_vmknics_then_a_rerun_changes_nothing(site: Site, capsys):
    storage_network_plan(site)
    management = {
        host: vnic_on(network(site, host), "Management Network").spec.ip.ipAddress for host in ALL_HOSTS
    }
    assert vsa(site.plan, "--dry-run") == 2
    shown = capsys.readouterr().out
    assert (
        "host esx1.lab.local vswitch vSwitch1" in shown
        and f"host esx3.lab.local portgroup {ISCSI_PG}" in shown
    )
    assert site.tasks_since_reset() == {}
    assert vsa(site.plan, "--yes") == 0
    for host in ALL_HOSTS:
        info = network(site, host)
        vswitch = next(v for v in info.vswitch if v.name == "vSwitch1")
        assert vswitch.mtu == 9000
        assert [p.device for p in info.pnic if p.key in vswitch.pnic] == ["vmnic1"]
        groups = portgroups(info)
        assert groups[ISCSI_PG] == ("vSwitch1", 55)
        # Replication only where a storage node lives.
        assert (REPL_PG in groups) == (host in STORAGE_HOSTS)
        vnic = vnic_on(info, ISCSI_PG)
        assert (vnic.spec.ip.ipAddress, vnic.spec.ip.subnetMask, vnic.spec.mtu) == (
            VMK_IPS[host],
            "255.255.255.0",
            9000,
        )
        # The management network is where it was.
        assert vnic_on(info, "Management Network").device == "vmk0"
        assert vnic_on(info, "Management Network").spec.ip.ipAddress == management[host]
        assert groups["VSA-iSCSI"] == ("vSwitch0", 0)
    # The storage VMs' NICs are on the portgroups just made.
    nets = {
        nic.deviceInfo.summary
        for nic in site.vm("vsa-node1").config.hardware.device
        if isinstance(nic, vim.vm.device.VirtualEthernetCard)
    }
    assert nets == {ISCSI_PG, REPL_PG}
    capsys.readouterr()

    site.info.reset_calls()
    assert vsa(site.plan, "--dry-run") == 0
    calls = site.info.calls()
    assert site.tasks_since_reset() == {}
    # The network stage reads the same snapshot: login, 3 finds, view, retrieve, destroy, logout...
    assert calls["total"] <= 9 and set(calls["methods"]) <= SNAPSHOT_CALLS, calls


def test_network_drift_is_healed_and_foreign_objects_are_untouched(site: Site, capsys):
    storage_network_plan(site)
    assert vsa(site.plan, "--yes") == 0
    esx1, esx2, esx3 = ALL_HOSTS
    # Someone else's portgroup on our vSwitch, and drift on ours.
    system(site, esx1).AddPortGroup(
        vim.host.PortGroup.Specification(
            name="Backup", vswitchName="vSwitch1", vlanId=7, policy=vim.host.NetworkPolicy()
        )
    )
    pg = next(p for p in network(site, esx1).portgroup if p.spec.name == ISCSI_PG).spec
    pg.vlanId = 99
    system(site, esx1).UpdatePortGroup(ISCSI_PG, pg)
    system(site, esx2).RemoveVirtualNic(vnic_on(network(site, esx2), ISCSI_PG).device)
    readdress = vim.host.VirtualNic.Specification(
        ip=vim.host.IpConfig(dhcp=False, ipAddress="10.11.55.99", subnetMask="255.255.255.0")
    )
    system(site, esx3).UpdateVirtualNic(vnic_on(network(site, esx3), ISCSI_PG).device, readdress)
    vswitch = next(v for v in network(site, esx3).vswitch if v.name == "vSwitch1").spec
    vswitch.mtu = 1500
    system(site, esx3).UpdateVirtualSwitch("vSwitch1", vswitch)
    capsys.readouterr()

    assert vsa(site.plan, "--dry-run") == 2
    shown = capsys.readouterr().out
    for line in (
        f"~ host {esx1} portgroup {ISCSI_PG}",
        f"+ host {esx2} vmknic on {ISCSI_PG}",
        f"~ host {esx3} vmknic on {ISCSI_PG}",
        f"~ host {esx3} vswitch vSwitch1",
    ):
        assert line in shown, shown
    assert "Backup" not in shown
    site.info.reset_calls()
    assert vsa(site.plan, "--yes") == 0
    tasks = site.tasks_since_reset()
    assert tasks == {
        "UpdatePortGroup": 1,
        "AddVirtualNic": 1,
        "UpdateVirtualNic": 1,
        "UpdateVirtualSwitch": 1,
    }, tasks
    assert portgroups(network(site, esx1))[ISCSI_PG] == ("vSwitch1", 55)
    assert portgroups(network(site, esx1))["Backup"] == ("vSwitch1", 7)
    assert vnic_on(network(site, esx2), ISCSI_PG).spec.ip.ipAddress == VMK_IPS[esx2]
    assert vnic_on(network(site, esx3), ISCSI_PG).spec.ip.ipAddress == VMK_IPS[esx3]
    assert next(v for v in network(site, esx3).vswitch if v.name == "vSwitch1").mtu == 9000
    capsys.readouterr()
    assert vsa(site.plan, "--dry-run") == 0


def test_existing_portgroups_are_adopted_and_never_recreated(site: Site, capsys):
    """Today's plans: the portgroups exist (on vSwitch0); only the vmknics are added."""
    assert vsa(site.plan, "--yes") == 0
    for host in ALL_HOSTS:
        groups = portgroups(network(site, host))
        assert groups["VSA-iSCSI"] == ("vSwitch0", 0)
        assert vnic_on(network(site, host), "VSA-iSCSI").spec.ip.ipAddress == VMK_IPS[host]
    assert "AddPortGroup" not in site.tasks_since_reset()


def distributed_portgroup(site: Site, name: str) -> tuple[vim.dvs.DistributedVirtualPortgroup, str]:
    """A distributed switch with the storage hosts as members and one portgroup
    on it, made as vCenter's admin would; returns the portgroup and the switch uuid."""
    datacenter = site.content.rootFolder.childEntity[0]
    create = vim.DistributedVirtualSwitch.CreateSpec(
        configSpec=vim.dvs.VmwareDistributedVirtualSwitch.ConfigSpec(name="DSwitch")
    )
    datacenter.networkFolder.CreateDVS_Task(create)
    dvs = next(e for e in datacenter.networkFolder.childEntity if isinstance(e, vim.DistributedVirtualSwitch))
    members = [vim.dvs.HostMember.ConfigSpec(operation="add", host=site.host(host)) for host in STORAGE_HOSTS]
    spec = vim.dvs.VmwareDistributedVirtualSwitch.ConfigSpec(
        configVersion=dvs.config.configVersion, host=members
    )
    dvs.ReconfigureDvs_Task(spec)
    dvs.AddDVPortgroup_Task([vim.dvs.DistributedVirtualPortgroup.ConfigSpec(name=name, numPorts=8)])
    portgroup = next(pg for pg in dvs.portgroup if pg.name == name)
    return portgroup, dvs.uuid


def test_a_distributed_portgroup_backs_the_storage_nics_and_is_never_changed(site: Site, capsys):
    portgroup, switch_uuid = distributed_portgroup(site, "DV-Replication")
    site.edit_plan('replication_portgroup = "VSA-Replication"', 'replication_portgroup = "DV-Replication"')
    site.info.reset_calls()
    assert vsa(site.plan, "--yes") == 0
    for name in ("vsa-node1", "vsa-node2"):
        nics = [
            dev
            for dev in site.vm(name).config.hardware.device
            if isinstance(dev, vim.vm.device.VirtualEthernetCard)
        ]
        backings = [nic.backing for nic in nics]
        assert isinstance(backings[0], vim.vm.device.VirtualEthernetCard.NetworkBackingInfo)
        assert backings[0].deviceName == "VSA-iSCSI"
        dv = backings[1]
        assert isinstance(dv, vim.vm.device.VirtualEthernetCard.DistributedVirtualPortBackingInfo)
        assert (dv.port.portgroupKey, dv.port.switchUuid) == (portgroup.key, switch_uuid)
    tasks = site.tasks_since_reset()
    assert not {"AddDVPortgroup_Task", "ReconfigureDVPortgroup_Task", "ReconfigureDvs_Task"} & set(tasks)
    assert "AddPortGroup" not in tasks
    capsys.readouterr()
    # The NIC on the distributed portgroup is recognised: a rerun changes nothing.
    assert vsa(site.plan, "--dry-run") == 0


def test_a_host_without_a_vmknic_in_the_vips_subnet_stops_the_iscsi_stage(site: Site, capsys):
    site.edit_plan('vmk_ip = "10.11.55.63"\n', "")
    assert vsa(site.plan, "--yes") == 1
    err = capsys.readouterr().err
    assert (
        "host esx3.lab.local iscsi: has no VMkernel port in 10.11.55.0/24 (the VIP's subnet), so its iSCSI "
        'adapter could never log in to 10.11.55.50; add hosts[2].vmk_ip = "<a free address in 10.11.55.0/24>"'
    ) in err
    assert "Nothing was changed" in err
    assert site.tasks_since_reset() == {}


def test_a_plan_vmknic_on_the_management_address_is_refused(site: Site, capsys):
    address = vnic_on(network(site, "esx3.lab.local"), "Management Network").spec.ip.ipAddress
    site.edit_plan('vmk_ip = "10.11.55.63"', f'vmk_ip = "{address}"')
    code = vsa(site.plan, "--dry-run")
    err = capsys.readouterr().err
    # Either the plan check (outside the iSCSI subnet) or the stage (already vmk0's) refuses it.
    assert code == 1 and ("vmk_ip" in err), err
    assert site.tasks_since_reset() == {}


def test_port_binding_binds_each_hosts_vmknic_to_the_software_adapter(site: Site, capsys):
    storage_network_plan(site, bind=True)
    assert vsa(site.plan, "--yes") == 0
    for host in ALL_HOSTS:
        esx = site.host(host)
        adapter = next(
            hba.device
            for hba in esx.config.storageDevice.hostBusAdapter
            if isinstance(hba, vim.host.InternetScsiHba) and hba.isSoftwareBased
        )
        bound = esx.configManager.iscsiManager.QueryBoundVnics(adapter)
        assert [port.vnicDevice for port in bound] == [vnic_on(network(site, host), ISCSI_PG).device]
    capsys.readouterr()
    site.info.reset_calls()
    assert vsa(site.plan, "--dry-run") == 0
    assert site.tasks_since_reset() == {}


def spare_host_plan(site: Site, thumbprint: str) -> dict[str, str]:
    spare = site.info.spare_hosts[0]
    secret = site.plan.with_name("esx4.password")
    secret.write_text(spare["password"])
    text = site.plan.read_text()
    text += (
        f'\n[[hosts]]\nesxi = "{spare["name"]}"\nvmk_ip = "10.11.55.64"\n'
        f'add = {{ user = "root", password = {{ file = "{secret.name}" }}, thumbprint = "{thumbprint}" }}\n'
    )
    site.plan.write_text(text)
    return spare


def test_a_missing_host_with_add_is_added_with_its_thumbprint_pinned(site: Site, capsys):
    spare = spare_host_plan(site, site.info.spare_hosts[0]["thumbprint"])
    assert vsa(site.plan, "--dry-run") == 2
    out = capsys.readouterr().out
    assert f"+ host {spare['name']}" in out
    assert "planned once esx4.lab.local is added" in out
    assert spare["password"] not in out
    assert vsa(site.plan, "--yes") == 0
    capsys.readouterr()
    esx4 = site.host(spare["name"])
    assert isinstance(esx4.parent, vim.ClusterComputeResource)  # moved in by the cluster stage
    assert vnic_on(esx4.config.network, "VSA-iSCSI").spec.ip.ipAddress == "10.11.55.64"
    assert vsa(site.plan, "--dry-run") == 0
    log = (site.plan.with_name("lab.toml.state") / "run.log").read_text()
    assert spare["password"] not in log


@pytest.mark.parametrize("wrong", ["00" * 20, "ab" * 32])
def test_a_wrong_thumbprint_is_refused_and_nothing_is_added(site: Site, capsys, wrong: str):
    spare = spare_host_plan(site, wrong)
    assert vsa(site.plan, "--yes") == 1
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    assert f"vCenter sees certificate thumbprint {spare['thumbprint']}" in lines[0]
    assert "nothing was added" in lines[0]
    assert spare["name"] not in [
        h.name
        for h in site.content.viewManager.CreateContainerView(
            site.content.rootFolder, [vim.HostSystem], True
        ).view
    ]
    assert "AddVirtualNic" not in site.tasks_since_reset()


def test_a_missing_host_without_add_is_still_the_clear_error(site: Site, capsys):
    site.plan.write_text(site.plan.read_text() + '\n[[hosts]]\nesxi = "esx9.lab.local"\n')
    assert vsa(site.plan, "--dry-run") == 1
    assert "ESXi host 'esx9.lab.local' not found" in capsys.readouterr().err
