"""The cluster managers a storage pair can run, behind one interface.

DRBD, the target and status are shared; a manager adds its own files, the
systemd units it runs, the secret its nodes authenticate with, and how DRBD
fences the peer (the fence-peer handler it calls while promoting).
"""

from orchestrator.guest.managers.base import ClusterManager
from orchestrator.guest.managers.heartbeat import HEARTBEAT
from orchestrator.guest.managers.pacemaker import PACEMAKER
from orchestrator.plan import Plan

ALL_UNITS = ("heartbeat", "corosync", "pacemaker")  # every manager's units, for mismatch checks


def manager_for(plan: Plan) -> ClusterManager:
    return PACEMAKER if plan.ha.manager == "pacemaker" else HEARTBEAT
