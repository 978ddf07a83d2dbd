"""The witness in the `guest` stage: Corosync's files, Corosync and Pacemaker running.

The witness is a full Corosync member (the third vote) and runs Pacemaker with no
resource (the CIB bans vsa-serve there without even probing for it) and no DRBD.
It runs Pacemaker for its copy of the CIB: a storage node outdates its peer by a
CIB constraint, and any two quorate partitions share a member, so with the witness
holding the CIB every later quorate partition knows who was outdated (the newest
CIB wins when partitions join). Pacemaker starts there only once the storage nodes'
CIB holds that ban (the `pacemaker_change`, ordered after the CIB load).
Read in one round trip like a storage node; its diff is pure.
"""

from dataclasses import dataclass
from typing import Any

from orchestrator.changes import Attr, Change
from orchestrator.guest.facts import Fact, FileHashes, Services, ServicesFact
from orchestrator.guest.managers.pacemaker import PACEMAKER
from orchestrator.guest.render import Desired, sha256
from orchestrator.operations import Operation
from orchestrator.plan import Plan
from orchestrator.stages.guest.operations import EnableService, RestartService, StartService, WriteFile

STAGE = "guest"
UNIT = "corosync"
PACEMAKER_UNIT = "pacemaker"


@dataclass(frozen=True)
class WitnessFacts:
    files: dict[str, tuple[str, int]]  # path -> (sha256, mode) of Corosync's files it holds
    services: Services


def facts_to_read(plan: Plan) -> dict[str, Fact]:
    paths = [*PACEMAKER.corosync_files(plan, "").keys()]
    return {"files": FileHashes(paths), "services": ServicesFact(str(plan.network.vip))}


def from_parsed(parsed: dict[str, Any]) -> WitnessFacts:
    return WitnessFacts(files=parsed["files"], services=parsed["services"])


def diff(node: str, desired: Desired, facts: WitnessFacts) -> Change | None:
    """Corosync's files written, its unit enabled and running (restarted when they changed)."""
    attrs: list[Attr] = []
    operations: list[Operation] = []
    stale = [
        path
        for path, file in desired.files.items()
        if facts.files.get(path) != (sha256(file.content), file.mode)
    ]
    for path in stale:
        file, current = desired.files[path], facts.files.get(path)
        before = None if current is None else f"sha256 {current[0][:12]}, mode {oct(current[1])}"
        after = f"sha256 {sha256(file.content)[:12]}, mode {oct(file.mode)}"
        attrs.append(Attr(path, before, after, sensitive=file.sensitive))
        operations.append(WriteFile(node, path, sha256(file.content), file.mode, file.sensitive, ()))
    _enable_and_start(node, UNIT, facts.services, "running", attrs, operations)
    if stale and UNIT in facts.services.active:
        attrs.append(Attr(UNIT, "running", "restarted (configuration changed)"))
        operations.append(RestartService(node, UNIT))
    if not operations:
        return None
    return Change(
        stage=STAGE,
        action="update" if facts.files else "create",
        resource=f"witness {node}",
        attrs=attrs,
        operations=tuple(operations),
    )


def pacemaker_change(node: str, facts: WitnessFacts) -> Change | None:
    """Pacemaker enabled and running on the witness (a restart of Corosync restarts it too:
    its unit requires Corosync's). Enabled only here, once the ban is loaded, so the
    witness never boots into a cluster whose CIB could place vsa-serve on it."""
    attrs: list[Attr] = []
    operations: list[Operation] = []
    running = "running (the CIB's third copy, no resource)"
    _enable_and_start(node, PACEMAKER_UNIT, facts.services, running, attrs, operations)
    if not operations:
        return None
    return Change(
        stage=STAGE,
        action="update",
        resource=f"witness {node} pacemaker",
        attrs=attrs,
        operations=tuple(operations),
    )


def _enable_and_start(
    node: str, unit: str, services: Services, running: str, attrs: list[Attr], operations: list[Operation]
) -> None:
    """Add what enables the unit at boot and starts it, where it is not so already."""
    if unit not in services.enabled:
        attrs.append(Attr(f"{unit} enabled", False, True))
        operations.append(EnableService(node, unit))
    if unit not in services.active:
        attrs.append(Attr(unit, "stopped", running))
        operations.append(StartService(node, unit))
