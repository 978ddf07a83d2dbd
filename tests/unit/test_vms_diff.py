"""The `vms` diff is pure: plan + facts -> changes and problems, tested without a server."""

import json
import tempfile
from dataclasses import replace
from pathlib import Path

from rich.console import Console

from orchestrator.appliance import recipe
from orchestrator.changes import Attr, render_text
from orchestrator.identity import nic_mac, node_identity
from orchestrator.plan import Plan, load_plan
from orchestrator.stages.vms import diff as storage_vms
from orchestrator.stages.vms.diff import KB_PER_GB, NodeFacts, Placement, VmsFacts
from orchestrator.state import new_ed25519_key
from orchestrator.vsphere import ova_package
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
        for unit, role in enumerate(storage_vms.DISK_ROLES)
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
    nodes = [NodeFacts(node=node, placement=PLACEMENT, vm=vm) for node, vm in zip(NODES, vms, strict=True)]
    return VmsFacts(nodes=nodes, folder_exists=True, template=TEMPLATE, orphans=list(orphans))


def diff(site: VmsFacts, allow: frozenset[str] = frozenset()):
    return storage_vms.diff(PLAN, site, IDENTITIES, allow)


def test_matching_site_has_no_changes():
    assert diff(facts(deployed_vm(NODES[0]), deployed_vm(NODES[1]))) == ([], [])


def test_missing_vm_is_created_from_the_template_with_every_device():
    changes, problems = diff(facts(None, deployed_vm(NODES[1])))
    assert problems == []
    [change] = changes
    assert (change.action, change.resource) == ("create", "vm vsa-node1")
    assert change.steps == ["clone", "reconfigure", "power_on"]
    ops = [device["op"] for device in change.params["devices"]]
    assert ops == ["add_controller", "add_disk", "add_disk", "add_disk", "remove_nic", "add_nic", "add_nic"]
    sizes = [device["size_kb"] for device in change.params["devices"] if device["op"] == "add_disk"]
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
    assert [d["op"] for d in changes[0].params["devices"]] == ["remove_disk", "add_disk"]


def test_unowned_vm_is_a_problem_and_never_a_change():
    vm = replace(deployed_vm(NODES[0]), extra={})
    changes, problems = diff(facts(vm, deployed_vm(NODES[1])))
    assert changes == []
    assert "is not ours (no vsa-orchestrate marker)" in problems[0].message


def test_cpu_change_on_a_running_vm_says_it_power_cycles():
    vm = replace(deployed_vm(NODES[1]), cpus=4)
    [change], _ = diff(facts(deployed_vm(NODES[0]), vm))
    assert change.steps == ["shutdown", "reconfigure", "power_on"]
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
OVA = storage_vms.OvaSource("/plans/vsa-appliance.ova", storage_vms.ova_fact(OVF))


def ova_facts(*vms: VmFact | None, ova: storage_vms.OvaSource | None = OVA, esxi: bool = False) -> VmsFacts:
    nodes = [NodeFacts(node=node, placement=PLACEMENT, vm=vm) for node, vm in zip(NODES, vms, strict=True)]
    return VmsFacts(nodes=nodes, folder_exists=True, template=None, orphans=[], ova=ova, esxi=esxi)


def ova_diff(site: VmsFacts):
    return storage_vms.diff(OVA_PLAN, site, IDENTITIES, frozenset())


def test_missing_vm_is_imported_from_the_ova_with_every_device():
    changes, problems = ova_diff(ova_facts(None, deployed_vm(NODES[1])))
    assert problems == []
    [change] = changes
    assert (change.action, change.resource) == ("create", "vm vsa-node1")
    assert change.steps == ["import", "reconfigure", "power_on"]
    assert change.params["ova"] == "/plans/vsa-appliance.ova"
    assert Attr("source", None, "ova /plans/vsa-appliance.ova") in change.attrs
    ops = [device["op"] for device in change.params["devices"]]
    assert ops == ["add_controller", "add_disk", "add_disk", "add_disk", "add_nic", "add_nic"]


def test_nodes_that_exist_need_no_ova():
    site = ova_facts(deployed_vm(NODES[0]), deployed_vm(NODES[1]), ova=None)
    assert not storage_vms.needs_source(OVA_PLAN, site)
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
    bad = storage_vms.OvaSource("/p/x.ova", None, "/p/x.ova: disk1.vmdk: SHA256 digest does not match")
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
    assert storage_vms.needs_source(OVA_PLAN, site)
    [change], problems = ova_diff(site)
    assert problems == []
    assert (change.action, change.resource) == ("replace", "vm vsa-node1")
    assert change.steps == ["destroy", "import", "reconfigure", "power_on"]
    assert change.params["replaces"] == "vm-node1-cut"
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
    assert edits.params["config"]["extraConfig"][MARKER_INCOMPLETE] == ""
    assert Attr(f"extraConfig {MARKER_INCOMPLETE}", "import", None) in edits.attrs
