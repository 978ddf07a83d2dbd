"""CLI behaviours around a run (stage selection, JSON result, the run log). The lab
commands need the lab namespace and real VMs: tests/lab/test_end_to_end.py."""

import json
import os

from tests.vsphere.conftest import Site, vsa


def test_unknown_stage_is_a_usage_error(site: Site, capsys):
    try:
        vsa(site.plan, "--only", "vms,storage")
    except SystemExit as exit:
        assert exit.code == 2
    assert "unknown stage(s) storage" in capsys.readouterr().err


def test_json_apply_reports_what_was_applied(site: Site, capsys):
    assert vsa(site.plan, "--yes", "--json") == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["exit_code"] == 0
    assert [change["resource"] for change in payload["applied"]] == [
        "host esx1.lab.local vmknic on VSA-iSCSI",
        "host esx2.lab.local vmknic on VSA-iSCSI",
        "host esx3.lab.local vmknic on VSA-iSCSI",
        "vm vsa-node1",
        "vm vsa-node2",
        "host esx1.lab.local autostart",
        "host esx2.lab.local autostart",
        "host esx1.lab.local iscsi",
        "host esx2.lab.local iscsi",
        "host esx3.lab.local iscsi",
        "datastore vsa-ds0",
        "cluster vsa-cluster",
    ]


def test_run_log_has_every_task_and_no_secret(site: Site, capsys):
    assert vsa(site.plan, "--yes") == 0
    log = (site.plan.with_name("lab.toml.state") / "run.log").read_text()
    for task in ("reconfigure vm vsa-node2", "power on vm vsa-node1"):
        assert f"started: {task}" in log
    assert "vm vsa-node1: imported " in log and "import lease" in log
    assert site.info.password not in log
    assert "PRIVATE KEY" not in log
    assert "PRIVATE KEY" not in capsys.readouterr().out
    assert oct(os.stat(site.plan.with_name("lab.toml.state") / "run.log").st_mode & 0o777) == "0o600"


def test_nodes_the_vms_stage_starts_are_pending_any_other_silent_node_is_an_error(site: Site, capsys):
    """The lab subnets are blackholed outside the lab namespace, so no node answers here."""
    assert vsa(site.plan, "--dry-run", "--only", "vms,guest") == 2
    shown = capsys.readouterr().out
    assert "+ node node1" in shown and "once the VM answers on SSH" in shown
    assert vsa(site.plan, "--yes", "--only", "vms") == 0
    capsys.readouterr()
    assert vsa(site.plan, "--dry-run", "--only", "vms,guest") == 1
    assert "node1 (10.11.55.55): cannot open SSH" in capsys.readouterr().err
