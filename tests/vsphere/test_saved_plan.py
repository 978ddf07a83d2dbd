"""Saved plans against the simulated vCenter: `--dry-run --out FILE` then
`vsa-orchestrate apply FILE` applies exactly what was saved, and refuses (nothing
applied) when the site or the plan changed since."""

import json
import os
from pathlib import Path

import pytest
from pyVmomi import vim

from orchestrator.cli import main
from tests.vsphere.conftest import VSPHERE_STAGES, Site, vsa

HOST = "esx2.lab.local"
VIP = "10.11.55.50"


def save(site: Site, out: Path, capsys) -> str:
    assert vsa(site.plan, "--dry-run", "--out", out) == 2
    return capsys.readouterr().out


def apply_saved(out: Path, *args: str) -> int:
    return main(["apply", str(out), *args])


@pytest.fixture
def deployed(site: Site, capsys) -> Site:
    assert vsa(site.plan, "--yes") == 0
    capsys.readouterr()
    return site


def test_a_saved_plan_is_applied_exactly_and_holds_no_secret(site: Site, tmp_path: Path, capsys):
    out = tmp_path / "site.plan.json"
    shown = save(site, out, capsys)
    assert f"Saved the plan to {out}" in shown
    assert os.stat(out).st_mode & 0o777 == 0o600
    document = json.loads(out.read_text())
    assert document["only"] == VSPHERE_STAGES.split(",")
    stages = {change["stage"] for change in document["changes"]}
    assert {"iscsi", "datastore", "cluster"} <= stages
    assert all(change["basis"] for change in document["changes"])
    assert any(op["op"] == "AddSendTarget" for change in document["changes"] for op in change["operations"])
    assert site.info.password not in out.read_text()

    site.info.reset_calls()
    assert apply_saved(out, "--yes") == 0
    applied = capsys.readouterr()
    assert "the site matches the plan" in applied.out, applied.err
    assert site.tasks_since_reset()  # it did apply
    assert vsa(site.plan, "--dry-run") == 0  # and what it applied is the whole plan


def test_a_saved_plan_whose_site_changed_is_refused_and_nothing_applied(
    deployed: Site, tmp_path: Path, capsys
):
    site = deployed
    storage = site.host(HOST).configManager.storageSystem
    storage.UpdateSoftwareInternetScsiEnabled(False)
    out = tmp_path / "site.plan.json"
    save(site, out, capsys)
    storage.UpdateSoftwareInternetScsiEnabled(True)  # the site moves on: someone half fixed it by hand
    device = storage.storageDeviceInfo.hostBusAdapter
    hba = next(hba for hba in device if isinstance(hba, vim.host.InternetScsiHba) and hba.isSoftwareBased)
    storage.RemoveInternetScsiSendTargets(
        hba.device, [vim.host.InternetScsiHba.SendTarget(address=VIP, port=3260)]
    )
    site.host("esx3.lab.local").configManager.storageSystem.UpdateSoftwareInternetScsiEnabled(False)
    site.info.reset_calls()
    assert apply_saved(out, "--yes") == 1
    err = capsys.readouterr().err
    assert f"error: host {HOST} iscsi: decided on facts that changed since the plan was saved" in err
    assert "error: host esx3.lab.local iscsi: a change the saved plan does not hold" in err
    assert "Nothing was changed: the site changed since" in err
    assert site.tasks_since_reset() == {}
    storage.UpdateSoftwareInternetScsiEnabled(False)
    assert apply_saved(out, "--yes") == 1  # back as saved, but esx3 still differs
    assert f"error: host {HOST} iscsi:" not in capsys.readouterr().err


def test_a_saved_plan_of_a_plan_file_edited_since_is_refused(site: Site, tmp_path: Path, capsys):
    out = tmp_path / "site.plan.json"
    save(site, out, capsys)
    site.plan.write_text(site.plan.read_text() + "\n# edited\n")
    site.info.reset_calls()
    assert apply_saved(out, "--yes") == 1
    err = capsys.readouterr().err
    assert f"error: {out}: the plan file {site.plan.resolve()} changed since this plan was saved" in err
    assert site.tasks_since_reset() == {}


def test_out_without_dry_run_and_a_file_that_is_no_plan_are_one_line_errors(
    site: Site, tmp_path: Path, capsys
):
    assert vsa(site.plan, "--out", tmp_path / "x.json") == 1
    assert "error: --out saves a plan without applying it: use it with --dry-run" in capsys.readouterr().err
    bogus = tmp_path / "bogus.json"
    bogus.write_text("{}")
    assert apply_saved(bogus) == 1
    assert f"error: {bogus}: not a saved plan of this version" in capsys.readouterr().err
