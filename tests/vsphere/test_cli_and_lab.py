"""CLI behaviours around a run (stage selection, JSON result, the run log) and the lab commands."""

import json
import os
import socket

from orchestrator.cli import main
from tests.vsphere.conftest import VSPHERE_STAGES, Site, vsa


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
    for task in ("clone vm vsa-node1", "reconfigure vm vsa-node2", "power on vm vsa-node1"):
        assert f"started: {task}" in log
    assert site.info.password not in log
    assert "PRIVATE KEY" not in log
    assert "PRIVATE KEY" not in capsys.readouterr().out
    assert oct(os.stat(site.plan.with_name("lab.toml.state") / "run.log").st_mode & 0o777) == "0o600"


def listening_ports(pid: int) -> bool:
    """Whether a process still exists (a stopped lab leaves none)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().split()[2] != "Z"


def test_lab_up_twice_is_harmless_and_down_stops_everything(tmp_path, capsys, _simulator_available):
    lab = tmp_path / "lab"
    assert main(["lab", "up", "--dir", str(lab)]) == 0
    first = (lab / "lab.toml").read_text()
    pid = int((lab / "sim.pid").read_text())
    port = json.loads((lab / "sim.json").read_text())["port"]
    try:
        assert main(["lab", "up", "--dir", str(lab)]) == 0
        assert (lab / "lab.toml").read_text() == first
        assert int((lab / "sim.pid").read_text()) == pid
        assert main([str(lab / "lab.toml"), "--yes", "--only", VSPHERE_STAGES]) == 0
        assert main(["lab", "status", "--dir", str(lab)]) == 0
    finally:
        assert main(["lab", "down", "--dir", str(lab)]) == 0
    assert not listening_ports(pid)
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0
    assert main(["lab", "status", "--dir", str(lab)]) == 2
    capsys.readouterr()
