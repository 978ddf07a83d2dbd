"""The `vms` stage against the simulated vCenter: create, no-op rerun, refusals."""

import base64
import json

from pyVmomi import vim

from tests.vsphere.conftest import Site, vsa

GB_KB = 1024 * 1024
NODES = {"node1": ("esx1.lab.local", "esx1-local"), "node2": ("esx2.lab.local", "esx2-local")}


def inventory_state(site: Site) -> list[tuple]:
    """Every VM with what a change could touch: placement, power, hardware, extraConfig."""
    state = []
    for name in site.vm_names():
        vm = site.vm(name)
        config = vm.config
        devices = sorted(
            (type(d).__name__, d.key, getattr(d.backing, "fileName", None), getattr(d, "capacityInKB", None))
            for d in config.hardware.device
        )
        extra = sorted((opt.key, opt.value) for opt in config.extraConfig or [])
        state.append(
            (
                name,
                vm.runtime.host.name,
                vm.runtime.powerState,
                config.hardware.numCPU,
                config.hardware.memoryMB,
                devices,
                extra,
            )
        )
    return state


def test_dry_run_on_empty_site_lists_every_vm_and_disk_and_changes_nothing(site: Site, capsys):
    before = inventory_state(site)
    site.info.reset_calls()

    assert vsa(site.plan, "--dry-run") == 2

    out = capsys.readouterr().out
    for node, (host, datastore) in NODES.items():
        assert f"+ vm vsa-{node}" in out
        assert f"+ host: {host}" in out
        for role, size in (("meta", 1), ("config", 1), ("data", 4)):
            assert f"{size} GB ([{datastore}] vsa-{node}/vsa-{node}_{role}.vmdk)" in out
    assert "guestinfo.userdata: (sensitive value)" in out
    assert site.tasks_since_reset() == {}
    assert inventory_state(site) == before


def test_dry_run_json_is_machine_readable_and_redacted(site: Site, capsys):
    assert vsa(site.plan, "--dry-run", "--json") == 2
    payload = json.loads(capsys.readouterr().out)
    assert payload["exit_code"] == 2
    resources = [change["resource"] for change in payload["changes"]]
    assert resources[3:5] == ["vm vsa-node1", "vm vsa-node2"]
    stages = {change["stage"] for change in payload["changes"]}
    assert stages == {"network", "vms", "iscsi", "datastore", "cluster"}
    userdata = [
        attr
        for change in payload["changes"]
        for attr in change["attributes"]
        if attr["name"].endswith("userdata")
    ]
    assert userdata and all(attr["after"] == "(sensitive value)" for attr in userdata)
    assert "PRIVATE KEY" not in json.dumps(payload)


def test_apply_creates_exactly_the_plan(site: Site, capsys):
    template_before = inventory_state(site)

    assert vsa(site.plan, "--yes") == 0

    assert site.vm_names() == ["vsa-appliance", "vsa-node1", "vsa-node2"]
    assert [row for row in inventory_state(site) if row[0] == "vsa-appliance"] == template_before
    for node, (host, datastore) in NODES.items():
        vm = site.vm(f"vsa-{node}")
        assert vm.runtime.host.name == host
        assert (vm.parent.parent.name, vm.parent.name) == ("vsa-orchestrate", "vsa")
        assert vm.runtime.powerState == "poweredOn"
        assert vm.resourcePool == vm.runtime.host.parent.resourcePool
        assert (vm.config.hardware.numCPU, vm.config.hardware.memoryMB) == (1, 1024)
        devices = vm.config.hardware.device
        pvscsi = [
            d for d in devices if isinstance(d, vim.vm.device.ParaVirtualSCSIController) and d.busNumber == 1
        ]
        assert len(pvscsi) == 1
        disks = {
            d.unitNumber: (d.backing.fileName, d.capacityInKB)
            for d in devices
            if isinstance(d, vim.vm.device.VirtualDisk) and d.controllerKey == pvscsi[0].key
        }
        assert disks == {
            unit: (f"[{datastore}] vsa-{node}/vsa-{node}_{role}.vmdk", size * GB_KB)
            for unit, (role, size) in enumerate((("meta", 1), ("config", 1), ("data", 4)))
        }
        files = site.datastore_files(datastore, f"vsa-{node}")
        assert {f"vsa-{node}_{role}.vmdk" for role in ("meta", "config", "data")} <= files
        nics = sorted(
            (d for d in devices if isinstance(d, vim.vm.device.VirtualEthernetCard)), key=lambda d: d.key
        )
        assert [(type(n).__name__, n.backing.deviceName) for n in nics] == [
            ("vim.vm.device.VirtualVmxnet3", "VSA-iSCSI"),
            ("vim.vm.device.VirtualVmxnet3", "VSA-Replication"),
        ]
        extra = {opt.key: opt.value for opt in vm.config.extraConfig}
        assert extra["vsa-orchestrate.plan"] == "vsa"
        assert extra["disk.EnableUUID"] == "TRUE"
        metadata = json.loads(base64.b64decode(extra["guestinfo.metadata"]))
        assert metadata["local-hostname"] == node
        eth0 = metadata["network"]["ethernets"]["eth0"]
        assert eth0["match"]["macaddress"] == nics[0].macAddress
        userdata = base64.b64decode(extra["guestinfo.userdata"]).decode()
        assert userdata.startswith("#cloud-config\n")
        cloud_config = json.loads(userdata.removeprefix("#cloud-config\n"))
        admin_key = (site.plan.parent / "id_ed25519.pub").read_text().strip()
        assert cloud_config["ssh_authorized_keys"] == [admin_key]
        pinned = site.plan.with_name("lab.toml.state") / "hostkeys" / f"{node}_ssh_host_ed25519_key.pub"
        assert cloud_config["ssh_keys"]["ed25519_public"] == pinned.read_text().strip()
        assert (pinned.stat().st_mode & 0o777) == 0o600
    assert "the site matches the plan" in capsys.readouterr().out


def test_second_run_changes_nothing_and_runs_no_task(site: Site, capsys):
    assert vsa(site.plan, "--yes") == 0
    capsys.readouterr()
    site.info.reset_calls()

    assert vsa(site.plan, "--yes") == 0
    assert vsa(site.plan, "--dry-run") == 0

    assert site.tasks_since_reset() == {}
    assert "No changes" in capsys.readouterr().out


def test_unowned_vm_with_the_planned_name_is_refused_and_untouched(site: Site, capsys):
    squatter = site.clone_template("vsa-node1", "esx1.lab.local", "esx1-local", "vsa-orchestrate/vsa")
    before = inventory_state(site)
    site.info.reset_calls()

    assert vsa(site.plan, "--yes") == 1

    captured = capsys.readouterr()
    out = captured.err
    assert "vm vsa-node1: a VM with this name exists but is not ours" in out
    assert "error:" not in captured.out
    assert "Nothing was changed: 1 problem(s) to fix first." in out
    assert site.tasks_since_reset() == {}
    assert inventory_state(site) == before
    assert squatter.config.extraConfig is None or all(
        opt.key != "vsa-orchestrate.plan" for opt in squatter.config.extraConfig
    )


def test_without_terminal_and_without_yes_it_refuses(site: Site, capsys):
    assert vsa(site.plan) == 1
    assert "no terminal" in capsys.readouterr().err
    assert site.vm_names() == ["vsa-appliance"]


def test_same_named_vm_outside_our_folder_is_left_alone(site: Site, capsys):
    other = site.clone_template("vsa-node2", "esx3.lab.local", "esx3-local", "someone-else")
    other_before = [row for row in inventory_state(site) if row[0] == "vsa-node2"]

    assert vsa(site.plan, "--yes") == 0

    assert other.runtime.host.name == "esx3.lab.local"
    assert other.parent.name == "someone-else"
    ours = [row for row in inventory_state(site) if row[0] == "vsa-node2"]
    assert len(ours) == 2 and other_before[0] in ours
