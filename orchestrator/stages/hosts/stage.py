"""The `hosts` stage: planned hosts that vCenter lacks are added (thumbprint pinned)."""

from orchestrator.changes import Change, Problem
from orchestrator.stages.contract import RunContext
from orchestrator.stages.hosts import apply, diff, facts
from orchestrator.stages.hosts.facts import HostsFacts
from orchestrator.stages.hosts.operations import AddHost


class HostsStage:
    name = "hosts"
    needs_vsphere = True

    def observe(self, ctx: RunContext) -> HostsFacts:
        return facts.observe(ctx.plan, ctx.snapshot, ctx.vsphere.esxi)

    def diff(self, ctx: RunContext, found: HostsFacts) -> tuple[list[Change], list[Problem]]:
        changes, problems = diff.diff(ctx.plan, found)
        for index, entry in enumerate(ctx.plan.hosts):
            if entry.add is not None and entry.esxi in found.missing:
                try:  # a password that cannot be read is a plan problem, found before the prompt
                    ctx.redactor.add(
                        entry.add.password.resolve(ctx.plan.base_dir, f"hosts[{index}].add.password")
                    )
                except ValueError as err:
                    problems.append(Problem(diff.STAGE, f"host {entry.esxi}", str(err)))
        ctx.pending_hosts = {
            op.host for change in changes for op in change.operations if isinstance(op, AddHost)
        }
        return changes, problems

    def apply(self, ctx: RunContext, change: Change) -> None:
        apply.apply(ctx, change)

    def close(self, ctx: RunContext) -> None:
        pass
