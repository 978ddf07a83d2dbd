"""Build the storage-node appliance once per recipe, into a cache outside the repo:
${VSA_CACHE_DIR:-~/.cache/vsa-orchestrate}/appliance/<recipe hash>/."""

import fcntl
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from orchestrator.appliance import disk, ova, recipe, rootfs
from orchestrator.appliance.mirror import ENV as MIRROR_ENV
from orchestrator.appliance.mirror import debian_mirror
from orchestrator.appliance.shell import ApplianceError, log_to, missing_tools, run
from orchestrator.host_files import ARCHIVE_KEYRING, COMMANDS, FILES, MBR_BIN, install_hint

# Everything a build runs or reads on the host (orchestrator/host_files.py has the packages).
BUILD_COMMANDS = (
    "debootstrap",
    "wget",
    "gpgv",
    "chroot",
    "truncate",
    "dd",
    "umount",
    "mkfs.ext4",
    "qemu-img",
    "sfdisk",
    "mkfs.fat",
    "mcopy",
    "syslinux",
)
BUILD_FILES = (ARCHIVE_KEYRING, MBR_BIN)
MANIFEST = "manifest.json"
LOG = "build.log"


@dataclass(frozen=True)
class Appliance:
    """A built image: its directory in the cache and the files qemu boots from."""

    directory: Path

    @classmethod
    def of(cls, disk_path: Path) -> "Appliance":
        """The appliance whose qcow2 is disk_path (what build_appliance returns)."""
        return cls(disk_path.parent)

    @property
    def disk(self) -> Path:
        return self.directory / disk.DISK

    @property
    def kernel(self) -> Path:
        return self.directory / disk.KERNEL

    @property
    def initrd(self) -> Path:
        return self.directory / disk.INITRD

    @property
    def ova(self) -> Path:
        return self.directory / ova.OVA

    @property
    def manifest(self) -> dict:
        return json.loads((self.directory / MANIFEST).read_text())

    def complete(self) -> bool:
        # The manifest is written last: its presence means every file is whole.
        return (self.directory / MANIFEST).exists()


def cache_root(cache_dir: Path | None = None) -> Path:
    base = cache_dir or Path(os.environ.get("VSA_CACHE_DIR", Path.home() / ".cache" / "vsa-orchestrate"))
    return base.expanduser() / "appliance"


def build_appliance(
    cache_dir: Path | None = None,
    force: bool = False,
    progress: Callable[[str], None] | None = None,
    mirror: str | None = None,
) -> Path:
    """The cached appliance qcow2 for the current recipe, built first when missing
    (or when force is set) from `mirror` (default: mirror.debian_mirror). Needs root:
    debootstrap and chroot. Every failure is one ApplianceError line naming the step."""
    root = cache_root(cache_dir)
    appliance = Appliance(root / recipe.recipe_hash())
    if appliance.complete() and not force:
        return appliance.disk
    check_host()
    source = debian_mirror(mirror)
    with _step("cache", f"check that {root} is writable"):
        root.mkdir(parents=True, exist_ok=True)
        lock = open(root / ".lock", "w")  # noqa: SIM115 - held for the whole build
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a concurrent build of the same recipe finishes first
        if force or not appliance.complete():
            _build(root, appliance, progress or (lambda _message: None), source)
    return appliance.disk


def check_host(host_root: Path = Path("/")) -> None:
    """Before anything is downloaded: every tool (on PATH) and host file (under
    host_root) the build uses is there, else one line saying what to install;
    and we are root."""
    missing = missing_tools(BUILD_COMMANDS)
    if missing:
        packages = [COMMANDS[command] for command in missing]
        raise ApplianceError(
            f"appliance build: host tools: {', '.join(missing)} not found; {install_hint(*packages)}"
        )
    for path in BUILD_FILES:
        if not (host_root / path.lstrip("/")).is_file():
            needed = FILES[path]
            raise ApplianceError(
                f"appliance build: {needed.step}: {path} is missing; {install_hint(needed.package)}"
            )
    if os.geteuid() != 0:
        raise ApplianceError("appliance build: needs root (debootstrap, chroot); run it as root")


@contextmanager
def _step(name: str, check: str = "", log: Path | None = None) -> Iterator[None]:
    """Turn any failure inside the block into one line: the step, the fault, what to check."""
    try:
        yield
    except (ApplianceError, OSError) as err:
        fault = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
        if isinstance(err, OSError) and err.filename:
            fault = f"{fault}: {err.filename}"
        hints = [hint for hint in (check, log and f"full output in {log}") if hint]
        raise ApplianceError(f"appliance build: {name}: {'; '.join([fault, *hints])}") from None


def _build(root: Path, appliance: Appliance, say: Callable[[str], None], mirror: str) -> None:
    started = time.monotonic()
    log = root / LOG
    log.write_text(f"appliance build {appliance.directory.name} from {_public(mirror)}\n")
    work = Path(tempfile.mkdtemp(dir=root, prefix=".build-"))
    try:
        tree, out = work / "rootfs", work / "out"
        with log_to(log):
            say("debootstrap: Debian 12 with the storage-node packages")
            check = f"check the mirror {_public(mirror)} (--mirror URL or ${MIRROR_ENV}) and the network"
            with _step("debootstrap", check, log):
                try:
                    rootfs.debootstrap(tree, root / "debs", mirror)
                except ApplianceError:
                    _keep_debootstrap_log(tree, log)
                    raise
            say("configuring services, kernel modules and initramfs")
            with _step("configure", "", log):
                rootfs.add_files(tree)
                kernel = rootfs.configure(tree)
                rootfs.trim(tree)
            say("writing the ext4 root filesystem, the qcow2 and the OVA")
            with _step("images", f"check the free space in {root}", log):
                disk.write_images(tree, kernel, out)
        manifest = {
            "recipe": appliance.directory.name,
            "kernel": kernel,
            "cmdline": recipe.KERNEL_CMDLINE,
            "mirror": _public(mirror),
            "build_seconds": round(time.monotonic() - started, 1),
        }
        with _step("cache", f"check the free space in {root}"):
            (out / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
            if appliance.directory.exists():
                shutil.rmtree(appliance.directory)
            out.rename(appliance.directory)
    finally:
        _remove_work_dir(work)


def _public(url: str) -> str:
    """The URL without any user:password part (for messages and the manifest)."""
    parts = urlsplit(url)
    if not parts.username and not parts.password:
        return url
    return parts._replace(netloc=(parts.hostname or "") + (f":{parts.port}" if parts.port else "")).geturl()


def _keep_debootstrap_log(tree: Path, log: Path) -> None:
    """debootstrap's own log (inside the tree, about to be deleted) into the build log."""
    try:
        text = (tree / "debootstrap" / "debootstrap.log").read_text(errors="replace")
    except OSError:
        return
    with open(log, "a") as handle:
        handle.write("--- debootstrap/debootstrap.log ---\n" + text)


def _remove_work_dir(work: Path) -> None:
    """Delete the scratch tree, but never through a mount point: a failed debootstrap
    can leave /proc or /sys mounted inside it."""
    prefix = str(work.resolve()) + "/"
    with open("/proc/self/mounts") as mounts:
        points = [line.split()[1] for line in mounts if line.split()[1].startswith(prefix)]
    for point in sorted(points, reverse=True):
        run(["umount", "--lazy", point])
    shutil.rmtree(work)
