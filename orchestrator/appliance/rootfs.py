"""The appliance's root filesystem as a directory: debootstrap, our files, trimmed.

No loop mounts and no mounts into the tree: every step runs on the directory
(chroot only for the package tools that must run inside it).
"""

import shutil
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from orchestrator.appliance import recipe
from orchestrator.appliance.shell import ApplianceError, run
from orchestrator.host_files import ARCHIVE_KEYRING

# Units a storage node must not run at boot: timers that touch the network or disks;
# targetctl, which would restore a saved LIO configuration at boot (a LUN exported from a
# standby) and clear every LUN at shutdown, racing the cluster manager's orderly stop (the
# target is ours: vsa-target); cloud-init's config stage, which has no module left to run and
# costs 14 s of a boot under emulation.
MASKED_UNITS = (
    "apt-daily.timer",
    "apt-daily-upgrade.timer",
    "e2scrub_all.timer",
    "e2scrub_reap.service",
    "rtslib-fb-targetctl.service",
    "cloud-config.service",
)
# Started by the guest stage once configured, for the plan's cluster manager only
# (heartbeat cannot start without ha.cf; corosync's packaged config is a stub).
DISABLED_UNITS = (
    "heartbeat.service",
    "corosync.service",
    "pacemaker.service",
    "corosync-qdevice.service",
    "corosync-qnetd.service",
)
# Left over from installation; the appliance must not carry the build host's data.
REMOVED = (
    "etc/ssh/ssh_host_*",  # cloud-init installs the orchestrator's host key
    "var/lib/dbus/machine-id",
    "var/lib/apt/lists/*",
    "var/cache/apt/*.bin",
    "var/cache/apt/archives/*.deb",
    "usr/share/doc/*",
    "usr/share/man/*",
    "usr/share/locale/*",
    "var/log/*.log",
)


def debootstrap(root: Path, package_cache: Path, mirror: str) -> None:
    """Debian with the recipe's packages from mirror (checked against Debian's
    archive keyring); downloads are kept in package_cache."""
    package_cache.mkdir(parents=True, exist_ok=True)
    run(
        [
            "debootstrap",
            "--variant=minbase",
            f"--keyring={ARCHIVE_KEYRING}",
            f"--cache-dir={package_cache.resolve()}",
            f"--include={','.join(recipe.PACKAGES)}",
            recipe.SUITE,
            root,
            mirror,
        ]
    )


def add_files(root: Path) -> None:
    """Render templates/rootfs/<path>.j2 to <root>/<path>."""
    source = recipe.TEMPLATES / "rootfs"
    env = Environment(loader=FileSystemLoader(source), undefined=StrictUndefined, keep_trailing_newline=True)
    context = {"root_label": recipe.ROOT_LABEL, "initramfs_modules": recipe.INITRAMFS_MODULES}
    for template in sorted(source.rglob("*.j2")):
        relative = template.relative_to(source)
        target = root / relative.with_suffix("")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.unlink(missing_ok=True)  # debootstrap may have left a symlink here
        target.write_text(env.get_template(relative.as_posix()).render(context))


def configure(root: Path) -> str:
    """Services, kernel modules and initramfs; returns the kernel version."""
    kernel = kernel_version(root)
    run(["chroot", root, "systemctl", "enable", "systemd-networkd.service"])
    run(["chroot", root, "systemctl", "mask", *MASKED_UNITS])
    run(["chroot", root, "systemctl", "disable", *DISABLED_UNITS])
    for tree in recipe.PRUNED_MODULE_DIRS:
        shutil.rmtree(root / "lib/modules" / kernel / tree, ignore_errors=True)
    run(["chroot", root, "depmod", "-a", kernel])
    run(["chroot", root, "update-initramfs", "-u", "-k", kernel])
    return kernel


def trim(root: Path) -> None:
    """Drop caches, docs and per-machine leftovers; empty machine-id (new at first boot)."""
    for pattern in REMOVED:
        for path in root.glob(pattern):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
    (root / "etc/machine-id").write_text("")


def kernel_version(root: Path) -> str:
    versions = sorted(path.name for path in (root / "lib/modules").iterdir())
    if len(versions) != 1:
        raise ApplianceError(f"expected one kernel in {root}/lib/modules, found {versions or 'none'}")
    return versions[0]
