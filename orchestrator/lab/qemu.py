"""One storage VM as a qemu process inside the lab namespace, under TCG.

Disks are files in the VM's folder: an overlay on the appliance image (sda),
then the data disks in order (sdb, sdc, ...), all on one virtio-scsi
controller with serials, as a VMware VM's SCSI 0:n disks. NICs are virtio-net
on the lab bridges' taps, with the given MACs. Boot is direct (the appliance's
kernel and initramfs), the serial console goes to console.log, and the
process is found again through its pidfile, checked against its command line
so that only our own qemu is ever signalled.
"""

import json
import os
import signal
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tenacity import Retrying, retry_if_result, stop_after_delay, wait_fixed

from orchestrator.appliance.build import Appliance
from orchestrator.lab import netns
from orchestrator.lab.simulator import LabError

QEMU_TOOLS = {"qemu-system-x86_64": "qemu-system-x86", "qemu-img": "qemu-utils"}
TB_CACHE_MB = 256  # TCG's translation cache; qemu's default (1 GiB) dominates its RSS


@dataclass(frozen=True)
class Disk:
    name: str  # file name stem and serial suffix
    size_bytes: int
    path: Path | None = None  # an existing raw file (the lab hook's VMDK extents); default <name>.raw


@dataclass(frozen=True)
class Nic:
    role: str  # the lab bridge it plugs into (netns.BRIDGES)
    mac: str
    tap: str  # at most 15 characters


@dataclass(frozen=True)
class VmSpec:
    name: str
    appliance: Appliance
    disks: tuple[Disk, ...]  # sdb, sdc, ... in this order
    nics: tuple[Nic, ...]  # eth0, eth1, ... in PCI order
    seed: Path | None = None  # NoCloud ISO (seed.write_seed)
    memory_mb: int = 1024
    cpus: int = 1


class LabVm:
    """A VM's files in `directory` and its qemu process, if running."""

    def __init__(self, spec: VmSpec, directory: Path):
        self.spec = spec
        self.directory = directory

    @property
    def console_log(self) -> Path:
        return self.directory / "console.log"

    @property
    def os_disk(self) -> Path:
        return self.directory / "os.qcow2"

    def disk_path(self, disk: Disk) -> Path:
        return disk.path or self.directory / f"{disk.name}.raw"

    @property
    def _pidfile(self) -> Path:
        return self.directory / "qemu.pid"

    @property
    def _qmp(self) -> Path:
        return self.directory / "qmp.sock"

    def start(self) -> int:
        """Boot the VM unless it runs already; its qemu pid."""
        running = self.pid()
        if running:
            return running
        netns.require_tools(QEMU_TOOLS)
        if not netns.exists():
            raise LabError(f"network namespace {netns.NAMESPACE} is missing; bring the lab network up first")
        self._prepare_disks()
        for nic in self.spec.nics:
            netns.add_tap(nic.tap, nic.role)
        netns.run([*netns.exec_prefix(), *self.command()])
        pid = self.pid()
        if pid is None:
            raise LabError(f"qemu for {self.spec.name} exited at once; see {self.console_log}")
        return pid

    def command(self) -> list[str]:
        spec, appliance = self.spec, self.spec.appliance
        args = [
            "qemu-system-x86_64",
            "-name", f"{spec.name},process=qemu-{spec.name}",
            "-nodefaults", "-no-user-config",
            "-machine", "pc", "-accel", f"tcg,tb-size={TB_CACHE_MB}",
            "-m", str(spec.memory_mb), "-smp", str(spec.cpus),
            "-kernel", str(appliance.kernel), "-initrd", str(appliance.initrd),
            "-append", appliance.manifest["cmdline"],
            "-display", "none", "-vga", "none",
            "-serial", f"file:{self.console_log}",
            "-qmp", f"unix:{self._qmp},server=on,wait=off",
            "-pidfile", str(self._pidfile), "-daemonize",
            "-object", "rng-random,id=rng0,filename=/dev/urandom",
            "-device", "virtio-rng-pci,rng=rng0",
            "-device", "virtio-scsi-pci,id=scsi0",
        ]  # fmt: skip
        disks = [(self.os_disk, "qcow2", f"{spec.name}-os")]
        disks += [(self.disk_path(disk), "raw", f"{spec.name}-{disk.name}") for disk in spec.disks]
        for index, (path, fmt, serial) in enumerate(disks):
            args += [
                "-drive", f"file={path},format={fmt},if=none,id=disk{index},discard=unmap",
                "-device", f"scsi-hd,bus=scsi0.0,scsi-id={index},lun=0,drive=disk{index},serial={serial}",
            ]  # fmt: skip
        for index, nic in enumerate(spec.nics):
            args += [
                "-netdev", f"tap,id=net{index},ifname={nic.tap},script=no,downscript=no",
                "-device", f"virtio-net-pci,netdev=net{index},mac={nic.mac},romfile=",
            ]  # fmt: skip
        if spec.seed:
            args += ["-drive", f"file={spec.seed},format=raw,if=ide,media=cdrom,readonly=on"]
        return args

    def pid(self) -> int | None:
        """The pid of this VM's qemu, or None; a stale pidfile is not trusted."""
        return qemu_pid(self.directory)

    def rss_bytes(self) -> int:
        """Resident memory of the running qemu."""
        pid = self.pid()
        if pid is None:
            raise LabError(f"{self.spec.name} is not running")
        status = Path(f"/proc/{pid}/status").read_text()
        line = next(line for line in status.splitlines() if line.startswith("VmRSS:"))
        return int(line.split()[1]) * 1024

    def power_off(self) -> None:
        """Pull the plug: SIGKILL, as a host losing power."""
        pid = self.pid()
        if pid is not None:
            os.kill(pid, signal.SIGKILL)
            self._wait_gone(timeout=30)

    def stop(self, timeout: float = 120) -> None:
        """ACPI power button, then power_off if the guest has not shut down in time."""
        if self.pid() is None:
            return
        try:
            _qmp_execute(self._qmp, "system_powerdown")
            self._wait_gone(timeout)
        except (OSError, LabError):
            self.power_off()

    def remove(self) -> None:
        """Power off and delete the VM's taps; its disk files stay."""
        self.power_off()
        for nic in self.spec.nics:
            netns.delete_tap(nic.tap)

    def _prepare_disks(self) -> None:
        """Create missing disk files; existing ones (with data) are kept as they are."""
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not self.os_disk.exists():
            base = self.spec.appliance.disk
            netns.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", base, self.os_disk])
        for disk in self.spec.disks:
            path = self.disk_path(disk)
            if disk.path is not None and not path.exists():
                raise LabError(f"{self.spec.name}: disk file {path} is missing")
            if not path.exists() or path.stat().st_size < disk.size_bytes:
                with open(path, "ab") as handle:
                    handle.truncate(disk.size_bytes)  # sparse; grown, never shrunk

    def _wait_gone(self, timeout: float) -> None:
        if not wait_until(lambda: self.pid() is None, timeout):
            raise LabError(f"qemu for {self.spec.name} did not exit within {timeout:.0f} s")


def qemu_pid(directory: Path) -> int | None:
    """The pid of the qemu whose pidfile is in directory, or None: only a
    process whose command line names that very pidfile counts as ours."""
    pidfile = directory / "qemu.pid"
    try:
        pid = int(pidfile.read_text())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (OSError, ValueError):
        return None
    return pid if str(pidfile).encode() in cmdline else None


def monitor(directory: Path, command: str) -> None:
    """One QMP command to the qemu whose lab folder is directory: `stop` freezes the
    guest (a hung VM: its process lives on, nothing in it runs), `cont` thaws it."""
    _qmp_execute(directory / "qmp.sock", command)


def wait_until(condition: Callable[[], bool], timeout: float, interval: float = 0.1) -> bool:
    """Poll condition until it holds (True) or timeout seconds pass (False)."""
    poll = Retrying(
        stop=stop_after_delay(timeout),
        wait=wait_fixed(interval),
        retry=retry_if_result(lambda held: not held),
        retry_error_callback=lambda _state: False,
    )
    return poll(condition)


def _qmp_execute(path: Path, command: str) -> None:
    """Send one command over the VM's QMP socket (a unix socket, not the network)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(str(path))
        stream = sock.makefile("rw")
        stream.readline()  # greeting
        for name in ("qmp_capabilities", command):
            stream.write(json.dumps({"execute": name}) + "\n")
            stream.flush()
            reply: dict = {}
            while "return" not in reply and "error" not in reply:
                line = stream.readline()
                if not line:
                    raise LabError(f"QMP socket {path} closed")
                reply = json.loads(line)
            if "error" in reply:
                raise LabError(f"QMP {name}: {reply['error'].get('desc')}")
