"""The cluster managers a storage pair can run, behind one interface.

DRBD, the target and status are shared; a manager adds its own files, the
systemd units it runs, the secret its nodes authenticate with, and how DRBD
fences the peer (the fence-peer handler it calls while promoting).
"""

from orchestrator.guest.facts import ServicesFact
from orchestrator.guest.managers.base import ClusterManager
from orchestrator.guest.managers.heartbeat import HEARTBEAT
from orchestrator.guest.managers.pacemaker import PACEMAKER, WITNESS_BAN
from orchestrator.plan import Plan

ALL_UNITS = ("heartbeat", "corosync", "pacemaker")  # every manager's units, for mismatch checks


def manager_for(plan: Plan) -> ClusterManager:
    return PACEMAKER if plan.ha.manager == "pacemaker" else HEARTBEAT


def services_fact(plan: Plan) -> ServicesFact:
    """The services a node of this plan runs; where a witness votes, our CIB holds its ban too."""
    return ServicesFact(str(plan.network.vip), WITNESS_BAN if plan.witness is not None else None)
