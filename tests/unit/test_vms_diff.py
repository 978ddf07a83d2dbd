"""The `vms` diff is pure: plan + facts -> changes and problems, tested without a server."""

import json
import tempfile
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest
from rich.console import Console

from orchestrator.appliance import recipe
from orchestrator.changes import Attr, Change, render_text
from orchestrator.guest.layout import DISK_ROLES
from orchestrator.guest.ssh import GuestError
from orchestrator.identity import nic_mac, node_identity
from orchestrator.operations import Operation, operation_from_json
from orchestrator.plan import Plan, load_plan
from orchestrator.stages.vms import apply as vms_apply
from orchestrator.stages.vms import autostart, guest_liveness
from orchestrator.stages.vms import diff as storage_vms
from orchestrator.stages.vms import facts as vms_facts
from orchestrator.stages.vms import operations as vms_operations
from orchestrator.stages.vms.diff import KB_PER_GB
from orchestrator.stages.vms.facts import NodeVmFacts, Placement, VmsFacts
from orchestrator.stages.vms.operations import (
    AddController,
    AddDisk,
    AddNic,
    CloneVm,
    ConfigureNewVm,
    DestroyVm,
    EditNic,
    EnsureVmFolder,
    ExtraConfig,
    GrowDisk,
    ImportVmFromOva,
    PowerOnVm,
    ReconfigureVm,
    RemoveDisk,
    RemoveNic,
    ResetVm,
    SetAutostart,
    ShutdownGuest,
    Target,
)
from orchestrator.stages.vms.stage import starting
from orchestrator.state import new_ed25519_key
from orchestrator.vsphere import ova_package
from orchestrator.vsphere.session import VSphereError
from orchestrator.vsphere.vm_facts import (
    MARKER_INCOMPLETE,
    MARKER_NODE,
    MARKER_PLAN,
    DiskFact,
    NicFact,
    VmFact,
)
from tests.unit.conftest import EXAMPLE_PLAN

OVA_SOURCE = 'source = { ova = "vsa-appliance.ova" }'


def _template_plan() -> Plan:
    """plans/two-node.toml with the template source instead of its OVA."""
    text = EXAMPLE_PLAN.read_text()
    assert OVA_SOURCE in text
    path = Path(tempfile.mkdtemp()) / "two-node.toml"
    path.write_text(text.replace(OVA_SOURCE, 'source = { template = "vsa-appliance" }'))
    return load_plan(path)


PLAN = _template_plan()
OVA_PLAN = load_plan(EXAMPLE_PLAN)
NODES = PLAN.storage_nodes
IDENTITIES = {
    node.node: node_identity(PLAN, node, new_ed25519_key(f"root@{node.node}"), "ssh-ed25519 AAAA admin")
    for node in NODES
}
PLACEMENT = Placement(
    host_id="host-1",
    compute_id="cr-1",
    pool_id="pool-1",
    datastore_id="ds-1",
    datastore_local=True,
    networks={"VSA-iSCSI": "net-1", "VSA-Replication": "net-2"},
)
TEMPLATE = VmFact(
    id="vm-template",
    name="vsa-appliance",
    template=True,
    host_id="host-1",
    pool_id=None,
    power="poweredOff",
    tools_running=False,
    cpus=2,
    memory_mb=2048,
    annotation="",
    disks=(DiskFact(key=2000, controller_key=1000, unit=0, capacity_kb=2 * KB_PER_GB, file="[ds] t/t.vmdk"),),
    nics=(NicFact(key=4000, kind="VirtualE1000", network="VM Network", mac="00:0c:29:00:00:01"),),
)


def deployed_vm(node) -> VmFact:
    """A VM exactly as the plan wants it."""
    disks = tuple(
        DiskFact(
            key=2001 + unit,
            controller_key=1001,
            unit=unit,
            capacity_kb=getattr(PLAN.storage_vm, f"{role}_disk_gb") * KB_PER_GB,
            file=storage_vms.disk_file(PLAN, node, role),
        )
        for unit, role in enumerate(DISK_ROLES)
    )
    nics = tuple(
        NicFact(key=4000 + index, kind="VirtualVmxnet3", network=network, mac=nic_mac(PLAN, node.node, role))
        for index, (role, network) in enumerate((("iscsi", "VSA-iSCSI"), ("replication", "VSA-Replication")))
    )
    return VmFact(
        id=f"vm-{node.node}",
        name=PLAN.vm_name(node.node),
        template=False,
        host_id="host-1",
        pool_id="pool-1",
        power="poweredOn",
        tools_running=True,
        cpus=PLAN.storage_vm.cpus,
        memory_mb=PLAN.storage_vm.memory_mb,
        annotation=storage_vms.annotation(PLAN, node),
        extra=storage_vms.desired_extra_config(PLAN, node, IDENTITIES[node.node]),
        disks=(TEMPLATE.disks[0], *disks),
        nics=nics,
        pvscsi_buses={1: 1001},
    )


def facts(*vms: VmFact | None, orphans: tuple = ()) -> VmsFacts:
    nodes = [NodeVmFacts(node=node, placement=PLACEMENT, vm=vm) for node, vm in zip(NODES, vms, strict=True)]
    return VmsFacts(nodes=nodes, folder_exists=True, template=TEMPLATE, orphans=list(orphans))


def diff(site: VmsFacts, allow: frozenset[str] = frozenset()):
    return storage_vms.diff(PLAN, site, IDENTITIES, allow)


def kinds(change) -> list[type]:
    return [type(operation) for operation in change.operations]


def reconfigure(change) -> ReconfigureVm:
    [operation] = [op for op in change.operations if isinstance(op, ReconfigureVm)]
    return operation


def planned_edits(plan: Plan, base: VmFact) -> storage_vms.VmEdits:
    """The edits a new VM made from `base` gets (ConfigureNewVm computes them against it)."""
    return storage_vms.vm_edits(
        plan, NODES[0], PLACEMENT, base, IDENTITIES["node1"], None, frozenset(), "vm vsa-node1"
    )


def planned_devices(plan: Plan, base: VmFact) -> list[str]:
    return [device.kind for device in planned_edits(plan, base).devices]


def test_matching_site_has_no_changes():
    assert diff(facts(deployed_vm(NODES[0]), deployed_vm(NODES[1]))) == ([], [])


def test_missing_vm_is_created_from_the_template_with_every_device():
    changes, problems = diff(facts(None, deployed_vm(NODES[1])))
    assert problems == []
    [change] = changes
    assert (change.action, change.resource) == ("create", "vm vsa-node1")
    assert kinds(change) == [CloneVm, ConfigureNewVm, PowerOnVm]
    ops = planned_devices(PLAN, TEMPLATE)
    assert ops == ["add_controller", "add_disk", "add_disk", "add_disk", "remove_nic", "add_nic", "add_nic"]
    edits = storage_vms.vm_edits(
        PLAN, NODES[0], PLACEMENT, TEMPLATE, IDENTITIES["node1"], None, frozenset(), ""
    )
    sizes = [device.size_kb for device in edits.devices if device.kind == "add_disk"]
    assert sizes == [1 * KB_PER_GB, 1 * KB_PER_GB, 50 * KB_PER_GB]


def test_larger_data_disk_is_refused_unless_named():
    vm = deployed_vm(NODES[0])
    bigger = replace(vm.disks[3], capacity_kb=60 * KB_PER_GB)
    vm = replace(vm, disks=(*vm.disks[:3], bigger))

    changes, problems = diff(facts(vm, deployed_vm(NODES[1])))
    assert changes == []
    assert "data disk is 60 GB but the plan says 50 GB" in problems[0].message
    assert "--allow-destroy node1" in problems[0].message

    changes, problems = diff(facts(vm, deployed_vm(NODES[1])), frozenset({"node1"}))
    assert problems == []
    assert [d.kind for d in reconfigure(changes[0]).devices] == ["remove_disk", "add_disk"]


def test_unowned_vm_is_a_problem_and_never_a_change():
    vm = replace(deployed_vm(NODES[0]), extra={})
    changes, problems = diff(facts(vm, deployed_vm(NODES[1])))
    assert changes == []
    assert "is not ours (no vsa-orchestrate marker)" in problems[0].message


def test_cpu_change_on_a_running_vm_says_it_power_cycles():
    vm = replace(deployed_vm(NODES[1]), cpus=4)
    [change], _ = diff(facts(deployed_vm(NODES[0]), vm))
    assert kinds(change) == [ShutdownGuest, ReconfigureVm, PowerOnVm]
    assert "power cycle" in change.note


def test_userdata_is_redacted_in_text_and_json():
    changes, _ = diff(facts(None, None))
    console = Console(record=True, width=200)
    render_text(console, changes)
    text = console.export_text()
    as_json = json.dumps([change.as_json() for change in changes])
    assert "guestinfo.userdata: (sensitive value)" in text
    for shown in (text, as_json):
        assert "PRIVATE KEY" not in shown
        assert IDENTITIES["node1"].guestinfo()["guestinfo.userdata"] not in shown


def test_shared_datastore_is_refused():
    shared = replace(PLACEMENT, datastore_local=False)
    site = facts(None, None)
    site.nodes[0].placement = shared
    _, problems = diff(site)
    assert "is shared by several hosts, not local to esx1.demo.local" in problems[0].message


# The OVA source (plans/two-node.toml's own)

OVF = ova_package.read_ovf(
    (recipe.TEMPLATES / "ova" / "appliance.ovf.j2")
    .read_text()
    .replace("{{ vmdk_name }}", "disk1.vmdk")
    .replace("{{ vmdk_size }}", "1")
    .replace("{{ capacity }}", str(2 * 2**30)),
    "appliance.ovf",
)
OVA = vms_facts.OvaSource("/plans/vsa-appliance.ova", vms_facts.ova_fact(OVF))


def ova_facts(*vms: VmFact | None, ova: vms_facts.OvaSource | None = OVA, esxi: bool = False) -> VmsFacts:
    nodes = [NodeVmFacts(node=node, placement=PLACEMENT, vm=vm) for node, vm in zip(NODES, vms, strict=True)]
    return VmsFacts(nodes=nodes, folder_exists=True, template=None, orphans=[], ova=ova, esxi=esxi)


def ova_diff(site: VmsFacts):
    return storage_vms.diff(OVA_PLAN, site, IDENTITIES, frozenset())


def test_missing_vm_is_imported_from_the_ova_with_every_device():
    changes, problems = ova_diff(ova_facts(None, deployed_vm(NODES[1])))
    assert problems == []
    [change] = changes
    assert (change.action, change.resource) == ("create", "vm vsa-node1")
    assert kinds(change) == [ImportVmFromOva, ConfigureNewVm, PowerOnVm]
    assert change.operations[0].ova == "/plans/vsa-appliance.ova"
    assert Attr("source", None, "ova /plans/vsa-appliance.ova") in change.attrs
    ops = planned_devices(OVA_PLAN, OVA.fact)
    assert ops == ["add_controller", "add_disk", "add_disk", "add_disk", "add_nic", "add_nic"]


def test_nodes_that_exist_need_no_ova():
    site = ova_facts(deployed_vm(NODES[0]), deployed_vm(NODES[1]), ova=None)
    assert not vms_facts.needs_source(OVA_PLAN, site)
    assert ova_diff(site) == ([], [])


def test_a_template_against_an_esxi_host_is_one_problem():
    changes, problems = diff(replace(facts(None, None), esxi=True))
    assert changes == []
    assert [(p.resource, p.message) for p in problems] == [
        (
            "storage_vm.source",
            "vcenter.demo.local is an ESXi host, which cannot clone a template (only vCenter can); "
            'import the appliance instead: storage_vm.source = { ova = "path/to/appliance.ova" }',
        )
    ]
    assert ova_diff(ova_facts(None, None, esxi=True))[1] == []


def test_an_unusable_ova_is_one_problem_for_both_nodes():
    bad = vms_facts.OvaSource("/p/x.ova", None, "/p/x.ova: disk1.vmdk: SHA256 digest does not match")
    changes, problems = ova_diff(ova_facts(None, None, ova=bad))
    assert changes == []
    assert [str(problem) for problem in problems] == [
        "storage_vm.source: /p/x.ova: disk1.vmdk: SHA256 digest does not match"
    ]


def unfinished(node) -> VmFact:
    """What an import that was cut short leaves: ours, marked incomplete, no data disk."""
    return VmFact(
        id=f"vm-{node.node}-cut",
        name=OVA_PLAN.vm_name(node.node),
        template=False,
        host_id="host-1",
        pool_id="pool-1",
        power="poweredOff",
        tools_running=False,
        cpus=1,
        memory_mb=1024,
        annotation="",
        extra={MARKER_PLAN: "vsa", MARKER_NODE: node.node, MARKER_INCOMPLETE: "import"},
        disks=(TEMPLATE.disks[0],),
        pvscsi_buses={0: 1000},
    )


def test_an_unfinished_import_is_replaced():
    site = ova_facts(unfinished(NODES[0]), deployed_vm(NODES[1]))
    assert vms_facts.needs_source(OVA_PLAN, site)
    [change], problems = ova_diff(site)
    assert problems == []
    assert (change.action, change.resource) == ("replace", "vm vsa-node1")
    assert kinds(change) == [DestroyVm, ImportVmFromOva, ConfigureNewVm, PowerOnVm]
    assert change.operations[0].vm == "vm-node1-cut"
    assert "did not finish" in change.note


def test_an_unfinished_import_holding_data_disks_is_refused():
    vm = unfinished(NODES[0])
    vm = replace(vm, disks=deployed_vm(NODES[0]).disks, pvscsi_buses={0: 1000, 1: 1001})
    changes, problems = ova_diff(ova_facts(vm, deployed_vm(NODES[1])))
    assert changes == []
    assert "holds data disks, so it is not replaced" in problems[0].message


def test_the_reconfigure_after_an_import_removes_the_incomplete_marker():
    vm = unfinished(NODES[0])
    edits = storage_vms.vm_edits(
        OVA_PLAN, NODES[0], PLACEMENT, vm, IDENTITIES["node1"], frozenset(), frozenset(), "vm vsa-node1"
    )
    assert ExtraConfig(MARKER_INCOMPLETE, "") in edits.extra_config
    assert Attr(f"extraConfig {MARKER_INCOMPLETE}", "import", None) in edits.attrs


# The operations the diff emits, as data

ALL_OPERATIONS = (
    EnsureVmFolder("vsa-orchestrate/vsa"),
    CloneVm("node1", "vsa-node1", "vm-template", Target("host-1", "pool-1", "ds-1")),
    ImportVmFromOva("node1", "vsa-node1", "/plans/vsa-appliance.ova", Target("host-1", None, "ds-1")),
    ConfigureNewVm("node1", "vsa-node1"),
    ShutdownGuest("node1", "vsa-node1", "vm-1"),
    ReconfigureVm(
        "node1",
        "vsa-node1",
        "vm-1",
        devices=(
            AddController(1),
            AddDisk("data", 2, 50 * KB_PER_GB, "[ds] vsa-node1/vsa-node1_data.vmdk", True, "thin"),
            GrowDisk(2003, 60 * KB_PER_GB),
            RemoveDisk(2002, destroy=True),
            AddNic("iscsi", "VSA-iSCSI", "net-1", "00:50:56:00:00:01"),
            EditNic(4001, "VSA-Replication", "net-2", "00:50:56:00:00:02"),
            RemoveNic(4002),
        ),
        cpus=2,
        memory_mb=4096,
        annotation="Storage VM",
        extra_config=(ExtraConfig("disk.EnableUUID", "TRUE"), ExtraConfig("guestinfo.userdata", None)),
    ),
    PowerOnVm("node1", "vsa-node1", None),
    PowerOnVm("node1", "vsa-node1", "vm-1"),
    ResetVm("node1", "vsa-node1", "vm-1", "node2"),
    DestroyVm("node3", "vsa-node3", "vm-3", "vsa", unfinished=False),
    SetAutostart("esx1", "ha-autostartmgr", "vsa-node1"),
)


def test_every_operation_round_trips_through_json_and_describes_itself_in_one_line():
    declared = {
        cls
        for cls in Operation.registry.values()
        if cls.__module__ == vms_operations.__name__ and cls is not vms_operations.VmOperation
    }
    assert {type(op) for op in ALL_OPERATIONS} == declared
    emitted = [
        op
        for change in diff(facts(None, replace(deployed_vm(NODES[1]), cpus=4)))[0]
        for op in change.operations
    ]
    for operation in (*ALL_OPERATIONS, *emitted):
        text = json.dumps(operation.as_json())
        assert operation_from_json(json.loads(text)) == operation
        assert operation.describe() and "\n" not in operation.describe()


def test_an_update_power_cycles_around_one_reconfigure_with_typed_edits():
    vm = deployed_vm(NODES[1])
    moved = replace(vm.nics[1], network="VSA-iSCSI")
    vm = replace(vm, cpus=PLAN.storage_vm.cpus + 1, nics=(vm.nics[0], moved))
    [change], _ = diff(facts(deployed_vm(NODES[0]), vm))
    mac = nic_mac(PLAN, "node2", "replication")
    assert change.operations == (
        ShutdownGuest("node2", "vsa-node2", "vm-node2"),
        ReconfigureVm(
            "node2",
            "vsa-node2",
            "vm-node2",
            (EditNic(4001, "VSA-Replication", "net-2", mac),),
            cpus=PLAN.storage_vm.cpus,
        ),
        PowerOnVm("node2", "vsa-node2", "vm-node2"),
    )


def test_a_grown_disk_is_one_reconfigure_of_a_running_vm():
    vm = deployed_vm(NODES[0])
    smaller = replace(vm.disks[3], capacity_kb=40 * KB_PER_GB)
    [change], _ = diff(facts(replace(vm, disks=(*vm.disks[:3], smaller)), deployed_vm(NODES[1])))
    assert change.operations == (
        ReconfigureVm("node1", "vsa-node1", "vm-node1", (GrowDisk(2003, 50 * KB_PER_GB),)),
    )


def test_a_new_vm_without_our_folder_makes_the_folder_first():
    site = replace(facts(None, deployed_vm(NODES[1])), folder_exists=False)
    [change], _ = diff(site)
    assert change.operations == (
        EnsureVmFolder(f"vsa-orchestrate/{PLAN.name}"),
        CloneVm("node1", "vsa-node1", "vm-template", Target("host-1", "pool-1", "ds-1")),
        ConfigureNewVm("node1", "vsa-node1"),
        PowerOnVm("node1", "vsa-node1", None),
    )


def test_an_orphan_is_destroyed_only_when_named():
    orphan = replace(
        deployed_vm(NODES[0]),
        id="vm-old",
        name="vsa-node3",
        extra={MARKER_PLAN: PLAN.name, MARKER_NODE: "node3"},
    )
    site = facts(deployed_vm(NODES[0]), deployed_vm(NODES[1]), orphans=(orphan,))
    changes, problems = diff(site)
    assert changes == [] and "--allow-destroy node3" in problems[0].message
    [change], problems = diff(site, frozenset({"node3"}))
    assert problems == [] and (change.action, change.resource) == ("delete", "vm vsa-node3")
    assert change.operations == (DestroyVm("node3", "vsa-node3", "vm-old", PLAN.name, unfinished=False),)
    assert DestroyVm.destructive and ResetVm.destructive and not ReconfigureVm.destructive


def test_no_operation_holds_the_userdata_nor_describes_it():
    bare = replace(deployed_vm(NODES[1]), extra={MARKER_PLAN: PLAN.name, MARKER_NODE: "node2"})
    changes, _ = diff(facts(None, bare))
    operations = [op for change in changes for op in change.operations]
    [reconfig] = [op for op in operations if isinstance(op, ReconfigureVm)]
    guestinfo = IDENTITIES["node2"].guestinfo()
    assert ExtraConfig("guestinfo.userdata", None) in reconfig.extra_config
    assert ExtraConfig("guestinfo.metadata", guestinfo["guestinfo.metadata"]) in reconfig.extra_config
    shown = json.dumps([op.as_json() for op in operations]) + "\n".join(op.describe() for op in operations)
    assert guestinfo["guestinfo.userdata"] not in shown and "PRIVATE KEY" not in shown


def test_starting_names_the_nodes_a_change_powers_on_or_resets():
    changes, _ = diff(facts(None, replace(deployed_vm(NODES[1]), cpus=4)))
    assert starting(changes) == {"node1", "node2"}
    vm = deployed_vm(NODES[0])
    smaller = replace(vm.disks[3], capacity_kb=40 * KB_PER_GB)
    grown, _ = diff(facts(replace(vm, disks=(*vm.disks[:3], smaller)), deployed_vm(NODES[1])))
    assert starting(grown) == set()
    reset = Change(
        "vms", "update", "vm vsa-node2", operations=(ResetVm("node2", "vsa-node2", "vm-2", "node1"),)
    )
    assert starting([*grown, reset]) == {"node2"}


def test_autostart_is_set_on_a_host_outside_ha_until_it_matches():
    host = autostart.HostAutostart(
        host="esx1",
        node="node1",
        manager_id="ha-autostartmgr",
        in_ha_cluster=False,
        enabled=False,
        entry=None,
        vm_id="vm-1",
    )
    [change] = autostart.diff(PLAN, [host])
    assert change.resource == "host esx1 autostart"
    assert change.operations == (SetAutostart("esx1", "ha-autostartmgr", "vsa-node1"),)
    assert autostart.diff(PLAN, [replace(host, enabled=True, entry=autostart.WANTED)]) == []
    assert autostart.diff(PLAN, [replace(host, in_ha_cluster=True)]) == []


def test_destroy_reads_the_vm_again_and_refuses_when_it_changed(monkeypatch):
    now = {"fact": unfinished(NODES[0])}
    ran: list[str] = []
    monkeypatch.setattr(vms_apply, "retrieve_one", lambda session, vm: None)
    monkeypatch.setattr(vms_apply, "vm_fact", lambda obj, inventory: now["fact"])
    monkeypatch.setattr(vms_apply, "_power_off", lambda vm, reporter, resource: ran.append("power off"))
    monkeypatch.setattr(vms_apply, "run_task", lambda reporter, what, task: ran.append(what))
    ctx = SimpleNamespace(vsphere=SimpleNamespace(stub=None), snapshot=None, reporter=None)
    op = DestroyVm("node1", "vsa-node1", "vm-node1-cut", OVA_PLAN.name, unfinished=True)
    vms_apply.destroy_vm(op, ctx)
    assert ran == ["power off", "destroy unfinished vm vsa-node1"]
    ran.clear()
    now["fact"] = replace(
        unfinished(NODES[0]), disks=deployed_vm(NODES[0]).disks, pvscsi_buses={0: 1000, 1: 1001}
    )
    with pytest.raises(VSphereError, match="no longer an unfinished import without data disks"):
        vms_apply.destroy_vm(op, ctx)
    now["fact"] = replace(unfinished(NODES[0]), extra={MARKER_PLAN: "other", MARKER_NODE: "node1"})
    with pytest.raises(VSphereError, match="no longer marked as node node1 of plan vsa"):
        vms_apply.destroy_vm(op, ctx)
    assert ran == []


def test_a_reset_reads_the_peer_again_and_refuses_when_it_stopped_serving(monkeypatch):
    peer_serves = {"yes": True}

    def observe_nodes(plan, views, keys):
        for view in views:
            view.error, view.reachable = (None, True) if peer_serves["yes"] else ("no answer", False)

    monkeypatch.setattr(guest_liveness, "observe_nodes", observe_nodes)
    monkeypatch.setattr(
        guest_liveness, "serving_gap", lambda view: None if view.reachable else "node2 is gone"
    )
    ran: list[str] = []
    monkeypatch.setattr(vms_apply, "run_task", lambda reporter, what, task: ran.append(what))
    vm = SimpleNamespace(runtime=SimpleNamespace(powerState="poweredOn"), ResetVM_Task=None)
    monkeypatch.setattr(vms_apply, "_vm", lambda ctx, moid: vm)
    ctx = SimpleNamespace(plan=PLAN, host_keys={}, reporter=None)
    op = ResetVm("node1", "vsa-node1", "vm-node1", "node2")
    vms_apply.reset_vm(op, ctx)
    assert ran == ["reset vm vsa-node1"]
    peer_serves["yes"] = False
    with pytest.raises(GuestError, match="vm vsa-node1: not reset: node2 is gone now"):
        vms_apply.reset_vm(op, ctx)
    assert ran == ["reset vm vsa-node1"]
