"""The iscsi diff as a pure function on plain facts, and its operations as data."""

import json

import pytest

from orchestrator.changes import Change
from orchestrator.logs import Redactor
from orchestrator.operations import Executor, Operation, SecretRef, operation_from_json
from orchestrator.plan import ISCSI_PORT, load_plan
from orchestrator.progress import Reporter
from orchestrator.stages.contract import RunContext
from orchestrator.stages.iscsi.diff import desired_options, diff
from orchestrator.stages.iscsi.facts import HostIscsi, SendTarget
from orchestrator.stages.iscsi.operations import (
    AddSendTarget,
    BindVnic,
    EnableSoftwareIscsi,
    Portal,
    RemoveSendTargets,
    RescanForLun,
    SetChap,
    SetTargetOptions,
)
from orchestrator.stages.iscsi.stage import IscsiStage
from orchestrator.stages.network.facts import HostNetwork, VnicFact
from orchestrator.state import StateDir
from tests.unit.conftest import EXAMPLE_PLAN
from tests.unit.test_plan_network import with_network

PLAN = load_plan(EXAMPLE_PLAN)
VIP = Portal(str(PLAN.network.vip), ISCSI_PORT)
NAA = "naa.6001405aaaabbbbccccdddd000011112"


def configured(**changes) -> HostIscsi:
    """A host exactly as the plan wants it."""
    ours = SendTarget(
        address=VIP.address,
        port=VIP.port,
        chap_type="chapRequired",
        chap_name=PLAN.chap_name,
        options=desired_options(PLAN),
    )
    host = HostIscsi(
        name="esx1",
        host_id="host-1",
        storage_id="storageSystem-1",
        enabled=True,
        adapter="vmhba65",
        send_targets=(ours,),
        our_portals=frozenset({str(VIP)}),
        lun=NAA,
    )
    return HostIscsi(**{**host.__dict__, **changes})


def only_change(hosts: list[HostIscsi]) -> Change:
    changes, problems = diff(PLAN, hosts)
    assert problems == []
    [change] = changes
    return change


def kinds(change: Change) -> list[type]:
    return [type(operation) for operation in change.operations]


def test_a_host_as_planned_has_no_change():
    assert diff(PLAN, [configured()]) == ([], [])


def test_a_fresh_host_is_enabled_given_the_target_chap_options_then_rescanned():
    change = only_change(
        [configured(enabled=False, adapter=None, send_targets=(), our_portals=frozenset(), lun=None)]
    )
    assert kinds(change) == [EnableSoftwareIscsi, AddSendTarget, SetChap, SetTargetOptions, RescanForLun]
    assert all(operation.adapter is None for operation in change.operations)  # found once enabled
    chap = change.operations[2]
    assert isinstance(chap, SetChap) and chap.name == PLAN.chap_name and chap.secret == SecretRef("chap")
    assert change.operations[1] == AddSendTarget("esx1", "storageSystem-1", None, VIP)


def test_a_stale_portal_of_ours_is_removed_and_a_foreign_one_kept():
    stale = SendTarget("10.0.0.9", ISCSI_PORT, "chapRequired", PLAN.chap_name, desired_options(PLAN))
    foreign = SendTarget("10.0.0.8", ISCSI_PORT, None, None)
    host = configured(
        send_targets=(*configured().send_targets, stale, foreign),
        our_portals=frozenset({str(VIP), stale.portal}),
    )
    change = only_change([host])
    assert change.operations == (
        RemoveSendTargets("esx1", "storageSystem-1", "vmhba65", (Portal("10.0.0.9", ISCSI_PORT),)),
        RescanForLun("esx1", "storageSystem-1", "vmhba65", VIP, PLAN.iqn),
    )


def test_a_missing_lun_pushes_the_chap_secret_again_before_the_rescan():
    change = only_change([configured(lun=None)])
    assert kinds(change) == [SetChap, RescanForLun]


def test_a_drifted_timeout_sets_every_option():
    options = {**desired_options(PLAN), "LoginTimeout": 99}
    ours = configured().send_targets[0]
    change = only_change([configured(send_targets=(SendTarget(**{**ours.__dict__, "options": options}),))])
    assert kinds(change) == [SetTargetOptions, RescanForLun]
    assert dict(change.operations[0].options) == desired_options(PLAN)


def test_a_host_without_a_storage_system_is_a_problem_not_a_change():
    changes, problems = diff(PLAN, [configured(storage_id=None)])
    assert changes == [] and "no storage system" in problems[0].message


def test_operations_round_trip_through_json_and_hold_no_secret():
    change = only_change([configured(enabled=False, adapter=None, send_targets=(), lun=None)])
    for operation in change.operations:
        text = json.dumps(operation.as_json())
        assert operation_from_json(json.loads(text)) == operation
        assert operation.describe()
    assert PLAN.chap_name in json.dumps(change.as_json())  # the name is not secret; the value is only a ref
    assert '"secret": {"name": "chap"}' in json.dumps([op.as_json() for op in change.operations])


def test_a_malformed_or_unknown_operation_is_refused():
    with pytest.raises(ValueError, match="unknown operation 'Format'"):
        operation_from_json({"op": "Format"})
    with pytest.raises(ValueError, match="operation AddSendTarget"):
        operation_from_json({"op": "AddSendTarget", "host": "esx1"})


def test_an_executor_runs_only_operations_of_its_side_it_has_a_handler_for():
    executor: Executor[list[Operation]] = Executor("vsphere")
    with pytest.raises(TypeError, match="no vsphere handler for AddSendTarget"):
        executor.run(AddSendTarget("esx1", "s", None, VIP), [])
    ran: list[Operation] = []
    executor.handles(AddSendTarget)(lambda operation, seen: seen.append(operation))
    executor.run(AddSendTarget("esx1", "s", None, VIP), ran)
    assert ran == [AddSendTarget("esx1", "s", None, VIP)]
    node_side: Executor[None] = Executor("node")
    with pytest.raises(TypeError, match="acts on vsphere, not node"):
        node_side.handles(AddSendTarget)


# ---------------------------------------------------------------- reachability and port binding

ESX1, ESX2 = (entry.esxi for entry in PLAN.hosts)
VMK0 = VnicFact("vmk0", "Management Network", None, "192.168.1.11", 24, 1500)
VMK1 = VnicFact("vmk1", PLAN.network.iscsi_portgroup, None, "10.11.55.61", 8, 9000)


def on_network(*vnics: VnicFact, name: str = ESX1) -> HostNetwork:
    return HostNetwork(name=name, host_id="host-1", network_system="networkSystem-1", vnics=vnics)


def fresh(name: str = ESX1, *vnics: VnicFact, **changes) -> HostIscsi:
    """A planned host whose adapter is not enabled yet, with these vmknics."""
    return configured(
        name=name,
        enabled=False,
        adapter=None,
        send_targets=(),
        our_portals=frozenset(),
        lun=None,
        network=on_network(*vnics, name=name),
        iscsi_manager="iscsiManager-1",
        **changes,
    )


def test_a_host_without_a_vmknic_in_the_vips_subnet_is_one_problem_naming_its_vmk_ip_key():
    changes, problems = diff(PLAN, [fresh(ESX2, VMK0)])
    assert changes == []
    [problem] = problems
    assert problem.resource == f"host {ESX2} iscsi"
    assert "has no VMkernel port in 10.0.0.0/8 (the VIP's subnet)" in problem.message
    assert 'add hosts[1].vmk_ip = "<a free address in 10.0.0.0/8>"' in problem.message


def test_an_unreachable_host_does_not_hide_a_reachable_ones_change():
    changes, problems = diff(PLAN, [fresh(ESX1, VMK0, VMK1), fresh(ESX2, VMK0)])
    assert [change.resource for change in changes] == [f"host {ESX1} iscsi"]
    assert [problem.resource for problem in problems] == [f"host {ESX2} iscsi"]


def test_a_vmknic_the_network_stage_makes_in_this_run_makes_the_host_reachable():
    changes, problems = diff(PLAN, [fresh(ESX1, VMK0)], {ESX1: "10.11.55.61/8"})
    assert problems == []
    [change] = changes
    assert AddSendTarget(ESX1, "storageSystem-1", None, VIP) in change.operations


def test_a_pending_vmknic_outside_the_vips_subnet_does_not_count():
    _, problems = diff(PLAN, [fresh(ESX1, VMK0)], {ESX1: "192.168.7.5/24"})
    assert [problem.resource for problem in problems] == [f"host {ESX1} iscsi"]


def test_the_stage_passes_the_run_contexts_pending_vmknics(tmp_path):
    ctx = RunContext(
        plan=PLAN,
        session=None,
        state=StateDir(tmp_path / "state", persist=True),
        reporter=Reporter(None),
        allow_destroy=frozenset(),
        redactor=Redactor(),
    )
    host = fresh(ESX1, VMK0)
    assert len(IscsiStage().diff(ctx, [host])[1]) == 1
    ctx.pending_vmknics = {ESX1: "10.11.55.61/8"}
    changes, problems = IscsiStage().diff(ctx, [host])
    assert problems == [] and len(changes) == 1


def test_a_host_with_our_send_target_is_not_refused_for_reachability():
    host = configured(name=ESX1, network=on_network(VMK0))
    assert diff(PLAN, [host]) == ([], [])


def test_a_host_with_a_vmknic_in_the_vips_subnet_is_reachable():
    changes, problems = diff(PLAN, [fresh(ESX1, VMK0, VMK1)])
    assert problems == [] and len(changes) == 1


def only_change_of(plan, host: HostIscsi) -> Change:
    changes, problems = diff(plan, [host])
    assert problems == []
    [change] = changes
    return change


@pytest.fixture
def bind_plan(plan_text, write_plan):
    return load_plan(write_plan(with_network(plan_text, "bind = true\n")))


def test_bind_binds_the_vmknic_right_after_enabling_the_adapter(bind_plan):
    [change], problems = diff(bind_plan, [fresh(ESX1, VMK0, VMK1)])
    assert problems == []
    assert kinds(change)[:3] == [EnableSoftwareIscsi, BindVnic, AddSendTarget]
    assert change.operations[1] == BindVnic(
        ESX1,
        "storageSystem-1",
        None,
        iscsi_manager="iscsiManager-1",
        network_system="networkSystem-1",
        portgroup=PLAN.network.iscsi_portgroup,
        vnic="vmk1",
    )


def test_bind_of_a_vmknic_made_in_this_run_names_its_portgroup(bind_plan):
    [change], _ = diff(bind_plan, [fresh(ESX1, VMK0)], {ESX1: "10.11.55.61/8"})
    [bind] = [op for op in change.operations if isinstance(op, BindVnic)]
    assert bind.vnic is None and bind.portgroup == PLAN.network.iscsi_portgroup


def test_bind_on_an_enabled_adapter_whose_vmknic_is_not_bound(bind_plan):
    host = configured(name=ESX1, network=on_network(VMK0, VMK1), iscsi_manager="iscsiManager-1", bound=())
    change = only_change_of(bind_plan, host)
    assert kinds(change) == [BindVnic, RescanForLun]
    assert change.operations[0].adapter == "vmhba65" and change.operations[0].vnic == "vmk1"


def test_bind_gives_no_operation_when_the_vmknic_is_already_bound(bind_plan):
    host = configured(
        name=ESX1, network=on_network(VMK0, VMK1), iscsi_manager="iscsiManager-1", bound=("vmk1",)
    )
    assert diff(bind_plan, [host]) == ([], [])


def test_without_bind_no_vmknic_is_bound():
    [change], _ = diff(PLAN, [fresh(ESX1, VMK0, VMK1)])
    assert BindVnic not in kinds(change)


def test_bind_finds_an_already_bound_vmknic_on_a_distributed_portgroup(bind_plan):
    on_dv = VnicFact("vmk1", "", "dvportgroup-10", "10.11.55.61", 8, 9000)
    host = configured(
        name=ESX1,
        network=on_network(VMK0, on_dv),
        iscsi_manager="iscsiManager-1",
        bound=("vmk1",),
        iscsi_dv_key="dvportgroup-10",
    )
    assert diff(bind_plan, [host]) == ([], [])
