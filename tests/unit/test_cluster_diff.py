"""The cluster diff as a pure function on plain facts, and its operations as data."""

import json
from dataclasses import replace

from orchestrator.changes import Change
from orchestrator.operations import operation_from_json
from orchestrator.plan import Cluster, load_plan
from orchestrator.stages.cluster.diff import diff
from orchestrator.stages.cluster.facts import HB_OPTION, ClusterFacts, HostPlace
from orchestrator.stages.cluster.operations import (
    DAS_OVERRIDE,
    DRS_OVERRIDE,
    ClusterHost,
    ClusterRef,
    ConfigureHa,
    CreateCluster,
    DasOverride,
    DasSettings,
    DrsOverride,
    DrsSettings,
    MoveHostsIntoCluster,
    SetVmOverrides,
)
from tests.unit.conftest import EXAMPLE_PLAN

PLAN = load_plan(EXAMPLE_PLAN)
NO_HA = PLAN.model_copy(update={"cluster": Cluster(name="vsa-cluster", ha=False)})
VMS = {"vm-1": PLAN.vm_name("node1"), "vm-2": PLAN.vm_name("node2")}
HOSTS = tuple(HostPlace(entry.esxi, f"host-{i}", "domain-c7") for i, entry in enumerate(PLAN.hosts))
CLUSTER = ClusterRef(name="vsa-cluster", folder="group-h4", id="domain-c7")
NEW = replace(CLUSTER, id=None)


def configured(**changes) -> ClusterFacts:
    """The cluster exactly as the plan wants it."""
    facts = ClusterFacts(
        cluster_id="domain-c7",
        folder="group-h4",
        ha_enabled=True,
        host_monitoring="enabled",
        options={HB_OPTION: "true"},
        das_overrides={vm: DAS_OVERRIDE for vm in VMS},
        hosts=HOSTS,
        storage_vms=VMS,
        clusters={"domain-c7": "vsa-cluster"},
    )
    return replace(facts, **changes)


def standalone(hosts: tuple[HostPlace, ...] = HOSTS) -> tuple[HostPlace, ...]:
    return tuple(replace(host, parent=f"domain-s{i}") for i, host in enumerate(hosts))


def absent() -> ClusterFacts:
    """No cluster yet; the hosts standalone, the storage VMs made by the vms stage."""
    return ClusterFacts(cluster_id=None, folder="group-h4", hosts=standalone(), storage_vms=VMS)


def only_change(facts: ClusterFacts, plan=PLAN) -> Change:
    changes, problems = diff(plan, facts)
    assert problems == []
    [change] = changes
    return change


def test_a_cluster_as_planned_has_no_change():
    assert diff(PLAN, configured()) == ([], [])


def test_a_new_cluster_is_created_with_ha_the_hosts_moved_in_and_the_overrides_added():
    change = only_change(absent())
    assert (change.action, change.resource) == ("create", "cluster vsa-cluster")
    assert change.operations == (
        CreateCluster(NEW, ha=True),
        MoveHostsIntoCluster(NEW, tuple(ClusterHost(host.name, host.host_id) for host in HOSTS)),
        SetVmOverrides(
            NEW,
            das=(
                DasOverride("vm-1", VMS["vm-1"], "add", DAS_OVERRIDE),
                DasOverride("vm-2", VMS["vm-2"], "add", DAS_OVERRIDE),
            ),
            drs=(),
        ),
    )
    shown = {(attr.name, attr.before, attr.after) for attr in change.attrs}
    assert ("ha", None, True) in shown and (HB_OPTION, None, "true") in shown
    assert (f"HA override {VMS['vm-1']}", None, "highest, none, vmMonitoringDisabled") in shown


def test_a_new_cluster_before_the_storage_vms_exist_says_their_overrides_follow():
    change = only_change(replace(absent(), storage_vms={}))
    assert [type(op) for op in change.operations] == [CreateCluster, MoveHostsIntoCluster]
    assert change.attrs[-1].name == "HA overrides" and "once created" in change.attrs[-1].after


def test_only_the_standalone_host_is_moved_and_nothing_else_is_reconfigured():
    moved_out = (*HOSTS[:-1], replace(HOSTS[-1], parent="domain-s9"))
    change = only_change(configured(hosts=moved_out))
    last = ClusterHost(HOSTS[-1].name, HOSTS[-1].host_id)
    assert change.operations == (MoveHostsIntoCluster(CLUSTER, (last,)),)
    assert [(attr.name, attr.after) for attr in change.attrs] == [("hosts", HOSTS[-1].name)]


def test_a_host_in_another_cluster_is_refused():
    elsewhere = (*HOSTS[:-1], replace(HOSTS[-1], parent="domain-c99"))
    changes, problems = diff(PLAN, configured(hosts=elsewhere, clusters={"domain-c99": "theirs"}))
    assert changes == []
    assert f"host {HOSTS[-1].name} is in another cluster (theirs)" in problems[0].message


def test_a_host_missing_from_the_inventory_is_not_moved():
    missing = (*HOSTS[:-1], HostPlace(HOSTS[-1].name, None, None))
    assert diff(PLAN, configured(hosts=missing)) == ([], [])


def test_ha_turned_off_is_configured_again_then_a_removed_override_is_added():
    change = only_change(configured(ha_enabled=False, das_overrides={"vm-2": DAS_OVERRIDE}))
    assert change.operations == (
        ConfigureHa(CLUSTER, ha=True),
        SetVmOverrides(CLUSTER, das=(DasOverride("vm-1", VMS["vm-1"], "add", DAS_OVERRIDE),), drs=()),
    )
    assert (change.attrs[0].name, change.attrs[0].before, change.attrs[0].after) == ("ha", False, True)


def test_a_drifted_override_is_edited_and_a_missing_hb_option_configures_ha():
    drifted = DasSettings("medium", "powerOff", "vmMonitoringOnly")
    change = only_change(configured(options={}, das_overrides={"vm-1": drifted, "vm-2": DAS_OVERRIDE}))
    assert change.operations == (
        ConfigureHa(CLUSTER, ha=True),
        SetVmOverrides(CLUSTER, das=(DasOverride("vm-1", VMS["vm-1"], "edit", DAS_OVERRIDE),), drs=()),
    )
    assert (f"HA override {VMS['vm-1']}", "medium, powerOff, vmMonitoringOnly") in {
        (attr.name, attr.before) for attr in change.attrs
    }


def test_with_drs_on_the_storage_vms_get_drs_overrides():
    manual = DrsSettings(True, "fullyAutomated")
    change = only_change(configured(drs_enabled=True, drs_overrides={"vm-2": manual}))
    assert change.operations == (
        SetVmOverrides(
            CLUSTER,
            das=(),
            drs=(
                DrsOverride("vm-1", VMS["vm-1"], "add", DRS_OVERRIDE),
                DrsOverride("vm-2", VMS["vm-2"], "edit", DRS_OVERRIDE),
            ),
        ),
    )
    assert (f"DRS override {VMS['vm-1']}", None, "False, manual") in {
        (attr.name, attr.before, attr.after) for attr in change.attrs
    }


def test_ha_off_in_the_plan_turns_it_off_and_asks_for_no_ha_override():
    change = only_change(configured(), plan=NO_HA)
    assert change.operations == (ConfigureHa(CLUSTER, ha=False),)
    assert diff(NO_HA, configured(ha_enabled=False, das_overrides={})) == ([], [])


def test_operations_round_trip_through_json():
    created = only_change(absent())
    drifted = only_change(configured(ha_enabled=False, drs_enabled=True, das_overrides={}))
    operations = [*created.operations, *drifted.operations]
    assert {type(op) for op in operations} == {
        CreateCluster,
        MoveHostsIntoCluster,
        SetVmOverrides,
        ConfigureHa,
    }
    for operation in operations:
        text = json.dumps(operation.as_json())
        assert operation_from_json(json.loads(text)) == operation
        assert operation.describe()
    [*_, overrides] = json.loads(json.dumps(created.as_json()))["operations"]
    assert overrides["das"][0]["settings"]["restart_priority"] == "highest"
