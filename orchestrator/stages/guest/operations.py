"""What the `guest` stage does on a storage node: shell commands over its SSH session, as data.

Every operation but WaitServing names its node. A file's content is never in
an operation: the handler renders it again from the plan and the state
folder's secrets and writes it only if its sha256 is the one the diff showed.
"""

from dataclasses import dataclass

from orchestrator.guest import layout
from orchestrator.operations import Operation

DOPD_HELPERS = ("/lib/drbd/drbdsetup-84", "/usr/sbin/drbdmeta")


@dataclass(frozen=True)
class NodeDevices:
    """A node's data disks by role (stable device paths), as its DRBD files name them."""

    node: str
    meta: str
    config: str
    data: str


@dataclass(frozen=True)
class NodeOperation(Operation):
    side = "node"
    node: str


@dataclass(frozen=True)
class WriteFile(NodeOperation):
    """A managed file, rendered from the plan, the secrets and both nodes' `devices`."""

    path: str
    content_sha256: str
    mode: int
    sensitive: bool
    devices: tuple[NodeDevices, ...]

    def describe(self) -> str:
        return f"{self.node}: write {self.path} (sha256 {self.content_sha256[:12]}, mode {oct(self.mode)})"


@dataclass(frozen=True)
class AllowDopd(NodeOperation):
    """dopd (heartbeat's outdate-peer daemon) may run DRBD's helpers."""

    def describe(self) -> str:
        return f"{self.node}: dpkg-statoverride --update --add root haclient 4750 {' '.join(DOPD_HELPERS)}"


@dataclass(frozen=True)
class ForgetSplitBrain(NodeOperation):
    """Remove the split-brain markers of resources that replicate again."""

    resources: tuple[str, ...]

    def describe(self) -> str:
        markers = (f"{layout.SPLIT_BRAIN_DIR}/{layout.SPLIT_BRAIN_PREFIX}{name}" for name in self.resources)
        return f"{self.node}: rm -f {' '.join(markers)}"


@dataclass(frozen=True)
class CreateDrbdMetadata(NodeOperation):
    """Metadata for a replaced node's empty disks (a full resync from the peer follows).

    One operation for all its resources: the disks are re-checked once, before the
    first create-md (which itself writes to the shared meta disk)."""

    destructive = True
    resources: tuple[str, ...]

    def describe(self) -> str:
        names = " ".join(self.resources)
        return f"{self.node}: drbdadm -- --force create-md {names} (disks re-checked empty first)"


@dataclass(frozen=True)
class DrbdUp(NodeOperation):
    resources: tuple[str, ...]

    def describe(self) -> str:
        return f"{self.node}: drbdadm up {' '.join(self.resources)}"


@dataclass(frozen=True)
class DrbdAdjust(NodeOperation):
    """A running resource takes its changed configuration online."""

    resources: tuple[str, ...]

    def describe(self) -> str:
        return f"{self.node}: drbdadm adjust {' '.join(self.resources)}"


@dataclass(frozen=True)
class DrbdConnect(NodeOperation):
    resources: tuple[str, ...]

    def describe(self) -> str:
        return f"{self.node}: drbdadm connect {' '.join(self.resources)}"


@dataclass(frozen=True)
class InitializeDrbd(Operation):
    """First creation only: metadata on every node, the initial sync skipped, the config
    filesystem made on `first` with the target definition on it."""

    side = "node"
    destructive = True
    first: str
    nodes: tuple[str, ...]
    target_definition_sha256: str

    def describe(self) -> str:
        names = " ".join(r.name for r in layout.RESOURCES)
        return (
            f"{', '.join(self.nodes)}: drbdadm create-md + up {names} (disks re-checked empty first); "
            f"{self.first}: drbdadm new-current-uuid --clear-bitmap, mkfs.{layout.CONFIG_FSTYPE} "
            f"{layout.CONFIG.device}, write {layout.TARGET_DEFINITION}"
        )


@dataclass(frozen=True)
class EnableService(NodeOperation):
    unit: str

    def describe(self) -> str:
        return f"{self.node}: systemctl enable {self.unit}"


@dataclass(frozen=True)
class StartService(NodeOperation):
    unit: str

    def describe(self) -> str:
        return f"{self.node}: systemctl start {self.unit}"


@dataclass(frozen=True)
class RestartService(NodeOperation):
    unit: str

    def describe(self) -> str:
        return f"{self.node}: systemctl restart {self.unit}"


@dataclass(frozen=True)
class WriteTargetDefinition(NodeOperation):
    """The target definition on the config volume (it holds the CHAP secret)."""

    content_sha256: str

    def describe(self) -> str:
        return f"{self.node}: write {layout.TARGET_DEFINITION} (sha256 {self.content_sha256[:12]})"


@dataclass(frozen=True)
class StartTarget(NodeOperation):
    def describe(self) -> str:
        return f"{self.node}: /etc/ha.d/resource.d/{layout.TARGET_SCRIPT} start"


@dataclass(frozen=True)
class LoadCib(NodeOperation):
    """Our part of Pacemaker's CIB (cluster options, the vsa-serve resource), loaded
    section by section once the cluster has quorum; other constraints (the fence-peer
    handler's) are kept."""

    content_sha256: str

    def describe(self) -> str:
        return (
            f"{self.node}: cibadmin --modify --allow-create -o crm_config; cibadmin --replace -o resources "
            f"(sha256 {self.content_sha256[:12]})"
        )


@dataclass(frozen=True)
class CleanupServe(NodeOperation):
    """Clear vsa-serve's failures, so Pacemaker starts it again where it may run."""

    def describe(self) -> str:
        return f"{self.node}: crm_resource --cleanup --resource vsa-serve"


@dataclass(frozen=True)
class WaitServing(Operation):
    """Until one node holds the VIP with the target running (the cluster manager takes over)."""

    side = "node"

    def describe(self) -> str:
        return "every node: wait until one holds the VIP and its target runs"
