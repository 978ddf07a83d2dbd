"""Fixed layout of a storage node, shared by the templates, facts and executor.

Two DRBD 8.4 resources, as in the original recipe: the config volume (the
target definition lives there, replicated) and the LUN volume. Both keep
external, indexed metadata on the meta disk.
"""

from dataclasses import dataclass

# The storage VM's data disks, in order: SCSI units 0, 1, 2 on its data bus, and
# the order the node lists them by their stable paths.
DISK_ROLES = ("meta", "config", "data")


@dataclass(frozen=True)
class DrbdResource:
    name: str
    minor: int
    port: int
    meta_index: int
    disk_role: str  # which data disk of the VM (DISK_ROLES)

    @property
    def device(self) -> str:
        return f"/dev/drbd{self.minor}"


CONFIG = DrbdResource(name="iscsi.config", minor=0, port=7788, meta_index=0, disk_role="config")
LUN = DrbdResource(name="iscsi.target.0", minor=1, port=7789, meta_index=1, disk_role="data")
RESOURCES = (CONFIG, LUN)

CONFIG_MOUNT = "/srv/data"
CONFIG_FSTYPE = "ext4"
# Every write to the config volume reaches both disks before it returns (DRBD protocol C
# under a synchronous mount): LIO writes a PERSISTENT RESERVE OUT's APTPL file there
# before it answers, and from the page cache alone a SIGKILL lost the reservation.
CONFIG_MOUNT_OPTIONS = "sync"
TARGET_SCRIPT = "vsa-target"  # heartbeat resource script in /etc/ha.d/resource.d/
TARGET_DEFINITION = f"{CONFIG_MOUNT}/vsa-target.json"
# DRBD's split-brain handler leaves a marker per resource here; it outlives the
# kernel log and a reboot, and the guest stage removes it once the resource is connected again.
SPLIT_BRAIN_DIR = "/var/lib/vsa-orchestrate"
SPLIT_BRAIN_PREFIX = "split-brain-"
