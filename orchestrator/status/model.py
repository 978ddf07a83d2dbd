"""What `status` observed, as plain data: the JSON document is asdict() of SiteStatus.

Field names are the contract for scripts (`status --json`); add, never rename.
No field ever holds a secret (the CHAP secret and the DRBD/heartbeat keys are
never read).
"""

from dataclasses import dataclass, field


@dataclass
class Expected:
    iqn: str
    vip: str
    datastore: str
    target_kind: str
    serial: str  # the LUN's unit serial (LIO)
    naa: str  # the NAA id ESXi must see
    manager: str = "heartbeat"  # the plan's cluster manager
    two_node: bool = False  # Pacemaker with two votes (ha.two_node): no protection from a split
    witness: str | None = None  # the witness node's name, when the plan has one


@dataclass
class DrbdView:
    resource: str
    minor: int
    configured: bool
    connection: str | None = None  # cs: Connected, WFConnection, StandAlone, SyncSource, ...
    role: str | None = None
    peer_role: str | None = None
    disk: str | None = None
    peer_disk: str | None = None
    out_of_sync_kib: int | None = None
    sync_percent: float | None = None
    sync_finish: str | None = None
    split_brain: bool = False  # DRBD's split-brain handler left its marker on this node


@dataclass
class TargetView:
    iqn: str
    tpg: int
    enabled: bool
    chap: bool
    lun: int | None = None
    device: str | None = None
    serial: str | None = None
    naa: str | None = None


@dataclass
class NodeView:
    node: str
    vm: str
    esxi: str
    address: str
    vm_found: bool = False
    power: str | None = None  # poweredOn / poweredOff / suspended (vSphere)
    vm_host: str | None = None  # the host the VM runs on
    reachable: bool = False
    error: str | None = None  # why the node was not read
    drbd: list[DrbdView] = field(default_factory=list)
    heartbeat_running: bool | None = None  # with manager "heartbeat"
    heartbeat_resources: str | None = None  # cl_status rscstatus: all, local, foreign, none, transition
    holds_vip: bool | None = None
    config_mounted: bool | None = None
    target_running: bool | None = None  # the resource script's status: running exactly as defined
    targets: list[TargetView] = field(default_factory=list)
    manager: str | None = None  # the plan's cluster manager: heartbeat or pacemaker
    manager_running: bool | None = None  # all of its units active
    quorate: bool | None = None  # Pacemaker's quorum as this node sees it
    votes: int | None = None  # Corosync's votes present in this node's partition (pacemaker)
    expected_votes: int | None = None  # and the votes the cluster has


@dataclass
class WitnessView:
    """The witness VM: a Corosync member (the third vote) whose Pacemaker holds a copy of the CIB."""

    node: str
    vm: str
    esxi: str
    address: str
    vm_found: bool = False
    power: str | None = None
    reachable: bool = False
    error: str | None = None
    corosync_running: bool | None = None
    pacemaker_running: bool | None = None


@dataclass
class PathView:
    name: str
    state: str  # active, standby, disabled, dead, unknown
    working: bool


@dataclass
class HostView:
    host: str
    found: bool
    connection: str | None = None  # connected / disconnected / notResponding
    adapter: str | None = None
    adapter_enabled: bool = False
    send_target: bool = False  # VIP:3260 configured
    lun: str | None = None  # naa id of our IQN's LUN, when visible
    paths: list[PathView] = field(default_factory=list)
    datastore_mounted: bool = False
    datastore_accessible: bool = False


@dataclass
class DatastoreView:
    name: str
    found: bool
    naa: str | None = None


@dataclass
class ClusterView:
    name: str | None
    checked: bool  # False: no [cluster] in the plan, or connected to an ESXi host (see note)
    note: str | None = None
    exists: bool = False
    ha_enabled: bool = False
    host_monitoring: str | None = None
    hosts_outside: list[str] = field(default_factory=list)


@dataclass
class SiteStatus:
    plan: str
    expected: Expected
    nodes: list[NodeView]
    active_node: str | None
    hosts: list[HostView]
    datastore: DatastoreView
    cluster: ClusterView
    problems: list[str] = field(default_factory=list)
    witness: WitnessView | None = None

    @property
    def healthy(self) -> bool:
        return not self.problems
