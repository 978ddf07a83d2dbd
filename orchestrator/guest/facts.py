"""Node facts, pyinfra style: each fact is the shell `command` that reads it
and a `process(output)` that parses it. All facts of a node are read in one
SSH command (sections between markers), so observing costs one round trip.
Parsers are tested on output captured from a real lab VM (tests/unit/fixtures).
"""

import json
import re
from dataclasses import dataclass, field
from typing import Any, Protocol

from orchestrator.guest import layout

MARKER = "### vsa-fact "


class Fact(Protocol):
    """What every fact here is: the shell command that reads it, the parser of its output."""

    @property
    def command(self) -> str: ...

    def process(self, output: str) -> Any: ...


@dataclass(frozen=True)
class Disk:
    name: str
    hctl: str
    size: int
    path: str  # stable /dev/disk/by-path link (or /dev/NAME when none)
    signature: str | None  # filesystem / partition table / RAID signature blkid finds


class Disks:
    """The VM's disks other than the OS disk, in SCSI address order: meta, config, data.

    Returns [Disk, ...]. The OS disk is the one holding / (or a partition of it).
    """

    command = (
        "lsblk -J -b -o NAME,HCTL,SIZE,TYPE,MOUNTPOINT,PKNAME; echo '#by-path'; "
        'for link in /dev/disk/by-path/*; do [ -e "$link" ] && echo "$link $(readlink -f $link)"; done; '
        "echo '#signatures'; for dev in /sys/block/sd*; do d=/dev/${dev##*/}; "
        "echo \"$d $(blkid -p -s TYPE -s PTTYPE -o value $d 2>/dev/null | tr '\\n' ' ')\"; done"
    )

    def process(self, output: str) -> list[Disk]:
        tree, rest = output.split("#by-path", 1)
        links_text, signatures_text = rest.split("#signatures", 1)
        links: dict[str, str] = {}
        for line in links_text.split("\n"):
            if line.strip():
                link, target = line.split()
                if "-part" not in link:
                    links.setdefault(target, link)
        signatures = {}
        for line in signatures_text.split("\n"):
            if line.strip():
                device, *found = line.split()
                signatures[device] = " ".join(found) or None
        devices = json.loads(tree)["blockdevices"]
        disks = [device for device in devices if device["type"] == "disk" and device["name"].startswith("sd")]
        os_disk = next((disk["name"] for disk in disks if _holds_root(disk)), None)
        data = sorted(
            (disk for disk in disks if disk["name"] != os_disk), key=lambda disk: _hctl_key(disk["hctl"])
        )
        return [
            Disk(
                name=disk["name"],
                hctl=disk["hctl"],
                size=int(disk["size"]),
                path=links.get(f"/dev/{disk['name']}", f"/dev/{disk['name']}"),
                signature=signatures.get(f"/dev/{disk['name']}"),
            )
            for disk in data
        ]


def _holds_root(device: dict[str, Any]) -> bool:
    if device.get("mountpoint") == "/":
        return True
    return any(_holds_root(child) for child in device.get("children") or [])


def _hctl_key(hctl: str) -> tuple[int, ...]:
    return tuple(int(part) for part in hctl.split(":"))


@dataclass(frozen=True)
class DrbdState:
    cs: str  # connection state, e.g. Connected, WFConnection, StandAlone
    ro: str  # roles, e.g. Primary/Secondary
    ds: str  # disk states, e.g. UpToDate/UpToDate
    oos: int  # KiB out of sync


# Connection states in which the two nodes replicate again: a split brain is over.
REPLICATING = ("Connected", "SyncSource", "SyncTarget", "PausedSyncS", "PausedSyncT")


class ProcDrbd:
    """/proc/drbd (DRBD 8.4): {minor: DrbdState}; {} when the module is not loaded."""

    command = "cat /proc/drbd 2>/dev/null || true"
    _line = re.compile(r"^\s*(\d+): cs:(\S+) ro:(\S+) ds:(\S+)")

    def process(self, output: str) -> dict[int, DrbdState]:
        states: dict[int, DrbdState] = {}
        minor = None
        for line in output.splitlines():
            if match := self._line.match(line):
                minor = int(match.group(1))
                states[minor] = DrbdState(match.group(2), match.group(3), match.group(4), 0)
            elif minor is not None and (oos := re.search(r"oos:(\d+)", line)):
                states[minor] = DrbdState(**{**states[minor].__dict__, "oos": int(oos.group(1))})
        return states


class DrbdMetadata:
    """Whether valid DRBD metadata exists in each resource's slot on the meta disk:
    {resource name: bool}. Read with drbdmeta, so it works before any config exists."""

    def __init__(self, meta_path: str | None):
        self.meta_path = meta_path

    @property
    def command(self) -> str:
        if self.meta_path is None:
            return "true"
        checks = [
            f"drbdmeta --force {r.minor} v08 '{self.meta_path}' {r.meta_index} get-gi >/dev/null 2>&1; "
            f"echo {r.name} $?"
            for r in layout.RESOURCES
        ]
        return "; ".join(checks)

    def process(self, output: str) -> dict[str, bool]:
        found = {}
        for line in output.splitlines():
            if line.strip():
                name, code = line.split()
                found[name] = code == "0"
        return found


class FileHashes:
    """sha256 and mode of each managed file: {path: (sha256, mode)}; absent files are left out."""

    def __init__(self, paths: list[str]):
        self.paths = paths

    @property
    def command(self) -> str:
        quoted = " ".join(self.paths)
        line = "$(sha256sum < $f | cut -d' ' -f1) $(stat -c %a $f) $f"
        return f'for f in {quoted}; do [ -f $f ] && echo "{line}"; done; true'

    def process(self, output: str) -> dict[str, tuple[str, int]]:
        hashes = {}
        for line in output.splitlines():
            if line.strip():
                digest, mode, path = line.split(maxsplit=2)
                hashes[path] = (digest, int(mode, 8))
        return hashes


UNITS = ("heartbeat", "corosync", "pacemaker", "drbd")  # every cluster manager's, and DRBD's


@dataclass(frozen=True)
class Services:
    active: frozenset[str]  # of UNITS, those running
    enabled: frozenset[str]  # of UNITS, those started at boot
    config_mounted: bool
    vip_here: bool
    target_running: bool
    dopd_ready: bool
    quorate: bool | None = None  # Pacemaker's view (crm_node -q); None where it does not run
    cib_loaded: bool = False  # our vsa-serve resource (and the witness ban, if any) is in Pacemaker's CIB


class ServicesFact:
    """The cluster managers' units and DRBD's, the config volume, the VIP, the target,
    dopd's helper permissions and, where Pacemaker runs, quorum and our CIB resource."""

    def __init__(self, vip: str, witness_ban: str | None = None):
        self.vip = vip
        self.witness_ban = witness_ban  # the constraint our CIB also holds, when there is a witness

    @property
    def command(self) -> str:
        return (
            f"systemctl show -p Id,ActiveState,UnitFileState {' '.join(UNITS)}; "
            f"echo config_mounted $(findmnt -n {layout.CONFIG_MOUNT} >/dev/null && echo yes || echo no); "
            f"echo vip_here $(ip -o -4 addr show | grep -q ' {self.vip}/' && echo yes || echo no); "
            f"echo target_running $(/etc/ha.d/resource.d/{layout.TARGET_SCRIPT} status 2>/dev/null "
            "|| echo stopped); "
            "echo dopd_ready "
            "$(stat -c %a:%G /usr/sbin/drbdmeta /lib/drbd/drbdsetup-84 | sort -u | tr '\\n' ' '); "
            "if systemctl -q is-active pacemaker; then "
            "echo quorate $(crm_node -q 2>/dev/null); "
            f"echo cib_loaded $({self._loaded_probe} && echo yes || echo no); fi"
        )

    @property
    def _loaded_probe(self) -> str:
        queries = ["//primitive[@id='vsa-serve']"]
        if self.witness_ban:
            queries.append(f"//rsc_location[@id='{self.witness_ban}']")
        return " && ".join(f'cibadmin -Q --xpath "{query}" >/dev/null 2>&1' for query in queries)

    def process(self, output: str) -> Services:
        units: dict[str, dict[str, str]] = {}  # `systemctl show`: one block of KEY=value per unit
        block: dict[str, str] = {}
        values: dict[str, str] = {}
        for line in [*output.splitlines(), ""]:
            key, eq, value = line.partition("=")
            if eq and key in ("Id", "ActiveState", "UnitFileState"):
                block[key] = value
                continue
            if "Id" in block:
                units[block["Id"].removesuffix(".service")] = block
            block = {}
            if " " in line:
                name, _, rest = line.partition(" ")
                values[name] = rest.strip()
        quorate = values.get("quorate")
        return Services(
            active=frozenset(u for u, state in units.items() if state.get("ActiveState") == "active"),
            enabled=frozenset(u for u, state in units.items() if state.get("UnitFileState") == "enabled"),
            config_mounted=values.get("config_mounted") == "yes",
            vip_here=values.get("vip_here") == "yes",
            target_running=values.get("target_running") == "running",
            dopd_ready=values.get("dopd_ready") == "4750:haclient",
            quorate=None if quorate is None else quorate == "1",
            cib_loaded=values.get("cib_loaded") == "yes",
        )


class TargetDefinitionHash:
    """sha256 of the target definition on the config volume; None where it is not mounted."""

    command = f"[ -f {layout.TARGET_DEFINITION} ] && sha256sum < {layout.TARGET_DEFINITION} | cut -d' ' -f1"
    command += "; true"  # absent on the standby node

    def process(self, output: str) -> str | None:
        return output.strip() or None


class SplitBrainMarkers:
    """Resources whose split-brain handler fired on this node (layout.SPLIT_BRAIN_DIR): {name}."""

    command = f"ls {layout.SPLIT_BRAIN_DIR} 2>/dev/null || true"

    def process(self, output: str) -> set[str]:
        prefix = layout.SPLIT_BRAIN_PREFIX
        return {name.removeprefix(prefix) for name in output.split() if name.startswith(prefix)}


class DeployedSecrets:
    """The secrets a configured node already uses, read only when the state folder
    lost them (so a rerun adopts them instead of rotating): {name: value}.
    `cluster` is the manager's secret (its name, and the command reading it back)."""

    def __init__(self, cluster: str, cluster_readback: str):
        self.cluster = cluster
        self.cluster_readback = cluster_readback

    @property
    def command(self) -> str:
        return (
            f"echo drbd $(sed -n 's/^ *shared-secret \"\\(.*\\)\";$/\\1/p' "
            f"/etc/drbd.d/{layout.CONFIG.name}.res 2>/dev/null | head -n1); "
            f"echo {self.cluster} $({self.cluster_readback}); "
            'echo chap $(sed -n \'s/^ *"password": "\\(.*\\)",\\?$/\\1/p\' '
            f"{layout.TARGET_DEFINITION} 2>/dev/null)"
        )

    def process(self, output: str) -> dict[str, str]:
        found = {}
        for line in output.splitlines():
            name, _, value = line.partition(" ")
            if value.strip():
                found[name] = value.strip()
        return found


@dataclass
class NodeFacts:
    disks: list[Disk]
    drbd: dict[int, DrbdState]
    metadata: dict[str, bool]
    files: dict[str, tuple[str, int]]
    services: Services
    target_definition: str | None = None  # TargetDefinitionHash, where the config volume is mounted
    split_brain: set[str] = field(default_factory=set)  # resources whose split-brain marker is set
    secrets: dict[str, str] = field(default_factory=dict)  # DeployedSecrets, when they were read


def script(facts: dict[str, Any]) -> str:
    """One shell script printing every fact's output after its marker."""
    return "; ".join(f"echo '{MARKER}{name}'; {fact.command}" for name, fact in facts.items())


def split(output: str) -> dict[str, str]:
    sections: dict[str, str] = {}
    name = None
    for line in output.splitlines(keepends=True):
        if line.startswith(MARKER):
            name = line[len(MARKER) :].strip()
            sections[name] = ""
        elif name is not None:
            sections[name] += line
    return sections
