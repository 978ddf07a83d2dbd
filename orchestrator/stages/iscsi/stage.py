"""The `iscsi` stage: every host's software iSCSI adapter logs in to the VIP."""

from functools import partial

from orchestrator.changes import Change, Problem
from orchestrator.stages.contract import RunContext
from orchestrator.stages.iscsi import apply, diff, facts
from orchestrator.stages.iscsi.facts import HostIscsi


class IscsiStage:
    name = "iscsi"
    needs_vsphere = True

    def observe(self, ctx: RunContext) -> list[HostIscsi]:
        return facts.observe(ctx.plan, ctx.snapshot, partial(apply.bound_vnics, ctx))

    def diff(self, ctx: RunContext, hosts: list[HostIscsi]) -> tuple[list[Change], list[Problem]]:
        return diff.diff(ctx.plan, hosts, ctx.pending_vmknics)

    def apply(self, ctx: RunContext, change: Change) -> None:
        apply.apply(ctx, change)

    def close(self, ctx: RunContext) -> None:
        pass
