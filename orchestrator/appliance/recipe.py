"""What goes into the storage-node appliance image, as data.

Everything that shapes the image lives in this package's recipe files
(RECIPE_FILES); their hash names the cache entry, so editing the recipe
builds a new image and an unchanged recipe reuses the cached one. Where the
packages are downloaded from (mirror.py) is not part of the recipe.
"""

import hashlib
from pathlib import Path

SUITE = "bookworm"  # from the build host's mirror (mirror.py; not part of the hash)

# debootstrap --variant=minbase brings no init, kernel or network stack.
# iputils-ping stays out: it conflicts with heartbeat's inetutils-ping.
PACKAGES = (
    # boot and base system
    "systemd-sysv",
    "udev",
    "dbus",  # hostnamectl (cloud-init), targetcli and the lio-t OCF agents
    "kmod",
    "linux-image-amd64",  # its drbd.ko is DRBD 8.4; LIO target modules
    "initramfs-tools",
    "e2fsprogs",
    "fdisk",  # sfdisk: the guest stage partitions the meta, config and data disks
    "iproute2",  # heartbeat's IPaddr2
    "procps",
    "psmisc",
    "netbase",
    # storage node
    "drbd-utils",
    "heartbeat",  # ships dopd / drbd-peer-outdater
    "resource-agents",
    # the Pacemaker stack ([ha] manager = "pacemaker"); qnetd runs on the witness
    "pacemaker",
    "pacemaker-cli-utils",  # cibadmin, crm_mon, crm_attribute (ocf:linbit:drbd's master score)
    "corosync",
    "corosync-qdevice",
    "corosync-qnetd",
    "iptables",  # ocf:heartbeat:portblock holds 3260 while the target moves
    "targetcli-fb",
    "python3-rtslib-fb",
    # management and identity
    "openssh-server",
    "cloud-init",
    "open-vm-tools",  # lets cloud-init's VMware datasource read guestinfo on ESXi
    # debootstrap does not resolve virtual packages: python3-cryptography (cloud-init)
    # needs python3-cffi-backend-api-*, which this one provides.
    "python3-cffi-backend",
)

ROOT_LABEL = "vsa-root"
ROOT_FS_SIZE = "3G"  # sparse: the qcow2 holds only what is written

# Direct kernel boot in the lab: serial console, classic NIC names, IPv4 only
# (the plan has no IPv6; with it, networkd holds network-online ~12 s soliciting
# routers, and cloud-init 22.4's networkd renderer cannot turn that off per NIC).
KERNEL_CMDLINE = f"root=LABEL={ROOT_LABEL} rw console=ttyS0 net.ifnames=0 ipv6.disable=1 quiet"

# Modules the initramfs loads: the root disk's controller (virtio in the lab,
# the usual VMware ones on ESXi), and the CD-ROM, which must be visible when
# cloud-init's systemd generator looks for a NoCloud seed, before udev runs.
INITRAMFS_MODULES = (
    "virtio_pci",
    "virtio_scsi",
    "virtio_blk",
    "vmw_pvscsi",
    "mptspi",
    "ata_piix",
    "ahci",
    "sd_mod",
    "sr_mod",
    "ext4",
)

# Driver trees a storage VM never uses (about 165 MB of the kernel's 395 MB of modules).
PRUNED_MODULE_DIRS = (
    "kernel/drivers/gpu",
    "kernel/drivers/media",
    "kernel/drivers/net/wireless",
    "kernel/drivers/infiniband",
    "kernel/drivers/bluetooth",
    "kernel/drivers/iio",
    "kernel/drivers/staging",
    "kernel/sound",
)

PACKAGE_DIR = Path(__file__).resolve().parent
TEMPLATES = PACKAGE_DIR / "templates"
RECIPE_FILES = ("recipe.py", "rootfs.py", "disk.py", "ova.py")


def recipe_hash() -> str:
    """A short hash over every recipe file and template, names included."""
    digest = hashlib.sha256()
    paths = [PACKAGE_DIR / name for name in RECIPE_FILES]
    paths += sorted(path for path in TEMPLATES.rglob("*") if path.is_file())
    for path in paths:
        digest.update(str(path.relative_to(PACKAGE_DIR)).encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]
