"""The `vms` stage's OVA source against the simulator, on vCenter and on an ESXi
host: the import (CreateImportSpec, ImportVApp, the NFC upload, Complete), the
disk that lands, interruptions, a corrupt OVA, and the template source beside it."""

import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import requests
from pyVmomi import vim, vmodl

from orchestrator.plan import load_plan
from orchestrator.vsphere import nfc_lease, ova_package
from orchestrator.vsphere.session import Trust, VSphereError, connect
from orchestrator.vsphere.vm_facts import MARKER_INCOMPLETE, MARKER_NODE, MARKER_PLAN
from tests.vsphere.conftest import Site, running_site, vsa
from tests.vsphere.small_ova import VMDK, SmallOva, corrupt_copy, sha256

NODES = {"node1": ("esx1.lab.local", "esx1-local"), "node2": ("esx2.lab.local", "esx2-local")}
IMPORT_CALLS = ("CreateImportSpec", "ImportVApp", "NfcUpload", "HttpNfcLeaseComplete")


def os_disk_file(site: Site, datastore: str, vm: str) -> Path:
    """The flat extent the upload landed in, on the simulator's datastore folder."""
    return site.sim_dir / "datastores" / datastore / vm / f"{vm}-flat.vmdk"


def methods(site: Site) -> dict[str, int]:
    return site.info.calls()["methods"]


def assert_imported(
    site: Site, small_ova: SmallOva, folder: tuple[str, str] = ("vsa-orchestrate", "vsa")
) -> None:
    calls = methods(site)
    assert {name: calls.get(name, 0) for name in IMPORT_CALLS} == dict.fromkeys(IMPORT_CALLS, 2)
    assert calls.get("HttpNfcLeaseProgress", 0) >= 2  # keep-alives, at least one per disk sent
    assert "CloneVM_Task" not in calls and "HttpNfcLeaseAbort" not in calls
    for node, (host, datastore) in NODES.items():
        name = f"vsa-{node}"
        vm = site.vm(name)
        assert vm.runtime.host.name == host and vm.runtime.powerState == "poweredOn"
        assert (vm.parent.parent.name, vm.parent.name) == folder
        extra = {opt.key: opt.value for opt in vm.config.extraConfig}
        assert (extra[MARKER_PLAN], extra[MARKER_NODE]) == ("vsa", node)
        assert MARKER_INCOMPLETE not in extra and extra["disk.EnableUUID"] == "TRUE"
        buses = {
            d.key: d.busNumber
            for d in vm.config.hardware.device
            if isinstance(d, vim.vm.device.ParaVirtualSCSIController)
        }
        disks = {
            (buses[d.controllerKey], d.unitNumber): d.backing.fileName
            for d in vm.config.hardware.device
            if isinstance(d, vim.vm.device.VirtualDisk)
        }
        assert disks[(0, 0)] == f"[{datastore}] {name}/{name}.vmdk"
        assert sorted(disks) == [(0, 0), (1, 0), (1, 1), (1, 2)]
        nics = [d for d in vm.config.hardware.device if isinstance(d, vim.vm.device.VirtualVmxnet3)]
        assert [nic.backing.deviceName for nic in nics] == ["VSA-iSCSI", "VSA-Replication"]
        # The uploaded streamOptimized VMDK landed as the VM's OS disk, byte for byte.
        landed = os_disk_file(site, datastore, name)
        assert landed.stat().st_size == small_ova.raw.stat().st_size
        assert sha256(landed) == small_ova.raw_sha256


def test_import_on_vcenter_lands_the_os_disk_and_a_rerun_is_a_noop(site: Site, small_ova: SmallOva, capsys):
    site.info.reset_calls()
    assert vsa(site.plan, "--yes", "--only", "vms") == 0
    assert f"source: ova {small_ova.path}" in capsys.readouterr().out
    assert_imported(site, small_ova)
    assert site.vm_names() == ["vsa-appliance", "vsa-node1", "vsa-node2"]  # the template untouched

    site.info.reset_calls()
    assert vsa(site.plan, "--yes") == 0  # every stage, on the imported nodes
    site.info.reset_calls()
    assert vsa(site.plan, "--yes") == 0
    assert "No changes" in capsys.readouterr().out
    assert site.tasks_since_reset() == {}
    assert not set(IMPORT_CALLS) & set(methods(site))


def test_import_on_an_esxi_host_and_esxi_cannot_clone(esxi_site: Site, small_ova: SmallOva, capsys):
    site = esxi_site
    assert site.content.about.apiType == "HostAgent"
    site.info.reset_calls()
    assert vsa(site.plan, "--yes", "--only", "vms") == 0
    # ESXi has no VM folders: ours live in the host's root VM folder, found there on the rerun.
    assert_imported(site, small_ova, folder=("DC0", "vm"))
    assert "CreateFolder" not in methods(site)
    site.info.reset_calls()
    assert vsa(site.plan, "--yes", "--only", "vms") == 0
    assert site.tasks_since_reset() == {}

    with pytest.raises(vmodl.fault.NotSupported):
        site.vm_folder("elsewhere")
    with pytest.raises(vmodl.fault.NotSupported):
        site.clone_template("someone", "esx3.lab.local", "esx3-local", "")


def test_a_template_plan_against_esxi_is_refused_before_any_change(esxi_site: Site, small_ova, capsys):
    site = esxi_site
    site.edit_plan(f'source = {{ ova = "{small_ova.path}" }}', 'source = { template = "vsa-appliance" }')
    site.info.reset_calls()
    assert vsa(site.plan, "--yes") == 1
    captured = capsys.readouterr()
    errors = [line for line in captured.err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "cannot clone a template" in errors[0] and "{ ova =" in errors[0]
    assert "Traceback" not in captured.err
    assert site.tasks_since_reset() == {}
    assert site.vm_names() == ["vsa-appliance"]


def test_a_corrupt_ova_is_refused_before_anything_is_uploaded(
    site: Site, small_ova: SmallOva, tmp_path, capsys
):
    bad = corrupt_copy(small_ova.path, tmp_path / "corrupt.ova")
    site.edit_plan(str(small_ova.path), str(bad))
    site.info.reset_calls()
    assert vsa(site.plan, "--yes") == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1
    assert str(bad) in errors[0] and f"{VMDK}: SHA256 digest does not match the manifest" in errors[0]
    calls = methods(site)
    assert not {"CreateImportSpec", "ImportVApp", "NfcUpload", "CreateFolder"} & set(calls)
    assert site.tasks_since_reset() == {}
    assert site.vm_names() == ["vsa-appliance"]


def cut_after_first_chunk(error: BaseException):
    """OvaPackage.read that hands out one chunk of a disk, then fails like `error`."""
    real = ova_package.OvaPackage.read

    def read(self, name: str) -> Iterator[bytes]:
        chunks = real(self, name)
        yield next(chunks)[: 64 * 1024]
        raise error

    return read


@pytest.mark.parametrize("error", [KeyboardInterrupt(), OSError(5, "Input/output error")])
def test_an_interrupted_upload_aborts_the_lease_and_leaves_nothing(
    site: Site, small_ova: SmallOva, monkeypatch, capsys, error
):
    monkeypatch.setattr(ova_package.OvaPackage, "read", cut_after_first_chunk(error))
    site.info.reset_calls()
    assert vsa(site.plan, "--yes", "--only", "vms") == 1
    captured = capsys.readouterr()
    errors = [line for line in captured.err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "vm vsa-node1" in errors[0] and "Traceback" not in captured.err
    calls = methods(site)
    assert calls.get("HttpNfcLeaseAbort") == 1 and "HttpNfcLeaseComplete" not in calls
    # vSphere removed the VM it was importing: nothing half-made is left.
    assert site.vm_names() == ["vsa-appliance"]
    assert not (site.sim_dir / "datastores" / "esx1-local" / "vsa-node1").exists()

    monkeypatch.undo()
    assert vsa(site.plan, "--yes", "--only", "vms") == 0
    site.info.reset_calls()
    assert vsa(site.plan, "--yes", "--only", "vms") == 0
    assert site.tasks_since_reset() == {}
    assert sha256(os_disk_file(site, "esx1-local", "vsa-node1")) == small_ova.raw_sha256


def test_an_import_left_unfinished_is_recognised_and_replaced(
    site: Site, small_ova: SmallOva, monkeypatch, capsys
):
    """A run killed mid-upload (no abort reached vSphere) leaves a VM marked incomplete."""
    monkeypatch.setattr(ova_package.OvaPackage, "read", cut_after_first_chunk(OSError(5, "I/O error")))
    monkeypatch.setattr(nfc_lease, "abort", lambda lease, resource: None)
    assert vsa(site.plan, "--yes", "--only", "vms") == 1
    left = site.vm("vsa-node1")
    assert {opt.key: opt.value for opt in left.config.extraConfig}[MARKER_INCOMPLETE] == "import"
    monkeypatch.undo()
    capsys.readouterr()

    assert vsa(site.plan, "--dry-run", "--only", "vms") == 2
    out = capsys.readouterr().out
    assert "-/+ vm vsa-node1" in out and "did not finish" in out
    site.info.reset_calls()
    assert vsa(site.plan, "--yes", "--only", "vms") == 0
    assert methods(site).get("Destroy_Task") == 1
    assert site.vm("vsa-node1")._moId != left._moId
    site.info.reset_calls()
    assert vsa(site.plan, "--yes", "--only", "vms") == 0
    assert site.tasks_since_reset() == {}


def test_the_template_source_still_clones(site: Site, small_ova: SmallOva):
    site.edit_plan(f'source = {{ ova = "{small_ova.path}" }}', 'source = { template = "vsa-appliance" }')
    site.info.reset_calls()
    assert vsa(site.plan, "--yes", "--only", "vms") == 0
    calls = methods(site)
    assert calls.get("CloneVM_Task") == 2 and "ImportVApp" not in calls
    site.info.reset_calls()
    assert vsa(site.plan, "--yes", "--only", "vms") == 0
    assert site.tasks_since_reset() == {}


# The simulator's lease on its own (what vSphere does, which the client relies on)


@pytest.fixture
def short_lease_site(tmp_path: Path, _simulator_available: None, small_ova: SmallOva) -> Iterator[Site]:
    yield from running_site(
        tmp_path, "VirtualCenter", ova=small_ova.path, sim_args=["-nfc-lease-timeout", "1"]
    )


def start_import(site: Site, small_ova: SmallOva, name: str) -> vim.HttpNfcLease:
    package = ova_package.open_verified(small_ova.path)
    host = site.host("esx3.lab.local")
    pool = host.parent.resourcePool
    params = vim.OvfManager.CreateImportSpecParams(entityName=name, diskProvisioning="thin")
    result = site.content.ovfManager.CreateImportSpec(
        package.descriptor, pool, site.datastore("esx3-local"), params
    )
    assert not result.error
    lease = pool.ImportVApp(result.importSpec, site.vm_folder("imports"), host)
    while lease.state == vim.HttpNfcLease.State.initializing:
        time.sleep(0.05)
    return lease


def test_a_lease_without_keepalives_expires_and_removes_its_vm(short_lease_site: Site, small_ova: SmallOva):
    site = short_lease_site
    lease = start_import(site, small_ova, "lonely")
    assert lease.state == "ready" and site.vm("lonely") is not None
    assert lease.info.leaseTimeout == 1
    deadline = time.monotonic() + 10
    while lease.state == "ready" and time.monotonic() < deadline:
        time.sleep(0.2)
    assert lease.state == "error" and isinstance(lease.error, vmodl.MethodFault)
    assert site.vm("lonely") is None
    assert not (site.sim_dir / "datastores" / "esx3-local" / "lonely").exists()


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_an_upload_needs_the_importing_sessions_cookie_and_a_stream_vmdk(site: Site, small_ova: SmallOva):
    lease = start_import(site, small_ova, "guarded")
    [device] = lease.info.deviceUrl
    url = nfc_lease.device_url(device.url, f"{site.info.host}:{site.info.port}")
    assert requests.post(url, data=b"x", verify=False, timeout=10).status_code == 401
    cookie = {"Cookie": site.content.sessionManager._stub.cookie.split(";")[0]}
    response = requests.post(url, data=b"not a vmdk" * 100, headers=cookie, verify=False, timeout=10)
    assert response.status_code == 400 and "not a VMDK" in response.text
    with pytest.raises(vim.fault.InvalidState):
        lease.HttpNfcLeaseComplete()  # after a failed upload
    lease.HttpNfcLeaseAbort()
    assert site.vm("guarded") is None


def test_the_upload_is_pinned_like_the_session(site: Site, small_ova: SmallOva):
    """The NFC upload checks the server's certificate as the SOAP session does:
    a pinned thumbprint that does not match is refused before a byte is sent."""
    plan = load_plan(site.plan)
    session = connect(plan, plan.resolve_password())
    try:
        lease = start_import(site, small_ova, "pinned")
        package = ova_package.open_verified(small_ova.path)
        [device] = lease.info.deviceUrl
        digest = package.manifest[VMDK]
        upload = nfc_lease.Upload(
            url=nfc_lease.device_url(device.url, session.server),
            name=VMDK,
            size=package.member(VMDK).size,
            chunks=lambda: package.read(VMDK),
            algorithm=digest.algorithm,
            hexdigest=digest.hexdigest,
        )
        wrong = replace(session, trust=Trust(thumbprint=":".join(["AB"] * 32)))
        site.info.reset_calls()
        with pytest.raises(VSphereError, match=r"TLS check failed"):
            nfc_lease.send(wrong, upload, lambda sent: None, "vm pinned")
        assert "NfcUpload" not in methods(site)
        lease.HttpNfcLeaseAbort()
    finally:
        session.close()
