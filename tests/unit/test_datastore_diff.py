"""The datastore diff as a pure function on plain facts, and its operations as data."""

import json

from orchestrator.changes import Change
from orchestrator.operations import operation_from_json
from orchestrator.plan import Datastore, load_plan
from orchestrator.stages.datastore.diff import diff
from orchestrator.stages.datastore.facts import DatastoreFacts, DsHost, VmfsDatastore
from orchestrator.stages.datastore.operations import (
    CreateVmfs,
    MountOn,
    MountVmfs,
    RenameDatastore,
    RequireLun,
    RescanVmfs,
    WaitMounted,
)
from tests.unit.conftest import EXAMPLE_PLAN

PLAN = load_plan(EXAMPLE_PLAN)
RENAMING = PLAN.model_copy(update={"datastore": Datastore(name=PLAN.datastore.name, rename=True)})
NAA = "naa.6001405aaaabbbbccccdddd000011112"
NAMES = ("esx1", "esx2", "esx3")


def host(index: int, lun: str | None = NAA) -> DsHost:
    return DsHost(
        name=NAMES[index],
        host_id=f"host-{index}",
        storage_id=f"storageSystem-{index}",
        datastore_system_id=f"datastoreSystem-{index}",
        lun=lun,
    )


HOSTS = tuple(host(index) for index in range(3))
EVERYWHERE = {f"host-{index}": (True, True) for index in range(3)}


def ours(**changes) -> VmfsDatastore:
    ds = VmfsDatastore(
        id="datastore-9", name=PLAN.datastore.name, uuid="5f00-uuid", naa=NAA, mounts=EVERYWHERE
    )
    return VmfsDatastore(**{**ds.__dict__, **changes})


def only_change(facts: DatastoreFacts, plan=PLAN) -> Change:
    changes, problems = diff(plan, facts)
    assert problems == []
    [change] = changes
    return change


def test_our_datastore_mounted_everywhere_has_no_change():
    assert diff(PLAN, DatastoreFacts(HOSTS, (ours(),))) == ([], [])


def test_a_fresh_lun_is_formatted_on_one_host_and_the_others_rescan_until_mounted():
    change = only_change(DatastoreFacts(HOSTS, ()))
    assert (change.action, change.resource) == ("create", "datastore vsa-ds0")
    assert change.operations == (
        CreateVmfs(
            host="esx1",
            storage="storageSystem-0",
            datastore_system="datastoreSystem-0",
            naa=NAA,
            name="vsa-ds0",
            iqn=PLAN.iqn,
        ),
        RescanVmfs("esx2", "storageSystem-1"),
        RescanVmfs("esx3", "storageSystem-2"),
        WaitMounted("vsa-ds0", NAA, (MountOn("esx2", "host-1"), MountOn("esx3", "host-2")), datastore=None),
    )
    assert CreateVmfs.destructive and not RescanVmfs.destructive
    assert [(attr.name, attr.after) for attr in change.attrs] == [
        ("device", NAA),
        ("filesystem", "VMFS 6"),
        ("formatted on", "esx1"),
    ]


def test_the_first_host_that_sees_the_lun_formats_it():
    change = only_change(DatastoreFacts((host(0, lun=None), host(1), host(2, lun=None)), ()))
    create = change.operations[0]
    assert isinstance(create, CreateVmfs) and (create.host, create.storage) == ("esx2", "storageSystem-1")
    assert [type(op) for op in change.operations] == [CreateVmfs, RescanVmfs, RescanVmfs, WaitMounted]


def test_a_single_host_plan_formats_without_waiting_on_others():
    change = only_change(DatastoreFacts((host(0),), ()))
    assert [type(op) for op in change.operations] == [CreateVmfs]


def test_before_any_host_sees_the_lun_the_datastore_is_shown_pending_and_never_formatted():
    change = only_change(DatastoreFacts(tuple(host(index, lun=None) for index in range(3)), ()))
    assert change.operations == (RequireLun(PLAN.iqn),)
    assert change.attrs[0].after == f"the LUN of {PLAN.iqn}, once the iscsi stage makes it visible"
    assert change.attrs[2].after == "the first host that sees the LUN"


def test_a_datastore_of_our_name_while_the_lun_is_not_visible_is_left_alone():
    hidden = tuple(host(index, lun=None) for index in range(3))
    assert diff(PLAN, DatastoreFacts(hidden, (ours(),))) == ([], [])


def test_hosts_seeing_different_lun_ids_is_a_problem():
    other = "naa.6001405aaaabbbbccccdddd0000111ff"
    changes, problems = diff(PLAN, DatastoreFacts((host(0), host(1, lun=other)), ()))
    assert changes == []
    assert "hosts see different LUN ids" in problems[0].message and other in problems[0].message


def test_our_name_on_another_device_is_refused_never_formatted():
    changes, problems = diff(PLAN, DatastoreFacts(HOSTS, (ours(naa="naa.600140500000000000000000000000aa"),)))
    assert changes == []
    assert "changed the LUN's identity" in problems[0].message


def test_our_datastore_under_another_name_is_refused_unless_rename_is_set():
    renamed = ours(name="someone-renamed-it")
    changes, problems = diff(PLAN, DatastoreFacts(HOSTS, (renamed,)))
    assert changes == []
    assert "is named 'someone-renamed-it', the plan says 'vsa-ds0'" in problems[0].message
    change = only_change(DatastoreFacts(HOSTS, (renamed,)), plan=RENAMING)
    assert change.operations == (RenameDatastore("datastore-9", "vsa-ds0"),)
    assert [(attr.name, attr.before, attr.after) for attr in change.attrs] == [
        ("name", "someone-renamed-it", "vsa-ds0")
    ]


def test_an_unmounted_host_mounts_again_a_missing_or_inaccessible_one_rescans_then_all_are_awaited():
    mounts = {"host-0": (False, False), "host-1": (True, False)}  # host-2 never had it
    change = only_change(DatastoreFacts(HOSTS, (ours(mounts=mounts),)))
    assert change.action == "update"
    assert change.operations == (
        MountVmfs("esx1", "storageSystem-0", "5f00-uuid"),
        RescanVmfs("esx2", "storageSystem-1"),
        RescanVmfs("esx3", "storageSystem-2"),
        WaitMounted(
            "vsa-ds0",
            NAA,
            (MountOn("esx1", "host-0"), MountOn("esx2", "host-1"), MountOn("esx3", "host-2")),
            datastore="datastore-9",
        ),
    )
    assert [(attr.name, attr.before) for attr in change.attrs] == [
        ("on esx1", "not mounted"),
        ("on esx2", "mounted, inaccessible"),
        ("on esx3", "not mounted"),
    ]


def test_a_rename_comes_before_the_mounts():
    change = only_change(
        DatastoreFacts(HOSTS, (ours(name="old", mounts={"host-0": (True, True)}),)), plan=RENAMING
    )
    assert [type(op) for op in change.operations] == [RenameDatastore, RescanVmfs, RescanVmfs, WaitMounted]


def test_operations_round_trip_through_json():
    create = only_change(DatastoreFacts(HOSTS, ()))
    pending = only_change(DatastoreFacts(tuple(host(index, lun=None) for index in range(3)), ()))
    mounts = {"host-0": (False, False)}
    update = only_change(DatastoreFacts(HOSTS, (ours(name="old", mounts=mounts),)), plan=RENAMING)
    operations = [*create.operations, *pending.operations, *update.operations]
    assert {type(op) for op in operations} == {
        CreateVmfs,
        RescanVmfs,
        WaitMounted,
        RequireLun,
        RenameDatastore,
        MountVmfs,
    }
    for operation in operations:
        text = json.dumps(operation.as_json())
        assert operation_from_json(json.loads(text)) == operation
        assert operation.describe()
    assert json.loads(json.dumps(create.as_json()))["operations"][0]["op"] == "CreateVmfs"
