"""The `hosts` diff, pure: a planned host that vCenter lacks and whose entry
carries `add` is added (a host without `add` is the clear error it always was,
reported before any stage by stages.missing_hosts)."""

from orchestrator.changes import Attr, Change, Problem
from orchestrator.plan import Plan
from orchestrator.stages.hosts.facts import HostsFacts
from orchestrator.stages.hosts.operations import AddHost

STAGE = "hosts"


def diff(plan: Plan, facts: HostsFacts) -> tuple[list[Change], list[Problem]]:
    changes: list[Change] = []
    problems: list[Problem] = []
    for index, entry in enumerate(plan.hosts):
        if entry.esxi not in facts.missing or entry.add is None:
            continue
        if facts.esxi:
            problems.append(
                Problem(
                    STAGE,
                    f"host {entry.esxi}",
                    f"hosts[{index}].add needs vCenter: [vsphere].server is a single ESXi host, "
                    "which cannot add others; add it in vCenter or point the plan at vCenter",
                )
            )
            continue
        into = plan.cluster.name if plan.cluster and facts.cluster_id else "the datacenter (standalone)"
        note = None
        if plan.cluster and not facts.cluster_id:
            note = f"added standalone; the cluster stage moves it into {plan.cluster.name} once it exists"
        changes.append(
            Change(
                stage=STAGE,
                action="create",
                resource=f"host {entry.esxi}",
                attrs=[
                    Attr("into", None, into),
                    Attr("user", None, entry.add.user),
                    Attr("thumbprint", None, f"{entry.add.thumbprint} (pinned)"),
                ],
                note=note,
                operations=(
                    AddHost(
                        host=entry.esxi,
                        user=entry.add.user,
                        thumbprint=entry.add.thumbprint,
                        host_folder=facts.host_folder,
                        cluster_id=facts.cluster_id,
                    ),
                ),
            )
        )
    return changes, problems
