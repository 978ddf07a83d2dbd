"""The appliance's vsa-target script (orchestrator/guest/files/vsa-target) on a directory
shaped like LIO's configfs: what `status` accepts as running, and how the APTPL
registrations LIO saved go back into a new backstore. The real configfs is
exercised by every lab test that serves the LUN."""

import importlib.machinery
import importlib.util
import json
import os
import shutil
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "orchestrator/guest/files/vsa-target"
IQN = "iqn.2024-01.lab.vsa:lun0"
SPEC = {
    "iqn": IQN,
    "device": "/dev/drbd1",
    "serial": "5f1c0a",
    "chap": {"userid": "site", "password": "s3cret"},
}
# Two registrations as LIO writes them (core_scsi3_update_aptpl_buf), the first holding the reservation.
APTPL = """PR_REG_START: 0
initiator_fabric=iSCSI
initiator_node=iqn.1998-01.com.vmware:esx1
sa_res_key=11
res_holder=1
res_type=05
mapped_lun=0
target_lun=0
PR_REG_END: 0
PR_REG_START: 1
initiator_fabric=iSCSI
initiator_node=iqn.1998-01.com.vmware:esx2
sa_res_key=22
res_holder=0
mapped_lun=0
target_lun=0
PR_REG_END: 1
"""


@pytest.fixture
def script(tmp_path: Path) -> ModuleType:
    loader = importlib.machinery.SourceFileLoader("vsa_target", str(SCRIPT))
    spec = importlib.util.spec_from_loader("vsa_target", loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    module.CONFIGFS = str(tmp_path / "target")
    module.STORAGE = f"{module.CONFIGFS}/core/iblock_0/vsa-lun0"
    module.DEFINITION = str(tmp_path / "vsa-target.json")
    module.RESERVATIONS = str(tmp_path / "lio/pr")
    Path(module.DEFINITION).write_text(json.dumps(SPEC))
    return module


def running_tree(script: ModuleType) -> Path:
    """A target as `start` leaves it: backstore with device and serial, an enabled TPG with LUN 0
    linked to it (beside the attribute files configfs puts there) and CHAP set."""
    storage = Path(script.STORAGE)
    (storage / "wwn").mkdir(parents=True)
    (storage / "udev_path").write_text("/dev/drbd1\n")
    (storage / "wwn/vpd_unit_serial").write_text("T10 VPD Unit Serial Number: 5f1c0a\n")
    tpg = Path(script.tpg_path(IQN))
    for folder in ("lun/lun_0/statistics", "attrib", "auth"):
        (tpg / folder).mkdir(parents=True)
    (tpg / "lun/lun_0/alua_tg_pt_gp").write_text("default_tg_pt_gp\n")
    (tpg / "lun/lun_0/vsa-lun0").symlink_to(storage)
    (tpg / "enable").write_text("1\n")
    (tpg / "attrib/authentication").write_text("1\n")
    (tpg / "auth/userid").write_text("site\n")
    (tpg / "auth/password").write_text("s3cret\n")
    return tpg


def test_status_accepts_the_target_as_defined(script: ModuleType) -> None:
    running_tree(script)
    assert script.running()


@pytest.mark.parametrize(
    ("file", "value"),
    [
        ("tpg:enable", "0"),
        ("tpg:auth/password", "old"),
        ("tpg:attrib/authentication", "0"),
        ("storage:udev_path", "/dev/drbd0"),
        ("storage:wwn/vpd_unit_serial", "T10 VPD Unit Serial Number: 000000"),
    ],
)
def test_status_refuses_a_target_that_differs_from_its_definition(
    script: ModuleType, file: str, value: str
) -> None:
    tpg = running_tree(script)
    where, _, name = file.partition(":")
    (tpg if where == "tpg" else Path(script.STORAGE)).joinpath(name).write_text(value + "\n")
    assert not script.running()


def test_status_without_the_config_volume_or_the_lun_is_stopped(script: ModuleType) -> None:
    tpg = running_tree(script)
    (tpg / "lun/lun_0/vsa-lun0").unlink()
    assert not script.running()
    Path(script.DEFINITION).unlink()
    assert not script.running()


def test_saved_registrations_go_back_one_line_each_with_res_type_in_decimal(
    script: ModuleType, monkeypatch
) -> None:
    Path(script.RESERVATIONS).mkdir(parents=True)
    Path(script.RESERVATIONS, "aptpl_5f1c0a").write_text(APTPL.replace("res_type=05", "res_type=08"))
    written: list[tuple[str, str]] = []
    monkeypatch.setattr(script, "write", lambda path, value: written.append((path, value)))
    assert script.restore_reservations("5f1c0a") == [
        "iqn.1998-01.com.vmware:esx1",
        "iqn.1998-01.com.vmware:esx2",
    ]
    metadata = f"{script.STORAGE}/pr/res_aptpl_metadata"
    assert written == [
        (
            metadata,
            "initiator_fabric=iSCSI,initiator_node=iqn.1998-01.com.vmware:esx1,sa_res_key=11,"
            "res_holder=1,res_type=8,mapped_lun=0,target_lun=0",  # "08" would be bad octal
        ),
        (
            metadata,
            "initiator_fabric=iSCSI,initiator_node=iqn.1998-01.com.vmware:esx2,sa_res_key=22,"
            "res_holder=0,mapped_lun=0,target_lun=0",
        ),
    ]


def test_a_registration_the_kernel_refuses_is_skipped_and_the_rest_restored(
    script: ModuleType, monkeypatch
) -> None:
    Path(script.RESERVATIONS).mkdir(parents=True)
    Path(script.RESERVATIONS, "aptpl_5f1c0a").write_text(APTPL)

    def write(path: str, value: str) -> None:
        if "esx1" in value:
            raise OSError(22, "Invalid argument")

    monkeypatch.setattr(script, "write", write)
    assert script.restore_reservations("5f1c0a") == ["iqn.1998-01.com.vmware:esx2"]


def acl_tree(script: ModuleType, *initiators: str) -> Path:
    """The TPG with LUN 0 exported, and the folders configfs makes with each ACL (auth/)."""
    tpg = Path(script.tpg_path(IQN))
    (tpg / "lun/lun_0").mkdir(parents=True)
    for initiator in initiators:
        (tpg / "acls" / initiator / "auth").mkdir(parents=True)
    return tpg


def test_each_registered_initiator_gets_an_acl_mapping_lun_0_with_the_chap(script: ModuleType) -> None:
    tpg = acl_tree(script, "iqn.1998-01.com.vmware:esx1")
    script.map_lun_for(str(tpg), ["iqn.1998-01.com.vmware:esx1"], SPEC["chap"])
    acl = tpg / "acls/iqn.1998-01.com.vmware:esx1"
    assert os.readlink(acl / "lun_0/vsa-lun0") == str(tpg / "lun/lun_0")
    assert ((acl / "auth/userid").read_text(), (acl / "auth/password").read_text()) == ("site", "s3cret")


def test_an_acl_that_cannot_be_completed_is_removed_so_the_initiator_still_logs_in(
    script: ModuleType,
) -> None:
    tpg = acl_tree(script)  # no auth/ folder: writing the CHAP fails
    (tpg / "acls").mkdir()
    script.map_lun_for(str(tpg), ["iqn.1998-01.com.vmware:esx1"], SPEC["chap"])
    assert list((tpg / "acls").iterdir()) == []


def test_stop_removes_the_acls_before_the_lun_they_map(script: ModuleType, monkeypatch) -> None:
    """configfs refuses (EBUSY) to remove a TPG LUN an ACL's mapped LUN still links to: a stop
    that failed there left vsa-serve FAILED and blocked on the node (found in the lab)."""
    tpg = running_tree(script)
    (tpg / "np/0.0.0.0:3260").mkdir(parents=True)
    acl = tpg / "acls/iqn.1998-01.com.vmware:esx1"
    (acl / "lun_0").mkdir(parents=True)
    (acl / "lun_0/vsa-lun0").symlink_to(tpg / "lun/lun_0")

    class Configfs:
        """The script's os, with rmdir as configfs has it: a link target cannot go while
        linked, and a group goes with its attribute files."""

        def __getattr__(self, name: str):
            return getattr(os, name)

        def rmdir(self, path: str) -> None:
            linked = [link for link in (tpg / "acls").glob("*/lun_*/*") if link.is_symlink()]
            if any(os.path.realpath(link) == os.path.realpath(path) for link in linked):
                raise OSError(16, "Device or resource busy", path)
            shutil.rmtree(path)

    monkeypatch.setattr(script, "os", Configfs())
    script.stop()
    assert not tpg.parent.exists()


def test_no_saved_registrations_write_nothing(script: ModuleType, monkeypatch) -> None:
    written: list[str] = []
    monkeypatch.setattr(script, "write", lambda path, value: written.append(path))
    script.restore_reservations("5f1c0a")
    assert written == []
