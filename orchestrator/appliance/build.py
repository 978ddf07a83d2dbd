"""Build the storage-node appliance once per recipe, into a cache outside the repo:
${VSA_CACHE_DIR:-~/.cache/vsa-orchestrate}/appliance/<recipe hash>/."""

import fcntl
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from orchestrator.appliance import disk, ova, recipe, rootfs
from orchestrator.appliance.shell import ApplianceError, require_tools, run

BUILD_TOOLS = {
    "debootstrap": "debootstrap",
    "chroot": "coreutils",
    "mkfs.ext4": "e2fsprogs",
    "qemu-img": "qemu-utils",
    "sfdisk": "fdisk",
    "mkfs.fat": "dosfstools",
    "mcopy": "mtools",
    "syslinux": "syslinux",
}
MANIFEST = "manifest.json"


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
) -> Path:
    """The cached appliance qcow2 for the current recipe, built first when missing
    (or when force is set). Needs root: debootstrap and chroot."""
    root = cache_root(cache_dir)
    appliance = Appliance(root / recipe.recipe_hash())
    if appliance.complete() and not force:
        return appliance.disk
    require_tools(BUILD_TOOLS)
    if os.geteuid() != 0:
        raise ApplianceError("building the appliance needs root (debootstrap, chroot)")
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a concurrent build of the same recipe finishes first
        if force or not appliance.complete():
            _build(root, appliance, progress or (lambda _message: None))
    return appliance.disk


def _build(root: Path, appliance: Appliance, say: Callable[[str], None]) -> None:
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(dir=root, prefix=".build-"))
    try:
        tree, out = work / "rootfs", work / "out"
        say("debootstrap: Debian 12 with the storage-node packages")
        rootfs.debootstrap(tree, root / "debs")
        say("configuring services, kernel modules and initramfs")
        rootfs.add_files(tree)
        kernel = rootfs.configure(tree)
        rootfs.trim(tree)
        say("writing the ext4 root filesystem, the qcow2 and the OVA")
        disk.write_images(tree, kernel, out)
        manifest = {
            "recipe": appliance.directory.name,
            "kernel": kernel,
            "cmdline": recipe.KERNEL_CMDLINE,
            "build_seconds": round(time.monotonic() - started, 1),
        }
        (out / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
        if appliance.directory.exists():
            shutil.rmtree(appliance.directory)
        out.rename(appliance.directory)
    finally:
        _remove_work_dir(work)


def _remove_work_dir(work: Path) -> None:
    """Delete the scratch tree, but never through a mount point: a failed debootstrap
    can leave /proc or /sys mounted inside it."""
    prefix = str(work.resolve()) + "/"
    with open("/proc/self/mounts") as mounts:
        points = [line.split()[1] for line in mounts if line.split()[1].startswith(prefix)]
    for point in sorted(points, reverse=True):
        run(["umount", "--lazy", point])
    shutil.rmtree(work)
