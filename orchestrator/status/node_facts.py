"""Node facts only `status` needs, pyinfra style (a `command` and a `process`).

They complement orchestrator/guest/facts.py (ProcDrbd, ServicesFact), which
status reuses as they are. Every command only reads.
"""

import re
from dataclasses import dataclass

from orchestrator.guest.facts import DrbdState, ProcDrbd
from orchestrator.guest.render import naa_from_serial

CONFIGFS = "/sys/kernel/config/target"


@dataclass(frozen=True)
class DrbdResourceStatus:
    state: DrbdState
    sync_percent: float | None  # while SyncSource/SyncTarget/Verify*: percent done
    finish: str | None  # the kernel's estimate, h:mm:ss


class DrbdStatus:
    """/proc/drbd (DRBD 8.4) with resync progress: {minor: DrbdResourceStatus}.

    While resyncing, 8.4 adds under the minor's counters:
        \\t[===>................] sync'ed: 18.9% (3324/4096)M
        \\tfinish: 0:00:41 speed: 19,848 (19,848) K/sec
    (`verified:` instead of `sync'ed:` during an online verify).
    """

    command = ProcDrbd.command
    _progress = re.compile(r"(?:sync'ed|verified):\s*([\d.]+)%")
    _finish = re.compile(r"finish:\s*(\d+:\d\d:\d\d)")
    _minor = re.compile(r"^\s*(\d+):\s*cs:")

    def process(self, output: str) -> dict[int, DrbdResourceStatus]:
        states = ProcDrbd().process(output)
        progress: dict[int, float] = {}
        finish: dict[int, str] = {}
        minor = None
        for line in output.splitlines():
            if match := self._minor.match(line):
                minor = int(match.group(1))
                continue
            if minor is None:
                continue
            if match := self._progress.search(line):
                progress[minor] = float(match.group(1))
            if match := self._finish.search(line):
                finish[minor] = match.group(1)
        return {
            minor: DrbdResourceStatus(state, progress.get(minor), finish.get(minor))
            for minor, state in states.items()
        }


@dataclass(frozen=True)
class Votes:
    total: int  # votes present in this node's partition
    expected: int  # votes the cluster has (quorum: more than half)


class QuorumVotes:
    """Corosync's votes as this node sees them (`corosync-quorumtool -s`); None when it does not answer."""

    command = "corosync-quorumtool -s 2>/dev/null | grep -E '^(Expected|Total) votes:'; true"
    _line = re.compile(r"^(Expected|Total) votes:\s*(\d+)", re.MULTILINE)

    def process(self, output: str) -> Votes | None:
        found = {kind: int(count) for kind, count in self._line.findall(output)}
        if "Total" not in found or "Expected" not in found:
            return None
        return Votes(total=found["Total"], expected=found["Expected"])


class HeartbeatResources:
    """Which resource group heartbeat says this node holds (`cl_status rscstatus`):
    "all", "local", "foreign", "none" or "transition"; None when heartbeat does not answer."""

    command = "cl_status rscstatus 2>/dev/null || echo unknown"
    _known = frozenset({"all", "local", "foreign", "none", "transition"})

    def process(self, output: str) -> str | None:
        value = output.strip().splitlines()[0].strip() if output.strip() else ""
        return value if value in self._known else None


@dataclass(frozen=True)
class LioLun:
    lun: int
    backstore: str  # e.g. "iblock_0/vsa-lun0"
    device: str  # the backstore's udev_path, e.g. /dev/drbd1
    serial: str  # the T10 VPD unit serial

    @property
    def naa(self) -> str:
        return naa_from_serial(self.serial)


@dataclass(frozen=True)
class LioTpg:
    iqn: str
    tpg: int
    enabled: bool
    authentication: bool  # CHAP required (the TPG's attrib/authentication)
    luns: tuple[LioLun, ...] = ()


class LioTargets:
    """The LIO iSCSI targets in configfs: [LioTpg, ...]; [] when none (or no configfs).

    Layout read (kernel target core, as rtslib/targetcli create it):
        iscsi/<iqn>/tpgt_<n>/enable, .../attrib/authentication,
        iscsi/<iqn>/tpgt_<n>/lun/lun_<m>/<link> -> core/<hba>/<backstore>,
        core/<hba>/<backstore>/udev_path, .../wwn/vpd_unit_serial.
    The CHAP credentials (auth/) are never read.
    """

    def __init__(self, root: str = CONFIGFS):
        self.root = root

    @property
    def command(self) -> str:
        root = self.root
        return (
            f'for tpg in {root}/iscsi/*/tpgt_*; do [ -d "$tpg" ] || continue; '
            'echo "tpg $tpg"; echo "enable $(cat $tpg/enable)"; '
            'echo "authentication $(cat $tpg/attrib/authentication)"; '
            'for link in $tpg/lun/lun_*/*; do [ -L "$link" ] || continue; so=$(readlink -f "$link"); '
            'echo "lun $link $so"; echo "udev_path $(cat $so/udev_path)"; '
            'echo "serial $(cat $so/wwn/vpd_unit_serial)"; done; done; true'
        )

    def process(self, output: str) -> list[LioTpg]:
        tpgs: list[dict] = []
        lun: dict | None = None
        for line in output.splitlines():
            key, _, value = line.strip().partition(" ")
            if key == "tpg":
                iqn_dir, tpgt = value.rstrip("/").rsplit("/", 2)[-2:]
                tpgs.append({"iqn": iqn_dir, "tpg": int(tpgt.removeprefix("tpgt_")), "luns": []})
                lun = None
            elif not tpgs:
                continue
            elif key == "enable":
                tpgs[-1]["enabled"] = value.strip() == "1"
            elif key == "authentication":
                tpgs[-1]["authentication"] = value.strip() == "1"
            elif key == "lun":
                link, _, backstore = value.partition(" ")
                lun_dir = link.rstrip("/").rsplit("/", 2)[-2]
                backstore = "/".join(backstore.split("/")[-2:])
                lun = {"lun": int(lun_dir.removeprefix("lun_")), "backstore": backstore}
                tpgs[-1]["luns"].append(lun)
            elif key == "udev_path" and lun is not None:
                lun["device"] = value.strip()
            elif key == "serial" and lun is not None:
                lun["serial"] = value.rsplit(":", 1)[-1].strip()
        return [
            LioTpg(
                iqn=tpg["iqn"],
                tpg=tpg["tpg"],
                enabled=tpg.get("enabled", False),
                authentication=tpg.get("authentication", False),
                luns=tuple(
                    LioLun(lun["lun"], lun["backstore"], lun.get("device", ""), lun.get("serial", ""))
                    for lun in sorted(tpg["luns"], key=lambda item: item["lun"])
                ),
            )
            for tpg in tpgs
        ]
