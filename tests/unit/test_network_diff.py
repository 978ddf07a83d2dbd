"""The `network` diff as a pure function: plan + each host's network facts -> changes and problems."""

import pytest

from orchestrator.changes import Change, Problem
from orchestrator.plan import Plan, load_plan
from orchestrator.stages.network.diff import created_portgroups, created_vmknics, diff
from orchestrator.stages.network.facts import (
    HostNetwork,
    NetworkFacts,
    PortgroupFact,
    VnicFact,
    VswitchFact,
)
from orchestrator.stages.network.operations import (
    AddPortgroup,
    AddVmknic,
    AddVswitch,
    SetPortgroupVlan,
    UpdateVmknic,
    UpdateVswitch,
)
from tests.unit.test_plan_network import with_network

ESX1 = "esx1.demo.local"
ESX3 = "esx3.demo.local"
SYSTEM = "networkSystem-1"
ISCSI = "VSA-iSCSI"
REPLICATION = "VSA-Replication"
DV_KEY = "dvportgroup-10"
OPT_IN = (
    'vswitch = "vSwitch1"\nuplinks = ["vmnic1", "vmnic2"]\nmtu = 9000\n'
    "iscsi_vlan = 55\nreplication_vlan = 22\n"
)
COMPUTE_HOST = f'\n[[hosts]]\nesxi = "{ESX3}"\nvmk_ip = "10.11.55.63"\n'

MGMT_VSWITCH = VswitchFact("vSwitch0", 1500, ("vmnic0",))
MGMT_PORTGROUP = PortgroupFact("Management Network", "vSwitch0", 0)
VMK0 = VnicFact("vmk0", "Management Network", None, "192.168.1.11", 24, 1500)


@pytest.fixture
def plan_with(plan_text, write_plan):
    """plans/two-node.toml with extra [network] keys (and extra text, e.g. hosts, at its end)."""

    def make(keys: str = "", extra: str = "") -> Plan:
        return load_plan(write_plan(with_network(plan_text, keys) + extra))

    return make


def fresh_host(name: str = ESX1, **fields) -> HostNetwork:
    """A host as installed: vSwitch0 with the management portgroup and vmk0, spare NICs."""
    host = HostNetwork(
        name=name,
        host_id="host-1",
        network_system=SYSTEM,
        pnics=("vmnic0", "vmnic1", "vmnic2", "vmnic3"),
        vswitches=(MGMT_VSWITCH,),
        portgroups=(MGMT_PORTGROUP,),
        vnics=(VMK0,),
    )
    return HostNetwork(**{**host.__dict__, **fields})


def planned_host(
    vswitch_mtu: int = 9000,
    uplinks: tuple[str, ...] = ("vmnic1", "vmnic2"),
    iscsi_vlan: int = 55,
    replication_vlan: int = 22,
    vmk1: VnicFact | None = None,
    **fields,
) -> HostNetwork:
    """esx1 exactly as the OPT_IN keys want it: vSwitch1, both portgroups and vmk1."""
    vmk1 = vmk1 or VnicFact("vmk1", ISCSI, None, "10.11.55.61", 8, 9000)
    host = fresh_host(
        vswitches=(MGMT_VSWITCH, VswitchFact("vSwitch1", vswitch_mtu, uplinks)),
        portgroups=(
            MGMT_PORTGROUP,
            PortgroupFact(ISCSI, "vSwitch1", iscsi_vlan),
            PortgroupFact(REPLICATION, "vSwitch1", replication_vlan),
        ),
        vnics=(VMK0, vmk1),
    )
    return HostNetwork(**{**host.__dict__, **fields})


def facts(*hosts: HostNetwork, distributed: dict[str, str] | None = None) -> NetworkFacts:
    return NetworkFacts(hosts=hosts, distributed=distributed or {})


def operations(changes: list[Change]) -> list:
    return [op for change in changes for op in change.operations]


def only_problem(result: tuple[list[Change], list[Problem]]) -> Problem:
    changes, problems = result
    assert changes == [], changes
    [problem] = problems
    return problem


# ---------------------------------------------------------------- a fresh host


def test_a_fresh_host_gets_the_vswitch_both_portgroups_and_the_vmknic(plan_with):
    changes, problems = diff(plan_with(OPT_IN), facts(fresh_host()))
    assert problems == []
    assert operations(changes) == [
        AddVswitch(ESX1, SYSTEM, name="vSwitch1", uplinks=("vmnic1", "vmnic2"), mtu=9000),
        AddPortgroup(ESX1, SYSTEM, name=ISCSI, vswitch="vSwitch1", vlan=55),
        AddPortgroup(ESX1, SYSTEM, name=REPLICATION, vswitch="vSwitch1", vlan=22),
        AddVmknic(ESX1, SYSTEM, portgroup=ISCSI, ip="10.11.55.61", prefix=8, mtu=9000),
    ]
    assert [change.action for change in changes] == ["create"] * 4
    assert all(len(change.operations) == 1 for change in changes)


def test_a_fresh_host_without_mtu_or_vlan_keys_gets_the_defaults(plan_with):
    plan = plan_with('vswitch = "vSwitch1"\nuplinks = ["vmnic1"]\n')
    changes, problems = diff(plan, facts(fresh_host()))
    assert problems == []
    assert operations(changes) == [
        AddVswitch(ESX1, SYSTEM, name="vSwitch1", uplinks=("vmnic1",), mtu=1500),
        AddPortgroup(ESX1, SYSTEM, name=ISCSI, vswitch="vSwitch1", vlan=0),
        AddPortgroup(ESX1, SYSTEM, name=REPLICATION, vswitch="vSwitch1", vlan=0),
        AddVmknic(ESX1, SYSTEM, portgroup=ISCSI, ip="10.11.55.61", prefix=8, mtu=None),
    ]


def test_a_hosts_own_uplinks_override_the_networks(plan_text, write_plan):
    text = with_network(plan_text, 'vswitch = "vSwitch1"\nuplinks = ["vmnic1", "vmnic2"]\n')
    text = text.replace('vmk_ip = "10.11.55.61"', 'vmk_ip = "10.11.55.61"\nuplinks = ["vmnic3"]')
    changes, _ = diff(load_plan(write_plan(text)), facts(fresh_host()))
    assert operations(changes)[0] == AddVswitch(ESX1, SYSTEM, name="vSwitch1", uplinks=("vmnic3",), mtu=1500)


def test_the_replication_portgroup_goes_only_on_hosts_with_a_storage_node(plan_with):
    plan = plan_with(OPT_IN, COMPUTE_HOST)
    changes, problems = diff(plan, facts(fresh_host(), fresh_host(ESX3)))
    assert problems == []
    added = [(op.host, op.name) for op in operations(changes) if isinstance(op, AddPortgroup)]
    assert added == [(ESX1, ISCSI), (ESX1, REPLICATION), (ESX3, ISCSI)]
    assert created_portgroups(changes) == {ESX1: {ISCSI, REPLICATION}, ESX3: {ISCSI}}
    esx3_vmknics = [op for op in operations(changes) if isinstance(op, AddVmknic) and op.host == ESX3]
    assert esx3_vmknics == [AddVmknic(ESX3, SYSTEM, portgroup=ISCSI, ip="10.11.55.63", prefix=8, mtu=9000)]


def test_a_host_with_neither_a_storage_node_nor_a_vmk_ip_is_left_alone(plan_with):
    plan = plan_with(OPT_IN, f'\n[[hosts]]\nesxi = "{ESX3}"\n')
    assert diff(plan, facts(fresh_host(ESX3))) == ([], [])


def test_a_host_without_a_network_system_is_a_problem(plan_with):
    problem = only_problem(diff(plan_with(OPT_IN), facts(fresh_host(network_system=None))))
    assert problem.resource == f"host {ESX1} network" and "no network system" in problem.message


# ---------------------------------------------------------------- adopted and healed


def test_a_host_as_planned_has_no_change(plan_with):
    assert diff(plan_with(OPT_IN), facts(planned_host())) == ([], [])


def test_existing_portgroups_are_adopted_and_a_planned_vlan_healed(plan_with):
    changes, problems = diff(plan_with(OPT_IN), facts(planned_host(iscsi_vlan=10)))
    assert problems == []
    assert operations(changes) == [SetPortgroupVlan(ESX1, SYSTEM, name=ISCSI, vlan=55)]
    assert created_portgroups(changes) == {}


def test_a_portgroups_vlan_is_left_as_it_is_when_the_plan_sets_none(plan_with):
    keys = 'vswitch = "vSwitch1"\nuplinks = ["vmnic1", "vmnic2"]\nmtu = 9000\n'
    plan = plan_with(keys)
    assert diff(plan, facts(planned_host(iscsi_vlan=10, replication_vlan=7))) == ([], [])


def test_existing_portgroups_on_another_vswitch_are_adopted_not_created(plan_with):
    host = planned_host(
        portgroups=(
            MGMT_PORTGROUP,
            PortgroupFact(ISCSI, "vSwitch0", 0),
            PortgroupFact(REPLICATION, "vSwitch0", 0),
        ),
        vmk1=VnicFact("vmk1", ISCSI, None, "10.11.55.61", 8, None),
    )
    plan = plan_with('vswitch = "vSwitch1"\nuplinks = ["vmnic1", "vmnic2"]\n')
    assert diff(plan, facts(host)) == ([], [])


def test_a_re_addressed_vmknic_is_updated_in_place(plan_with):
    host = planned_host(vmk1=VnicFact("vmk1", ISCSI, None, "10.11.55.99", 16, 9000))
    changes, problems = diff(plan_with(OPT_IN), facts(host))
    assert problems == []
    assert operations(changes) == [
        UpdateVmknic(ESX1, SYSTEM, device="vmk1", portgroup=ISCSI, ip="10.11.55.61", prefix=8, mtu=None)
    ]
    assert [(a.name, a.before, a.after) for a in changes[0].attrs] == [
        ("address", "10.11.55.99/16", "10.11.55.61/8")
    ]
    assert created_vmknics(changes) == {ESX1: "10.11.55.61/8"}


def test_a_dhcp_vmknic_gets_the_planned_address(plan_with):
    host = planned_host(vmk1=VnicFact("vmk1", ISCSI, None, None, None, 9000))
    changes, _ = diff(plan_with(OPT_IN), facts(host))
    assert operations(changes) == [
        UpdateVmknic(ESX1, SYSTEM, device="vmk1", portgroup=ISCSI, ip="10.11.55.61", prefix=8, mtu=None)
    ]
    assert changes[0].attrs[0].before == "dhcp"


def test_a_vmknic_mtu_drift_is_updated_without_re_addressing(plan_with):
    host = planned_host(vmk1=VnicFact("vmk1", ISCSI, None, "10.11.55.61", 8, 1500))
    changes, problems = diff(plan_with(OPT_IN), facts(host))
    assert problems == []
    assert operations(changes) == [
        UpdateVmknic(ESX1, SYSTEM, device="vmk1", portgroup=ISCSI, ip=None, prefix=8, mtu=9000)
    ]
    assert created_vmknics(changes) == {}  # same address: nothing new for the iscsi stage


def test_a_vswitch_mtu_drift_is_healed(plan_with):
    changes, problems = diff(plan_with(OPT_IN), facts(planned_host(vswitch_mtu=1500)))
    assert problems == []
    assert operations(changes) == [UpdateVswitch(ESX1, SYSTEM, name="vSwitch1", mtu=9000, add_uplinks=())]


def test_a_missing_uplink_is_added_and_an_extra_one_never_removed(plan_with):
    changes, problems = diff(plan_with(OPT_IN), facts(planned_host(uplinks=("vmnic1", "vmnic3"))))
    assert problems == []
    assert operations(changes) == [
        UpdateVswitch(ESX1, SYSTEM, name="vSwitch1", mtu=None, add_uplinks=("vmnic2",))
    ]
    [uplinks] = changes[0].attrs
    assert (uplinks.before, uplinks.after) == ("vmnic1, vmnic3", "vmnic1, vmnic3, vmnic2")


def test_an_extra_uplink_alone_is_no_change(plan_with):
    host = planned_host(uplinks=("vmnic1", "vmnic2", "vmnic3"))
    assert diff(plan_with(OPT_IN), facts(host)) == ([], [])


def test_an_uplink_the_host_lacks_is_a_problem_and_nothing_is_created_on_the_vswitch(plan_with):
    plan = plan_with('vswitch = "vSwitch1"\nuplinks = ["vmnic7"]\n')
    changes, problems = diff(plan, facts(fresh_host()))
    assert not [op for op in operations(changes) if isinstance(op, AddVswitch | AddPortgroup)]
    [problem] = problems
    assert problem.resource == f"host {ESX1} vswitch vSwitch1"
    assert "has no physical NIC vmnic7" in problem.message and "fix network.uplinks" in problem.message


def test_an_uplink_serving_another_vswitch_is_a_problem(plan_with):
    plan = plan_with('vswitch = "vSwitch1"\nuplinks = ["vmnic0"]\n')
    _, problems = diff(plan, facts(fresh_host()))
    assert [p.message for p in problems] == [
        "vmnic0 (on vSwitch0) already serve another vSwitch; name free uplinks in network.uplinks"
    ]


def test_foreign_portgroups_and_vmknics_on_the_same_vswitch_are_not_touched(plan_with):
    host = planned_host()
    host = HostNetwork(
        **{
            **host.__dict__,
            "portgroups": (*host.portgroups, PortgroupFact("vMotion", "vSwitch1", 99)),
            "vnics": (*host.vnics, VnicFact("vmk2", "vMotion", None, "10.20.0.5", 24, 1500)),
        }
    )
    assert diff(plan_with(OPT_IN), facts(host)) == ([], [])


def test_an_address_taken_by_a_foreign_vmknic_is_a_problem(plan_with):
    host = fresh_host(vnics=(VMK0, VnicFact("vmk2", "vMotion", None, "10.11.55.61", 8, 1500)))
    changes, problems = diff(plan_with(OPT_IN), facts(host))
    assert not [op for op in operations(changes) if isinstance(op, AddVmknic | UpdateVmknic)]
    [problem] = problems
    assert "10.11.55.61 is already the address of vmk2 on vMotion" in problem.message
    assert "hosts[0].vmk_ip" in problem.message


# ---------------------------------------------------------------- vmk0, never changed


def test_vmk0_on_the_iscsi_portgroup_with_the_planned_address_is_adopted(plan_with):
    vmk0 = VnicFact("vmk0", ISCSI, None, "10.11.55.61", 8, 1500)
    host = fresh_host(
        portgroups=(PortgroupFact(ISCSI, "vSwitch0", 0), PortgroupFact(REPLICATION, "vSwitch0", 0)),
        vnics=(vmk0,),
    )
    plan = plan_with("")
    assert diff(plan, facts(host)) == ([], [])


@pytest.mark.parametrize(
    ("keys", "vmk0"),
    [
        ("", VnicFact("vmk0", ISCSI, None, "10.11.55.10", 8, 1500)),  # re-address
        ("mtu = 9000\n", VnicFact("vmk0", ISCSI, None, "10.11.55.61", 8, 1500)),  # MTU
    ],
    ids=["address", "mtu"],
)
def test_a_plan_that_would_change_vmk0_is_a_problem_not_a_change(plan_with, keys, vmk0):
    host = fresh_host(
        vswitches=(VswitchFact("vSwitch0", 9000, ("vmnic0",)),),
        portgroups=(PortgroupFact(ISCSI, "vSwitch0", 0), PortgroupFact(REPLICATION, "vSwitch0", 0)),
        vnics=(vmk0,),
    )
    problem = only_problem(diff(plan_with(keys), facts(host)))
    assert problem.resource == f"host {ESX1} vmknic on {ISCSI}"
    assert "vmk0 is the management VMkernel port and is never changed" in problem.message


# ---------------------------------------------------------------- distributed portgroups


def dv_host(vnics: tuple[VnicFact, ...]) -> HostNetwork:
    """esx1 with the iSCSI portgroup distributed and the replication one standard, as planned."""
    return planned_host(
        portgroups=(MGMT_PORTGROUP, PortgroupFact(REPLICATION, "vSwitch1", 22)),
        vnics=(VMK0, *vnics),
    )


DV_VMK1 = VnicFact("vmk1", "", DV_KEY, "10.11.55.61", 8, 9000)


def test_a_distributed_portgroup_with_its_vmknic_is_used_as_it_is(plan_with):
    plan = plan_with(OPT_IN.replace("iscsi_vlan = 55\n", ""))
    assert diff(plan, facts(dv_host((DV_VMK1,)), distributed={ISCSI: DV_KEY})) == ([], [])


def test_a_vlan_key_on_a_distributed_portgroup_is_a_problem(plan_with):
    changes, problems = diff(plan_with(OPT_IN), facts(dv_host((DV_VMK1,)), distributed={ISCSI: DV_KEY}))
    assert changes == []
    [problem] = problems
    assert problem.resource == f"host {ESX1} portgroup {ISCSI}"
    assert "is a distributed portgroup" in problem.message and "remove network.iscsi_vlan" in problem.message


def test_a_missing_vmknic_on_a_distributed_portgroup_is_a_problem_not_a_change(plan_with):
    plan = plan_with(OPT_IN.replace("iscsi_vlan = 55\n", ""))
    changes, problems = diff(plan, facts(dv_host(()), distributed={ISCSI: DV_KEY}))
    assert changes == []  # no AddPortgroup and no AddVmknic on the distributed switch
    [problem] = problems
    assert problem.resource == f"host {ESX1} vmknic on {ISCSI}"
    assert "has no VMkernel port on the distributed portgroup" in problem.message


def test_a_readdressed_vmknic_on_a_distributed_portgroup_is_a_problem_not_a_change(plan_with):
    plan = plan_with(OPT_IN.replace("iscsi_vlan = 55\n", ""))
    moved = VnicFact("vmk1", "", DV_KEY, "10.11.55.99", 8, 9000)
    changes, problems = diff(plan, facts(dv_host((moved,)), distributed={ISCSI: DV_KEY}))
    assert changes == []  # no UpdateVmknic on the distributed switch
    [problem] = problems
    assert problem.resource == f"host {ESX1} vmknic on {ISCSI}"
    assert "vmk1 is on a distributed portgroup" in problem.message
    assert "address to 10.11.55.61/8 in vCenter" in problem.message


def test_a_standard_vmknic_of_the_same_name_does_not_count_for_a_distributed_portgroup(plan_with):
    plan = plan_with(OPT_IN.replace("iscsi_vlan = 55\n", ""))
    standard = VnicFact("vmk1", ISCSI, None, "10.11.55.61", 8, 9000)
    changes, problems = diff(plan, facts(dv_host((standard,)), distributed={ISCSI: DV_KEY}))
    assert changes == []
    assert [p.resource for p in problems] == [f"host {ESX1} vmknic on {ISCSI}"]


# ---------------------------------------------------------------- no opt-in keys


def test_without_opt_in_keys_existing_portgroups_and_vmknic_give_no_change(plan_with):
    host = fresh_host(
        portgroups=(
            MGMT_PORTGROUP,
            PortgroupFact(ISCSI, "vSwitch0", 12),
            PortgroupFact(REPLICATION, "vSwitch0", 0),
        ),
        vnics=(VMK0, VnicFact("vmk1", ISCSI, None, "10.11.55.61", 8, 1500)),
    )
    assert diff(plan_with(""), facts(host)) == ([], [])


def test_without_opt_in_keys_a_missing_portgroup_is_a_problem_naming_network_vswitch(plan_with):
    host = fresh_host(
        portgroups=(MGMT_PORTGROUP, PortgroupFact(ISCSI, "vSwitch0", 0)),
        vnics=(VMK0, VnicFact("vmk1", ISCSI, None, "10.11.55.61", 8, 1500)),
    )
    changes, problems = diff(plan_with(""), facts(host))
    assert changes == []
    [problem] = problems
    assert problem.resource == f"host {ESX1} portgroup {REPLICATION}"
    assert "set network.vswitch" in problem.message


# ---------------------------------------------------------------- helpers for later stages


def test_created_helpers_report_what_a_fresh_host_gets(plan_with):
    changes, _ = diff(plan_with(OPT_IN), facts(fresh_host()))
    assert created_portgroups(changes) == {ESX1: {ISCSI, REPLICATION}}
    assert created_vmknics(changes) == {ESX1: "10.11.55.61/8"}


def test_created_helpers_are_empty_when_nothing_is_made(plan_with):
    changes, _ = diff(plan_with(OPT_IN), facts(planned_host(vswitch_mtu=1500, iscsi_vlan=10)))
    assert changes  # an UpdateVswitch and a SetPortgroupVlan, neither creates anything
    assert created_portgroups(changes) == {} and created_vmknics(changes) == {}
