"""Fixtures for tests against the simulated vCenter (our Go vcsim, sim/).

Each test gets a fresh simulator and a lab plan pointing at it, so tests are
independent. A machine without Go or govmomi fails here with what to install.
"""

import shutil
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pyVim.connect import Disconnect, SmartConnect
from pyVmomi import vim

from orchestrator.cli import main
from orchestrator.lab import netns
from orchestrator.lab.commands import write_lab_plan
from orchestrator.lab.simulator import RunningSim, SimInfo, start_simulator
from orchestrator.stages.contract import VSPHERE_STAGES
from tests.vsphere.portal import serve_portal
from tests.vsphere.small_ova import SmallOva, build_small_ova


@dataclass
class Site:
    """A running simulator, its lab plan, and a direct client for arranging drift."""

    sim: RunningSim
    plan: Path
    content: vim.ServiceContent
    sim_dir: Path  # the simulator's state folder (datastores/<name>/ are real folders)

    @property
    def info(self) -> SimInfo:
        return self.sim.info

    def vm(self, name: str) -> vim.VirtualMachine | None:
        view = self.content.viewManager.CreateContainerView(
            self.content.rootFolder, [vim.VirtualMachine], True
        )
        try:
            return next((vm for vm in view.view if vm.name == name), None)
        finally:
            view.DestroyView()

    def vm_folder(self, path: str) -> vim.Folder:
        """The VM folder at `path` under the datacenter, created if missing."""
        folder = self.content.rootFolder.childEntity[0].vmFolder
        for part in filter(None, path.split("/")):
            folder = self.content.searchIndex.FindChild(folder, part) or folder.CreateFolder(part)
        return folder

    def host(self, name: str) -> vim.HostSystem:
        view = self.content.viewManager.CreateContainerView(self.content.rootFolder, [vim.HostSystem], True)
        try:
            return next(host for host in view.view if host.name == name)
        finally:
            view.DestroyView()

    def vm_names(self) -> list[str]:
        view = self.content.viewManager.CreateContainerView(
            self.content.rootFolder, [vim.VirtualMachine], True
        )
        try:
            return sorted(vm.name for vm in view.view)
        finally:
            view.DestroyView()

    def datastore(self, name: str) -> vim.Datastore:
        return next(ds for ds in self.content.rootFolder.childEntity[0].datastore if ds.name == name)

    def datastore_files(self, datastore: str, folder: str) -> set[str]:
        """File names in "[datastore] folder", read through the datastore browser."""
        ds = self.datastore(datastore)
        spec = vim.host.DatastoreBrowser.SearchSpec(matchPattern=["*"])
        task = ds.browser.SearchDatastore_Task(f"[{datastore}] {folder}", spec)
        wait_task(task)
        return {item.path for item in task.info.result.file or []}

    def clone_template(self, name: str, host: str, datastore: str, folder: str) -> vim.VirtualMachine:
        """A VM made by someone else (no vsa-orchestrate marker)."""
        template = self.vm(self.info.template)
        esx = self.host(host)
        spec = vim.vm.CloneSpec(
            location=vim.vm.RelocateSpec(
                host=esx, pool=esx.parent.resourcePool, datastore=self.datastore(datastore)
            ),
            powerOn=False,
            template=False,
        )
        task = template.CloneVM_Task(self.vm_folder(folder), name, spec)
        wait_task(task)
        return task.info.result

    def edit_plan(self, old: str, new: str) -> None:
        """Change the plan file the way a user would edit it."""
        text = self.plan.read_text()
        assert old in text
        self.plan.write_text(text.replace(old, new, 1))

    def tasks_since_reset(self) -> dict[str, int]:
        methods = self.info.calls()["methods"]
        return {name: count for name, count in methods.items() if name.endswith("_Task") or name in _MUTATORS}


# Methods that change a host or vCenter without returning a Task.
_MUTATORS = {
    "ShutdownGuest",
    "RebootGuest",
    "CreateFolder",
    "CreateClusterEx",
    "UpdateSoftwareInternetScsiEnabled",
    "AddInternetScsiSendTargets",
    "RemoveInternetScsiSendTargets",
    "UpdateInternetScsiAuthenticationProperties",
    "UpdateInternetScsiAdvancedOptions",
    "RescanHba",
    "RescanAllHba",
    "RescanVmfs",
    "CreateVmfsDatastore",
    "MountVmfsVolume",
    "UnmountVmfsVolume",
    "ReconfigureAutostart",
    "AddVirtualSwitch",
    "UpdateVirtualSwitch",
    "AddPortGroup",
    "UpdatePortGroup",
    "AddVirtualNic",
    "UpdateVirtualNic",
    "RemoveVirtualNic",
    "BindVnic",
    "UnbindVnic",
}


def wait_task(task: vim.Task) -> None:
    from pyVim.task import WaitForTask

    WaitForTask(task)


@pytest.fixture(scope="session")
def _simulator_available() -> None:
    if shutil.which("go") is None or not Path("/usr/share/gocode/src/github.com/vmware/govmomi").is_dir():
        pytest.fail(
            "the simulated vCenter needs Go and govmomi: "
            "apt-get install golang-go golang-github-vmware-govmomi-dev (or run scripts/bootstrap)"
        )
    # Lab addresses must never leave this machine, whatever a test selects.
    netns.guard_routes()


@pytest.fixture(scope="session")
def small_ova(tmp_path_factory: pytest.TempPathFactory) -> SmallOva:
    """The OVA the lab plans import (built once per test session)."""
    return build_small_ova(tmp_path_factory.mktemp("small-ova"))


@pytest.fixture
def site(tmp_path: Path, _simulator_available: None, small_ova: SmallOva) -> Iterator[Site]:
    """A simulated vCenter whose lab plan imports the small OVA."""
    yield from running_site(tmp_path, "VirtualCenter", ova=small_ova.path)


@pytest.fixture
def esxi_site(tmp_path: Path, _simulator_available: None, small_ova: SmallOva) -> Iterator[Site]:
    """The same inventory, answering as an ESXi host (about.apiType HostAgent)."""
    yield from running_site(tmp_path, "HostAgent", ova=small_ova.path)


def running_site(
    tmp_path: Path,
    api_type: str,
    lab_hook: list[str] | None = None,
    ova: Path | None = None,
    sim_args: list[str] | None = None,
) -> Iterator[Site]:
    """A simulator and its lab plan (importing `ova`, or cloning the template
    without one); with lab_hook the simulator runs in lab mode and no portal is
    registered (the hook answers rescans)."""
    sim = start_simulator(tmp_path / "sim", api_type=api_type, lab_hook=lab_hook, extra_args=sim_args)
    plan = tmp_path / "lab" / "lab.toml"
    plan.parent.mkdir()
    write_lab_plan(sim.info, plan, ova, "heartbeat")
    if not lab_hook:
        serve_portal(sim.info, plan)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    si = SmartConnect(
        host=sim.info.host,
        port=sim.info.port,
        user=sim.info.username,
        pwd=sim.info.password,
        sslContext=context,
    )
    try:
        yield Site(sim=sim, plan=plan, content=si.RetrieveContent(), sim_dir=tmp_path / "sim")
    finally:
        Disconnect(si)
        sim.stop()


# The simulated site has no real storage VMs (tests/lab has those): the guest
# stage is left out unless a test selects stages itself.


def vsa(*args: str | Path) -> int:
    """Run the CLI in-process, as a user would from the shell."""
    argv = [str(arg) for arg in args]
    if "--only" not in argv and "--check" not in argv:
        argv += ["--only", VSPHERE_STAGES]
    return main(argv)
