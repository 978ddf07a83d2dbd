"""The iscsi diff as a pure function on plain facts, and its operations as data."""

import json

import pytest

from orchestrator.changes import Change
from orchestrator.operations import Executor, Operation, SecretRef, operation_from_json
from orchestrator.plan import ISCSI_PORT, load_plan
from orchestrator.stages.iscsi.diff import desired_options, diff
from orchestrator.stages.iscsi.facts import HostIscsi, SendTarget
from orchestrator.stages.iscsi.operations import (
    AddSendTarget,
    EnableSoftwareIscsi,
    Portal,
    RemoveSendTargets,
    RescanForLun,
    SetChap,
    SetTargetOptions,
)
from tests.unit.conftest import EXAMPLE_PLAN

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
