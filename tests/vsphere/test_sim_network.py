"""The simulator's host networking, iSCSI port binding and host add, called
through pyVmomi as the network stage and host add do (sim/host_network_system.go,
sim/iscsi_manager.go, sim/host_add.go)."""

import pytest
from pyVmomi import vim, vmodl

from tests.vsphere.conftest import Site, wait_task


def network(site: Site, host: vim.HostSystem) -> vim.host.NetworkInfo:
    """host.config.network, read fresh with the PropertyCollector."""
    pc = site.content.propertyCollector
    spec = vmodl.query.PropertyCollector.FilterSpec(
        objectSet=[vmodl.query.PropertyCollector.ObjectSpec(obj=host)],
        propSet=[vmodl.query.PropertyCollector.PropertySpec(type=vim.HostSystem, pathSet=["config.network"])],
    )
    result = pc.RetrievePropertiesEx([spec], vmodl.query.PropertyCollector.RetrieveOptions())
    return result.objects[0].propSet[0].val


def netsys_info(site: Site, ns: vim.host.NetworkSystem) -> vim.host.NetworkInfo:
    pc = site.content.propertyCollector
    spec = vmodl.query.PropertyCollector.FilterSpec(
        objectSet=[vmodl.query.PropertyCollector.ObjectSpec(obj=ns)],
        propSet=[
            vmodl.query.PropertyCollector.PropertySpec(type=vim.host.NetworkSystem, pathSet=["networkInfo"])
        ],
    )
    return (
        pc.RetrievePropertiesEx([spec], vmodl.query.PropertyCollector.RetrieveOptions())
        .objects[0]
        .propSet[0]
        .val
    )


def vswitch(info: vim.host.NetworkInfo, name: str) -> vim.host.VirtualSwitch | None:
    return next((v for v in info.vswitch if v.name == name), None)


def portgroup(info: vim.host.NetworkInfo, name: str) -> vim.host.PortGroup | None:
    return next((p for p in info.portgroup if p.spec.name == name), None)


def vnic(info: vim.host.NetworkInfo, device: str) -> vim.host.VirtualNic | None:
    return next((v for v in info.vnic if v.device == device), None)


def bond(*nics: str) -> vim.host.VirtualSwitch.Specification:
    return vim.host.VirtualSwitch.Specification(
        numPorts=128, mtu=9000, bridge=vim.host.VirtualSwitch.BondBridge(nicDevice=list(nics))
    )


def ip(address: str) -> vim.host.VirtualNic.Specification:
    return vim.host.VirtualNic.Specification(
        ip=vim.host.IpConfig(dhcp=False, ipAddress=address, subnetMask="255.255.255.0")
    )


def test_initial_network_is_one_source_of_truth(site: Site) -> None:
    host = site.host("esx1.lab.local")
    info = network(site, host)
    assert [p.device for p in info.pnic] == ["vmnic0", "vmnic1", "vmnic2", "vmnic3"]
    vs0 = vswitch(info, "vSwitch0")
    assert vs0 is not None and vs0.mtu == 1500 and vs0.pnic == ["key-vim.host.PhysicalNic-vmnic0"]
    names = {p.spec.name for p in info.portgroup}
    assert {"Management Network", "VM Network", "VSA-iSCSI", "VSA-Replication"} <= names
    assert "key-vim.host.PortGroup-VSA-iSCSI" in vs0.portgroup
    assert portgroup(info, "VSA-iSCSI").vswitch == "key-vim.host.VirtualSwitch-vSwitch0"
    vmk0 = vnic(info, "vmk0")
    assert vmk0 is not None and vmk0.portgroup == "Management Network" and vmk0.spec.ip.ipAddress
    ns = host.configManager.networkSystem
    assert [v.name for v in netsys_info(site, ns).vswitch] == [v.name for v in info.vswitch]
    other = network(site, site.host("esx2.lab.local"))
    assert {p.mac for p in info.pnic}.isdisjoint(p.mac for p in other.pnic)
    assert len({p.mac for p in info.pnic}) == 4
    assert host.configManager.iscsiManager is not None
    assert host.configManager.iscsiManager._wsdlName == "IscsiManager"


def test_virtual_switch(site: Site) -> None:
    host = site.host("esx1.lab.local")
    ns = host.configManager.networkSystem
    ns.AddVirtualSwitch("vSwitch1", bond("vmnic1", "vmnic2"))
    vs1 = vswitch(network(site, host), "vSwitch1")
    assert vs1.key == "key-vim.host.VirtualSwitch-vSwitch1"
    assert vs1.mtu == 9000
    assert vs1.pnic == ["key-vim.host.PhysicalNic-vmnic1", "key-vim.host.PhysicalNic-vmnic2"]
    assert list(vs1.spec.bridge.nicDevice) == ["vmnic1", "vmnic2"] and vs1.spec.numPorts == 128
    assert vswitch(netsys_info(site, ns), "vSwitch1").mtu == 9000

    with pytest.raises(vim.fault.AlreadyExists):
        ns.AddVirtualSwitch("vSwitch1", bond("vmnic3"))
    with pytest.raises(vim.fault.NotFound):
        ns.AddVirtualSwitch("vSwitch2", bond("vmnic9"))
    with pytest.raises(vim.fault.ResourceInUse):
        ns.AddVirtualSwitch("vSwitch2", bond("vmnic0"))
    spec = bond("vmnic3")
    spec.mtu = 9001
    with pytest.raises(vmodl.fault.InvalidArgument):
        ns.AddVirtualSwitch("vSwitch2", spec)
    assert vswitch(network(site, host), "vSwitch2") is None

    spec = bond("vmnic1")
    spec.mtu = 1500
    ns.UpdateVirtualSwitch("vSwitch1", spec)
    vs1 = vswitch(network(site, host), "vSwitch1")
    assert vs1.mtu == 1500 and vs1.pnic == ["key-vim.host.PhysicalNic-vmnic1"]
    with pytest.raises(vim.fault.NotFound):
        ns.UpdateVirtualSwitch("vSwitch9", spec)
    with pytest.raises(vim.fault.ResourceInUse):
        ns.UpdateVirtualSwitch("vSwitch1", bond("vmnic0"))
    spec.mtu = 1000
    with pytest.raises(vmodl.fault.InvalidArgument):
        ns.UpdateVirtualSwitch("vSwitch1", spec)


def test_port_groups(site: Site) -> None:
    host = site.host("esx2.lab.local")
    ns = host.configManager.networkSystem
    ns.AddVirtualSwitch("vSwitch1", bond("vmnic1"))
    ns.AddPortGroup(
        vim.host.PortGroup.Specification(
            name="pg-a", vlanId=10, vswitchName="vSwitch1", policy=vim.host.NetworkPolicy()
        )
    )
    info = network(site, host)
    pg = portgroup(info, "pg-a")
    assert pg.key == "key-vim.host.PortGroup-pg-a" and pg.spec.vlanId == 10
    assert pg.vswitch == "key-vim.host.VirtualSwitch-vSwitch1"
    assert "key-vim.host.PortGroup-pg-a" in vswitch(info, "vSwitch1").portgroup
    with pytest.raises(vim.fault.NotFound):
        ns.AddPortGroup(
            vim.host.PortGroup.Specification(
                name="pg-b", vlanId=0, vswitchName="nope", policy=vim.host.NetworkPolicy()
            )
        )
    with pytest.raises(vim.fault.AlreadyExists):
        ns.AddPortGroup(
            vim.host.PortGroup.Specification(
                name="pg-a", vlanId=0, vswitchName="vSwitch1", policy=vim.host.NetworkPolicy()
            )
        )

    ns.UpdatePortGroup(
        "pg-a",
        vim.host.PortGroup.Specification(
            name="pg-a", vlanId=20, vswitchName="vSwitch0", policy=vim.host.NetworkPolicy()
        ),
    )
    info = network(site, host)
    pg = portgroup(info, "pg-a")
    assert pg.spec.vlanId == 20 and pg.vswitch == "key-vim.host.VirtualSwitch-vSwitch0"
    assert "key-vim.host.PortGroup-pg-a" in vswitch(info, "vSwitch0").portgroup
    assert "key-vim.host.PortGroup-pg-a" not in (vswitch(info, "vSwitch1").portgroup or [])
    with pytest.raises(vim.fault.NotFound):
        ns.UpdatePortGroup(
            "nope",
            vim.host.PortGroup.Specification(
                name="nope", vlanId=1, vswitchName="vSwitch0", policy=vim.host.NetworkPolicy()
            ),
        )
    with pytest.raises(vmodl.fault.InvalidArgument):
        ns.UpdatePortGroup(
            "pg-a",
            vim.host.PortGroup.Specification(
                name="pg-a", vlanId=4096, vswitchName="vSwitch0", policy=vim.host.NetworkPolicy()
            ),
        )


def test_virtual_nics(site: Site) -> None:
    host = site.host("esx1.lab.local")
    ns = host.configManager.networkSystem
    dev = ns.AddVirtualNic("VSA-iSCSI", ip("10.0.10.11"))
    assert dev == "vmk1"
    v = vnic(network(site, host), "vmk1")
    assert v.key == "key-vim.host.VirtualNic-vmk1" and v.portgroup == "VSA-iSCSI"
    assert v.spec.ip.ipAddress == "10.0.10.11" and v.spec.ip.subnetMask == "255.255.255.0"
    assert v.spec.mtu == 1500 and v.spec.mac
    assert vnic(netsys_info(site, ns), "vmk1") is not None

    with pytest.raises(vim.fault.NotFound):
        ns.AddVirtualNic("nope", ip("10.0.10.12"))
    with pytest.raises(vim.fault.AlreadyExists):
        ns.AddVirtualNic("VSA-iSCSI", ip("10.0.10.12"))
    with pytest.raises(vim.fault.AlreadyExists):
        ns.AddVirtualNic("VSA-Replication", ip("10.0.10.11"))
    assert ns.AddVirtualNic("VSA-Replication", ip("10.0.20.11")) == "vmk2"

    ns.UpdateVirtualNic("vmk1", vim.host.VirtualNic.Specification(mtu=9000))
    v = vnic(network(site, host), "vmk1")
    assert v.spec.mtu == 9000 and v.spec.ip.ipAddress == "10.0.10.11"
    ns.UpdateVirtualNic("vmk1", ip("10.0.10.21"))
    v = vnic(network(site, host), "vmk1")
    assert v.spec.mtu == 9000 and v.spec.ip.ipAddress == "10.0.10.21"
    with pytest.raises(vim.fault.NotFound):
        ns.UpdateVirtualNic("vmk9", vim.host.VirtualNic.Specification(mtu=1500))

    ns.RemoveVirtualNic("vmk2")
    assert vnic(network(site, host), "vmk2") is None
    with pytest.raises(vim.fault.NotFound):
        ns.RemoveVirtualNic("vmk2")
    assert ns.AddVirtualNic("VSA-Replication", ip("10.0.20.11")) == "vmk2"


def test_iscsi_port_binding(site: Site) -> None:
    host = site.host("esx3.lab.local")
    ns = host.configManager.networkSystem
    iscsi = host.configManager.iscsiManager
    storage = host.configManager.storageSystem
    dev = ns.AddVirtualNic("VSA-iSCSI", ip("10.0.10.13"))
    with pytest.raises(vim.fault.NotFound):
        iscsi.BindVnic("vmhba65", dev)  # software iSCSI not enabled yet
    storage.UpdateSoftwareInternetScsiEnabled(True)
    hba = next(
        a.device for a in storage.storageDeviceInfo.hostBusAdapter if isinstance(a, vim.host.InternetScsiHba)
    )
    assert iscsi.QueryBoundVnics(hba) == []
    with pytest.raises(vim.fault.NotFound):
        iscsi.BindVnic("vmhba99", dev)
    with pytest.raises(vim.fault.IscsiFaultVnicNotFound):
        iscsi.BindVnic(hba, "vmk9")
    iscsi.BindVnic(hba, dev)
    with pytest.raises(vim.fault.IscsiFaultVnicAlreadyBound):
        iscsi.BindVnic(hba, dev)
    [port] = iscsi.QueryBoundVnics(hba)
    assert port.vnicDevice == dev and port.pnicDevice == "vmnic0"
    assert port.portgroupName == "VSA-iSCSI" and port.switchName == "vSwitch0"
    assert port.complianceStatus is not None and not port.complianceStatus.reason

    iscsi.UnbindVnic(hba, dev, False)
    assert iscsi.QueryBoundVnics(hba) == []
    with pytest.raises(vim.fault.IscsiFaultVnicNotBound):
        iscsi.UnbindVnic(hba, dev, False)

    iscsi.BindVnic(hba, dev)
    ns.RemoveVirtualNic(dev)
    assert iscsi.QueryBoundVnics(hba) == []
    dev = ns.AddVirtualNic("VSA-iSCSI", ip("10.0.10.13"))
    iscsi.BindVnic(hba, dev)
    storage.UpdateSoftwareInternetScsiEnabled(False)
    storage.UpdateSoftwareInternetScsiEnabled(True)
    assert iscsi.QueryBoundVnics(hba) == []


def add_spec(spare: dict[str, str], thumbprint: str | None) -> vim.host.ConnectSpec:
    return vim.host.ConnectSpec(
        hostName=spare["name"],
        sslThumbprint=thumbprint,
        userName=spare["user"],
        password=spare["password"],
        force=False,
    )


def host_names(site: Site) -> set[str]:
    view = site.content.viewManager.CreateContainerView(site.content.rootFolder, [vim.HostSystem], True)
    try:
        return {h.name for h in view.view}
    finally:
        view.DestroyView()


def test_sim_json_thumbprints(site: Site) -> None:
    for h in site.info.hosts:
        assert len(h["thumbprint"].split(":")) == 20
        assert len(h["thumbprint_sha256"].split(":")) == 32
    [spare] = site.info.spare_hosts
    assert spare["name"] == "esx4.lab.local" and spare["user"] == "root"
    assert spare["password"] == site.info.password


def test_add_host_thumbprint(site: Site) -> None:
    [spare] = site.info.spare_hosts
    folder = site.content.rootFolder.childEntity[0].hostFolder

    for bad in (
        None,
        "00:11:22",
        spare["thumbprint_sha256"].replace(spare["thumbprint_sha256"][:2], "00", 1),
    ):
        task = folder.AddStandaloneHost_Task(add_spec(spare, bad), None, True)
        with pytest.raises(vim.fault.SSLVerifyFault) as err:
            wait_task(task)
        assert err.value.thumbprint == spare["thumbprint"] and err.value.selfSigned
        assert isinstance(task.info.error, vim.fault.SSLVerifyFault)
    assert spare["name"] not in host_names(site)

    spec = add_spec(spare, spare["thumbprint"])
    spec.password = "wrong"
    with pytest.raises(vim.fault.InvalidLogin):
        wait_task(folder.AddStandaloneHost_Task(spec, None, True))
    spec = add_spec(spare, spare["thumbprint"])
    spec.hostName = "esx9.lab.local"
    with pytest.raises(vim.fault.NoHost):
        wait_task(folder.AddStandaloneHost_Task(spec, None, True))
    assert spare["name"] not in host_names(site)

    # Lower case, no colons, SHA-256 form: all accepted.
    task = folder.AddStandaloneHost_Task(
        add_spec(spare, spare["thumbprint_sha256"].replace(":", "").lower()), None, True
    )
    wait_task(task)
    host = task.info.result
    assert isinstance(host, vim.HostSystem) and host.name == spare["name"]
    assert "esx4-local" in {ds.name for ds in host.datastore}
    assert site.info.shared_datastore in {ds.name for ds in host.datastore}
    info = network(site, host)
    assert {"VSA-iSCSI", "VSA-Replication", "Management Network"} <= {p.spec.name for p in info.portgroup}
    assert [p.device for p in info.pnic] == ["vmnic0", "vmnic1", "vmnic2", "vmnic3"]
    assert {"VSA-iSCSI", "VSA-Replication"} <= {n.name for n in host.network}
    assert host.configManager.iscsiManager is not None
    assert host.configManager.networkSystem.AddVirtualNic("VSA-iSCSI", ip("10.0.10.14")) == "vmk1"
    host.configManager.storageSystem.UpdateSoftwareInternetScsiEnabled(True)
    host.configManager.iscsiManager.BindVnic("vmhba65", "vmk1")

    with pytest.raises(vim.fault.AlreadyConnected):
        wait_task(folder.AddStandaloneHost_Task(add_spec(spare, spare["thumbprint"]), None, True))


def test_add_host_into_cluster(site: Site) -> None:
    [spare] = site.info.spare_hosts
    dc = site.content.rootFolder.childEntity[0]
    cluster = dc.hostFolder.CreateClusterEx("c1", vim.cluster.ConfigSpecEx())
    with pytest.raises(vim.fault.SSLVerifyFault):
        wait_task(cluster.AddHost_Task(add_spec(spare, "AA:BB"), True))
    assert spare["name"] not in host_names(site)
    task = cluster.AddHost_Task(add_spec(spare, spare["thumbprint"]), True)
    wait_task(task)
    host = task.info.result
    assert host.parent == cluster and host.name == spare["name"]
    assert "esx4-local" in {ds.name for ds in host.datastore}
    assert portgroup(network(site, host), "VSA-iSCSI") is not None


def test_wait_for_updates_sees_network_changes(site: Site) -> None:
    host = site.host("esx2.lab.local")
    pc = site.content.propertyCollector.CreatePropertyCollector()
    spec = vmodl.query.PropertyCollector.FilterSpec(
        objectSet=[vmodl.query.PropertyCollector.ObjectSpec(obj=host)],
        propSet=[vmodl.query.PropertyCollector.PropertySpec(type=vim.HostSystem, pathSet=["config.network"])],
    )
    pc.CreateFilter(spec, True)
    opts = vmodl.query.PropertyCollector.WaitOptions(maxWaitSeconds=5)
    first = pc.WaitForUpdatesEx("", opts)
    host.configManager.networkSystem.AddVirtualNic("VSA-iSCSI", ip("10.0.10.12"))
    update = pc.WaitForUpdatesEx(first.version, opts)
    assert update is not None
    [change] = update.filterSet[0].objectSet[0].changeSet
    assert vnic(change.val, "vmk1") is not None
    pc.DestroyPropertyCollector()


def test_remove_port_group(site: Site) -> None:
    host = site.host("esx1.lab.local")
    ns = host.configManager.networkSystem
    ns.AddVirtualNic("VSA-Replication", ip("10.0.20.11"))
    with pytest.raises(vim.fault.ResourceInUse):
        ns.RemovePortGroup("VSA-Replication")
    ns.RemoveVirtualNic("vmk1")
    ns.RemovePortGroup("VSA-Replication")
    info = network(site, host)
    assert portgroup(info, "VSA-Replication") is None
    assert "key-vim.host.PortGroup-VSA-Replication" not in vswitch(info, "vSwitch0").portgroup
    assert "VSA-Replication" not in {n.name for n in host.network}
    assert "VSA-Replication" in {n.name for n in site.host("esx2.lab.local").network}
    with pytest.raises(vim.fault.NotFound):
        ns.RemovePortGroup("VSA-Replication")
