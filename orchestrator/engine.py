"""observe -> diff -> confirm -> apply -> observe again, stage by stage.

Nothing is applied while any selected stage reports a Problem, so a refused
run leaves the site exactly as it was.
"""

import logging
import sys
import time
from dataclasses import dataclass, field
from http.client import HTTPException
from pathlib import Path
from typing import Any

from pyVmomi import vmodl
from rich.console import Console
from rich.prompt import Confirm

from orchestrator.changes import Change, Problem, problems_json, render_json, render_problems, render_text
from orchestrator.guest.ssh import GuestError
from orchestrator.logs import Redactor
from orchestrator.output import error_line
from orchestrator.plan import Plan
from orchestrator.progress import Reporter
from orchestrator.saved_plan import SavedPlan, SavedPlanError, stale, write_saved
from orchestrator.stages import STAGES, missing_hosts
from orchestrator.stages.contract import STAGE_ORDER, RunContext, Stage
from orchestrator.state import StateDir
from orchestrator.vsphere.session import VSphereError, connect, fault_msg

log = logging.getLogger(__name__)

EXIT_OK, EXIT_ERROR, EXIT_PENDING = 0, 1, 2


@dataclass
class Options:
    dry_run: bool = False
    yes: bool = False
    json: bool = False
    verbose: bool = False
    only: list[str] = field(default_factory=lambda: list(STAGE_ORDER))
    allow_destroy: frozenset[str] = frozenset()
    out: Path | None = None  # with dry_run: save the plan there (saved_plan.py)
    saved: SavedPlan | None = None  # apply exactly this saved plan


class RunError(Exception):
    """A runtime fault explained in one line."""


# Faults a command reports as one line (one_line), never as a traceback.
RUN_ERRORS = (
    RunError,
    SavedPlanError,
    VSphereError,
    GuestError,
    ValueError,
    vmodl.MethodFault,
    OSError,
    HTTPException,
)


def run(
    plan: Plan,
    options: Options,
    console: Console,
    errors: Console,
    redactor: Redactor,
) -> int:
    """One run; the diff and results go to `console` (stdout), progress and
    error lines to `errors` (stderr)."""
    payload: dict[str, Any] = {"plan": plan.name, "dry_run": options.dry_run}
    stages = [STAGES[name] for name in STAGE_ORDER if name in options.only]
    try:
        code = _run(plan, options, console, errors, redactor, stages, payload)
    except RUN_ERRORS as err:
        message = one_line(err)
        log.error("%s", message)
        payload["error"] = message
        if not options.json:
            errors.print(error_line(message))
        code = EXIT_ERROR
    payload["exit_code"] = code
    if options.json:
        print(render_json(payload))
    return code


def one_line(err: BaseException) -> str:
    """Faults we did not anticipate still read as one line, never a traceback."""
    if isinstance(err, vmodl.MethodFault):
        kind = type(err).__name__.rsplit(".", 1)[-1]
        detail = fault_msg(err) or "no details"
        return f"vSphere refused the request ({kind}): {detail}; nothing further was changed"
    if isinstance(err, OSError | HTTPException):
        return f"lost the connection to vSphere ({err}); rerun when it is reachable again"
    return str(err)


def _run(
    plan: Plan,
    options: Options,
    console: Console,
    errors: Console,
    redactor: Redactor,
    stages: list[Stage[Any]],
    payload: dict[str, Any],
) -> int:
    state = StateDir(plan.state_dir, persist=False)  # nothing is written before the confirmation
    reporter = Reporter(None if options.json else errors)
    session = None
    if any(stage.needs_vsphere for stage in stages):
        password = plan.resolve_password()
        redactor.add(password)
        session = connect(plan, password)
    ctx = RunContext(
        plan=plan,
        session=session,
        state=state,
        reporter=reporter,
        allow_destroy=options.allow_destroy,
        redactor=redactor,
        stages=tuple(stage.name for stage in stages),
    )
    try:
        changes, problems = _plan_all(ctx, stages)
        payload["notes"] = list(ctx.notes)
        if not options.json:
            for note in ctx.notes:
                console.print(note)
        payload["changes"] = [change.as_json() for change in changes]
        payload["problems"] = problems_json(problems)
        if problems:
            # The changes are not shown: a refused run must not read as a plan.
            payload["changes"] = []
            if not options.json:
                render_problems(errors, problems)
                errors.print(f"Nothing was changed: {len(problems)} problem(s) to fix first.")
            return EXIT_ERROR
        if options.saved is not None:
            outdated = stale(list(options.saved.changes), changes)
            if outdated:
                payload["changes"] = []
                payload["stale"] = outdated
                if not options.json:
                    for line in outdated:
                        errors.print(error_line(line))
                    errors.print(
                        f"Nothing was changed: the site changed since {options.saved.path} was saved; "
                        "make a new plan with --dry-run --out"
                    )
                return EXIT_ERROR
        if not options.json:
            render_text(console, changes, options.verbose)
        if options.out is not None:
            write_saved(options.out, plan.path, list(ctx.stages), options.allow_destroy, changes)
            if not options.json:
                how = f"`vsa-orchestrate apply {options.out}`"
                console.print(f"Saved the plan to {options.out}; apply exactly it with {how}.")
        if not changes:
            if not options.dry_run:  # a lost state folder is restored from what the site holds
                state.persist_from_now()
            if not options.json:
                console.print("No changes: the site matches the plan.")
            return EXIT_OK
        if options.dry_run:
            if not options.json:
                console.print(f"{len(changes)} change(s) pending (dry run: nothing was changed).")
            return EXIT_PENDING
        _confirm(options, console, len(changes))
        state.persist_from_now()
        payload["applied"] = _apply_all(ctx, stages, console, options)
        remaining, problems = _plan_all(ctx, stages)
        if remaining or problems:
            left = ", ".join(change.resource for change in remaining) or "; ".join(map(str, problems))
            raise RunError(f"applied, but the site still differs from the plan: {left}")
        if not options.json:
            console.print(f"Applied {len(changes)} change(s); the site matches the plan.")
        return EXIT_OK
    finally:
        for stage in stages:
            stage.close(ctx)
        if session is not None:
            session.close()


def _plan_all(ctx: RunContext, stages: list[Stage[Any]]) -> tuple[list[Change], list[Problem]]:
    ctx.refresh()
    ctx.notes.clear()
    ctx.pending_hosts, ctx.pending_portgroups, ctx.pending_vmknics = set(), {}, {}
    adding = "hosts" in ctx.stages
    missing = missing_hosts(ctx.plan, ctx.inventory, adding) if ctx.inventory else []
    if missing:
        return [], missing
    changes: list[Change] = []
    problems: list[Problem] = []
    for index, stage in enumerate(stages):
        if ctx.pending_hosts:
            # The later stages need the new hosts: they are planned and applied right after
            # the hosts are added, in this same run (as the guest stage configures new VMs).
            later = ", ".join(later.name for later in stages[index:])
            ctx.notes.append(
                f"Stages {later} are planned once {', '.join(sorted(ctx.pending_hosts))} "
                "is added, and applied in this run; --dry-run again after adding to see them first."
            )
            break
        stage_changes, stage_problems = stage.diff(ctx, stage.observe(ctx))
        changes += stage_changes
        problems += stage_problems
    return changes, problems


def _apply_all(
    ctx: RunContext, stages: list[Stage[Any]], console: Console, options: Options
) -> list[dict[str, Any]]:
    applied = []
    ctx.applying = True
    changed = False  # whether an earlier stage of this run applied anything
    try:
        for index, stage in enumerate(stages):
            done = _apply_stage(ctx, stage, index, console, options, changed)
            changed = changed or bool(done)
            applied += done
    finally:
        ctx.applying = False
    return applied


def _apply_stage(
    ctx: RunContext, stage: Stage[Any], index: int, console: Console, options: Options, changed: bool
) -> list[dict[str, Any]]:
    """Observe the stage again (earlier stages changed the site) and apply its changes.

    A saved plan's stage is applied only as saved while no earlier stage of this run
    changed anything; after one did, the stage applies what it depends on (e.g. the
    LUN's naa once the guest stage serves it), as every confirmed run does."""
    if index:
        ctx.refresh()
    began = time.monotonic()
    changes, problems = stage.diff(ctx, stage.observe(ctx))
    if problems:
        raise RunError("; ".join(map(str, problems)))
    if options.saved is not None and not changed:
        outdated = stale(options.saved.of_stage(stage.name), changes)
        if outdated:
            raise RunError(
                f"stage {stage.name}: the site changed while applying the saved plan: {outdated[0]}"
            )
    applied = []
    for change in changes:
        log.info("applying %s %s", change.action, change.resource)
        for operation in change.operations:
            log.info("  %s", operation.describe())
        stage.apply(ctx, change)
        applied.append(change.as_json())
    seconds = time.monotonic() - began
    log.info("stage %s applied in %.1f s", stage.name, seconds)
    if not options.json:
        console.print(f"stage {stage.name}: {len(changes)} change(s) in {seconds:.1f} s")
    return applied


def _confirm(options: Options, console: Console, count: int) -> None:
    if options.yes:
        return
    if options.json or not sys.stdin.isatty():
        raise RunError("refusing to apply without confirmation: no terminal to ask on; rerun with --yes")
    if not Confirm.ask(f"Apply these {count} change(s)?", console=console, default=False):
        raise RunError("not applied: cancelled at the prompt")
