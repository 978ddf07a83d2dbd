"""From the root directory to the images: for the lab a qcow2 of one ext4
filesystem (made with mkfs.ext4 -d, no loop mount) with the kernel and
initramfs beside it for qemu's direct kernel boot; for vSphere the OVA."""

import shutil
from pathlib import Path

from orchestrator.appliance import recipe
from orchestrator.appliance.ova import write_ova
from orchestrator.appliance.shell import run

DISK = "appliance.qcow2"
KERNEL = "vmlinuz"
INITRD = "initrd.img"


def write_images(root: Path, kernel: str, out: Path) -> None:
    """Fill `out` with DISK, KERNEL, INITRD and the OVA."""
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(root / "boot" / f"vmlinuz-{kernel}", out / KERNEL)
    shutil.copyfile(root / "boot" / f"initrd.img-{kernel}", out / INITRD)
    raw = out / "rootfs.raw"
    try:
        run(["truncate", "-s", recipe.ROOT_FS_SIZE, raw])
        run(["mkfs.ext4", "-q", "-F", "-m", "1", "-L", recipe.ROOT_LABEL, "-d", root, raw])
        run(["qemu-img", "convert", "-c", "-f", "raw", "-O", "qcow2", raw, out / DISK])
        write_ova(raw, out / KERNEL, out / INITRD, out)
    finally:
        raw.unlink(missing_ok=True)
