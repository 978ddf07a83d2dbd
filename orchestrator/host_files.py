"""What the code uses from the build/lab host outside Python, and the Debian
package that ships each piece.

A file the code (or a tool it runs, the way it runs it) opens is a dependency
just like a command: scripts/install-lab-deps installs every package named
here explicitly, with --no-install-recommends (syslinux only recommends the
syslinux-common that holds mbr.bin). scripts/bootstrap installs the Go
toolchain and govmomi. tests/unit/test_host_packages.py checks that every
command the code runs and every absolute host path it names is listed here,
that `dpkg -S` finds each in the package given, and that the scripts name it.
"""

from typing import NamedTuple

INSTALL = "scripts/install-lab-deps"


class HostFile(NamedTuple):
    package: str
    step: str  # what needs it: the appliance build's step, or lab/tests


# command -> package
COMMANDS = {
    # the appliance build (orchestrator/appliance)
    "debootstrap": "debootstrap",
    "wget": "wget",  # debootstrap downloads with it
    "gpgv": "gpgv",  # debootstrap checks the Release signature with it
    "chroot": "coreutils",
    "truncate": "coreutils",
    "dd": "coreutils",
    "umount": "mount",
    "mkfs.ext4": "e2fsprogs",
    "qemu-img": "qemu-utils",
    "sfdisk": "fdisk",
    "mkfs.fat": "dosfstools",
    "mcopy": "mtools",
    "syslinux": "syslinux",
    # the lab (orchestrator/lab)
    "ip": "iproute2",
    "qemu-system-x86_64": "qemu-system-x86",
    "xorriso": "xorriso",
    "nft": "nftables",  # partitions between lab VMs (orchestrator/lab/partition.py)
    "pkill": "procps",  # the lab tests kill a VM's qemu (a host losing power)
    # the simulated vCenter (scripts/build-sim)
    "go": "golang-go",
    # the tests (tests/lab, tests/unit)
    "qemu-io": "qemu-utils",
    "iscsi-inq": "libiscsi-bin",
    "iscsi-test-cu": "libiscsi-bin",  # SCSI conformance tests after failovers (tests/lab)
    "iscsi-readcapacity16": "libiscsi-bin",
    "blkid": "util-linux",
    "sh": "dash",
    "ping": "iputils-ping",  # tests/lab/test_partition.py
}

MBR_BIN = "/usr/lib/syslinux/mbr/mbr.bin"
ARCHIVE_KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"

# absolute path -> package and user
FILES = {
    MBR_BIN: HostFile("syslinux-common", "bootloader"),  # the OVA disk's MBR boot code
    ARCHIVE_KEYRING: HostFile("debian-archive-keyring", "debootstrap"),  # verifies the mirror
    # qemu's firmware for the way the lab boots (-machine pc, -kernel, no option ROMs:
    # virtio-net-pci has romfile=, so ipxe-qemu's ROMs are never read)
    "/usr/share/seabios/bios-256k.bin": HostFile("seabios", "lab"),
    "/usr/share/qemu/linuxboot_dma.bin": HostFile("qemu-system-data", "lab"),
    "/usr/share/qemu/kvmvapic.bin": HostFile("qemu-system-data", "lab"),
    # qemu's iscsi:// driver (tests/lab: qemu-io on the LUN)
    "/usr/lib/x86_64-linux-gnu/qemu/block-iscsi.so": HostFile("qemu-block-extra", "lab"),
    # govmomi's sources, built into the simulator (scripts/build-sim, tests/vsphere)
    "/usr/share/gocode/src/github.com/vmware/govmomi": HostFile(
        "golang-github-vmware-govmomi-dev", "simulator"
    ),
    "/bin/sh": HostFile("dash", "tests"),  # the fake tools' interpreter (tests/unit)
}

# ctypes.util.find_library name -> package (orchestrator/lab/iscsi_probe.py)
LIBRARIES = {"iscsi": "libiscsi7"}

# Host files that no package ships (the host's own configuration).
CONFIGURATION = ("/etc/apt", "/etc/resolv.conf", "/etc/ssl/certs/ca-certificates.crt")


def install_hint(*packages: str) -> str:
    """What to run for the missing packages."""
    return f"apt-get install {' '.join(sorted(set(packages)))} ({INSTALL})"
