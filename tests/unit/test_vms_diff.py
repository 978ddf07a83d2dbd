"""The `vms` diff is pure: plan + facts -> changes and problems, tested without a server."""

import json
from dataclasses import replace

from rich.console import Console

from orchestrator.changes import render_text
from orchestrator.identity import nic_mac, node_identity
from orchestrator.plan import load_plan
from orchestrator.state import new_ed25519_key
from orchestrator.vsphere import storage_vms
from orchestrator.vsphere.storage_vms import KB_PER_GB, NodeFacts, Placement, VmsFacts
from orchestrator.vsphere.vm_facts import DiskFact, NicFact, VmFact
from tests.unit.conftest import EXAMPLE_PLAN

PLAN = load_plan(EXAMPLE_PLAN)
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
