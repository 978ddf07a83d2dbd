"""The appliance for vSphere: a BIOS-bootable disk (MBR, syslinux on a small
FAT boot partition, then the same ext4 root filesystem as the lab's qcow2),
as a streamOptimized VMDK packed with its OVF descriptor into an OVA.
Built from image files with mtools and dd: no loop mounts."""

import hashlib
import tarfile
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from orchestrator.appliance import recipe
from orchestrator.appliance.shell import run

OVA = "appliance.ova"
MIB = 2**20
BOOT_MIB = 64
MBR_CODE = Path("/usr/lib/syslinux/mbr/mbr.bin")
# No serial port on ESXi: the VMware console (tty0) is the last, main console.
CMDLINE = recipe.KERNEL_CMDLINE.replace("console=ttyS0", "console=ttyS0 console=tty0")

_ENV = Environment(
    loader=FileSystemLoader(recipe.TEMPLATES / "ova"), undefined=StrictUndefined, keep_trailing_newline=True
)


def write_ova(rootfs_raw: Path, kernel: Path, initrd: Path, out: Path) -> None:
    """Write out/OVA from the raw root filesystem image and the boot files."""
    work = out / "ova-work"
    work.mkdir()
    disk = work / "disk.raw"
    boot = _boot_partition(work, kernel, initrd)
    root_offset = (1 + BOOT_MIB) * MIB
    run(["truncate", "-s", str(root_offset + rootfs_raw.stat().st_size), disk])
    table = (
        "label: dos\n"
        f"start=2048, size={BOOT_MIB * MIB // 512}, type=c, bootable\n"
        f"start={root_offset // 512}, type=83\n"
    )
    run(["sfdisk", "--quiet", disk], stdin=table)
    _copy_into(MBR_CODE, disk, offset=0, size=440)
    _copy_into(boot, disk, offset=MIB)
    _copy_into(rootfs_raw, disk, offset=root_offset)
    pack_ova(disk, out / OVA, work)
    for path in work.iterdir():
        path.unlink()
    work.rmdir()


def pack_ova(disk: Path, ova_path: Path, work: Path) -> None:
    """Pack a raw disk image as the appliance OVA: the disk as a streamOptimized
    VMDK, the OVF descriptor and the manifest (SHA256 of both), in `work`."""
    vmdk = work / "vsa-appliance-disk1.vmdk"
    run(["qemu-img", "convert", "-f", "raw", "-O", "vmdk", "-o", "subformat=streamOptimized", disk, vmdk])
    descriptor = work / "vsa-appliance.ovf"
    descriptor.write_text(
        _ENV.get_template("appliance.ovf.j2").render(
            vmdk_name=vmdk.name, vmdk_size=vmdk.stat().st_size, capacity=disk.stat().st_size
        )
    )
    manifest = work / "vsa-appliance.mf"
    manifest.write_text("".join(f"SHA256({path.name})= {_sha256(path)}\n" for path in (descriptor, vmdk)))
    # OVF: the descriptor first, then the manifest, then the disks.
    with tarfile.open(ova_path, "w", format=tarfile.USTAR_FORMAT) as ova:
        for path in (descriptor, manifest, vmdk):
            ova.add(path, arcname=path.name)


def _boot_partition(work: Path, kernel: Path, initrd: Path) -> Path:
    """A FAT image holding syslinux, its config, the kernel and the initramfs."""
    image, config = work / "boot.img", work / "syslinux.cfg"
    config.write_text(_ENV.get_template("syslinux.cfg.j2").render(cmdline=CMDLINE))
    run(["mkfs.fat", "-C", "-n", "VSABOOT", image, str(BOOT_MIB * 1024)])
    for source, name in ((kernel, "vmlinuz"), (initrd, "initrd.img"), (config, "syslinux.cfg")):
        run(["mcopy", "-i", image, source, f"::{name}"])
    run(["syslinux", "--install", image])
    return image


def _copy_into(source: Path, disk: Path, offset: int, size: int | None = None) -> None:
    """dd source into disk at offset (bytes), keeping holes sparse."""
    command = ["dd", f"if={source}", f"of={disk}", "bs=1M", f"seek={offset}", "oflag=seek_bytes"]
    command += ["conv=notrunc,sparse", "status=none"]
    if size is not None:
        command += [f"count={size}", "iflag=count_bytes"]
    run(command)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(MIB):
            digest.update(chunk)
    return digest.hexdigest()
