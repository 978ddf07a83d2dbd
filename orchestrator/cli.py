"""Command line: `vsa-orchestrate PLAN [options]`, `vsa-orchestrate apply SAVED [options]`,
`vsa-orchestrate status PLAN [--json]` and `vsa-orchestrate lab up|down`.

Exit codes: 0 done / nothing to do, 1 error (nothing half-applied by a
refusal), 2 changes pending (dry run), 130 interrupted (Ctrl-C; one line, no traceback).
"""

import argparse
import sys
from pathlib import Path

from orchestrator.engine import EXIT_ERROR, EXIT_OK, Options, run
from orchestrator.logs import REDACTOR, close_log, open_log
from orchestrator.output import error_line, make_console, warn_about_plan
from orchestrator.plan import PlanError, load_plan
from orchestrator.saved_plan import SavedPlan, SavedPlanError, read_saved
from orchestrator.stages.contract import STAGE_ORDER


def _stage_list(text: str) -> list[str]:
    stages = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [stage for stage in stages if stage not in STAGE_ORDER]
    if unknown or not stages:
        raise argparse.ArgumentTypeError(
            f"unknown stage(s) {', '.join(unknown) or '(none)'}; choose from {','.join(STAGE_ORDER)}"
        )
    return stages


def _plan_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vsa-orchestrate",
        description="Make a site match the plan: storage VMs, DRBD/heartbeat, iSCSI, VMFS, HA. "
        "Other commands: `vsa-orchestrate apply SAVED` (a plan saved with --dry-run --out), "
        "`vsa-orchestrate status PLAN [--json]`, `vsa-orchestrate switchover PLAN [--to NODE]`, "
        "`vsa-orchestrate lab up|down|status`, "
        "`vsa-orchestrate appliance build`.",
    )
    parser.add_argument("plan", type=Path, help="the plan file (plan.toml)")
    parser.add_argument(
        "--dry-run", action="store_true", help="show the diff; change nothing (exit 2 if changes are pending)"
    )
    parser.add_argument(
        "--out",
        type=Path,
        metavar="FILE",
        help="with --dry-run: save the plan (changes, operations, fingerprints; no secret) for `apply FILE`",
    )
    parser.add_argument("--check", action="store_true", help="validate the plan only; connect to nothing")
    parser.add_argument("--yes", "-y", action="store_true", help="apply without asking")
    parser.add_argument("--json", action="store_true", help="print the diff and result as JSON")
    parser.add_argument(
        "--verbose",
        "-v",
        action="store_true",
        help="under each change, list every operation that would run (vSphere method or node command)",
    )
    parser.add_argument(
        "--only",
        type=_stage_list,
        default=list(STAGE_ORDER),
        metavar="STAGES",
        help=f"comma list of {','.join(STAGE_ORDER)}",
    )
    parser.add_argument(
        "--allow-destroy",
        action="append",
        default=[],
        metavar="NODE",
        help="allow replacing or deleting the named node's data disks or VM (repeatable)",
    )
    parser.add_argument("--log", type=Path, help="log file (default: <plan>.state/run.log)")
    return parser


def _apply_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vsa-orchestrate apply",
        description="Apply exactly a plan saved with `vsa-orchestrate PLAN --dry-run --out FILE`; refused "
        "(nothing applied) when the site or the plan file changed since.",
    )
    parser.add_argument("saved", type=Path, help="the saved plan file")
    parser.add_argument("--yes", "-y", action="store_true", help="apply without asking")
    parser.add_argument("--json", action="store_true", help="print the diff and result as JSON")
    parser.add_argument("--verbose", "-v", action="store_true", help="list every operation under its change")
    parser.add_argument("--log", type=Path, help="log file (default: <plan>.state/run.log)")
    return parser


EXIT_INTERRUPTED = 130  # the shell's code for a command ended by Ctrl-C


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(sys.argv[1:] if argv is None else argv)
    except KeyboardInterrupt:
        message = "interrupted (Ctrl-C): the step under way was stopped; rerun to see what is left to do"
        make_console(stderr=True).print(error_line(message))
        return EXIT_INTERRUPTED


def _main(argv: list[str]) -> int:
    if argv and argv[0] == "lab":
        from orchestrator.lab.commands import lab_main

        return lab_main(argv[1:])
    if argv and argv[0] == "status":
        from orchestrator.status.command import status_main

        return status_main(argv[1:])
    if argv and argv[0] == "switchover":
        from orchestrator.switchover import switchover_main

        return switchover_main(argv[1:])
    if argv and argv[0] == "appliance":
        from orchestrator.appliance.commands import appliance_main

        return appliance_main(argv[1:])
    saved: SavedPlan | None = None
    console = make_console()
    errors = make_console(stderr=True)
    if argv and argv[0] == "apply":
        args = _apply_parser().parse_args(argv[1:])
        try:
            saved = read_saved(args.saved)
        except SavedPlanError as err:
            errors.print(error_line(err))
            return EXIT_ERROR
        args.plan, args.dry_run, args.check, args.out = saved.plan_file, False, False, None
        args.only, args.allow_destroy = list(saved.only), list(saved.allow_destroy)
    else:
        args = _plan_parser().parse_args(argv)
        if args.out is not None and not args.dry_run:
            errors.print(error_line("--out saves a plan without applying it: use it with --dry-run"))
            return EXIT_ERROR
    try:
        plan = load_plan(args.plan)
    except PlanError as err:
        for issue in err.issues:
            errors.print(error_line(issue))
        return EXIT_ERROR
    if args.check:
        console.print(f"{args.plan}: plan {plan.name!r} is valid ({len(plan.hosts)} hosts, 2 storage nodes)")
        return EXIT_OK
    log_handler = open_log(args.log or plan.state_dir / "run.log")
    warn_about_plan(errors, plan)
    options = Options(
        dry_run=args.dry_run,
        yes=args.yes,
        json=args.json,
        verbose=args.verbose,
        only=args.only,
        allow_destroy=frozenset(node for value in args.allow_destroy for node in value.split(",") if node),
        out=args.out,
        saved=saved,
    )
    try:
        return run(plan, options, console, errors, REDACTOR)
    finally:
        close_log(log_handler)


if __name__ == "__main__":
    sys.exit(main())
