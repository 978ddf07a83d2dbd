"""Saved plans, as Terraform has them: `--dry-run --out FILE` writes the changes a
run decided, `vsa-orchestrate apply FILE` applies exactly those.

Each saved change carries a fingerprint (`basis`) of what it was decided on:
its resource, action, every attribute's before/after as shown (the observed
facts the diff compared) and its operations (the ids and values they name).
The diff is a pure function of plan and facts, so a fresh diff that yields the
same fingerprints decides exactly what was saved; any fact that changed the
decision changes a fingerprint, removes a change or adds one, and the apply
refuses. The file holds no secret: sensitive attributes are redacted and
operations carry secrets by reference (SecretRef) only. It is written 0600.
"""

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.changes import Change

FORMAT = "vsa-orchestrate saved plan v1"


class SavedPlanError(Exception):
    """A file that is not a usable saved plan, explained in one line."""


@dataclass(frozen=True)
class SavedChange:
    stage: str
    resource: str
    basis: str


@dataclass(frozen=True)
class SavedPlan:
    path: Path
    plan_file: Path
    plan_sha256: str
    only: tuple[str, ...]
    allow_destroy: tuple[str, ...]
    changes: tuple[SavedChange, ...]

    def of_stage(self, stage: str) -> list[SavedChange]:
        return [change for change in self.changes if change.stage == stage]


def basis(change: Change) -> str:
    shown = change.as_json()
    decided = {key: shown[key] for key in ("stage", "action", "resource", "attributes", "operations")}
    return hashlib.sha256(json.dumps(decided, sort_keys=True, default=str).encode()).hexdigest()


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_saved(
    path: Path, plan_file: Path, only: list[str], allow_destroy: frozenset[str], changes: list[Change]
) -> None:
    document = {
        "format": FORMAT,
        "plan_file": str(plan_file.resolve()),
        "plan_sha256": file_sha256(plan_file),
        "only": list(only),
        "allow_destroy": sorted(allow_destroy),
        "changes": [{**change.as_json(), "basis": basis(change)} for change in changes],
    }
    temporary = path.with_name(f".{path.name}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(document, handle, indent=1, default=str)
        handle.write("\n")
    os.chmod(temporary, 0o600)
    temporary.replace(path)


def read_saved(path: Path) -> SavedPlan:
    try:
        document: dict[str, Any] = json.loads(path.read_text())
    except OSError as err:
        raise SavedPlanError(f"{path}: cannot read the saved plan ({err.strerror})") from None
    except ValueError:
        raise SavedPlanError(f"{path}: not a saved plan (not JSON); make one with --dry-run --out") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise SavedPlanError(
            f"{path}: not a saved plan of this version ({FORMAT}); make one with --dry-run --out"
        )
    try:
        plan = SavedPlan(
            path=path,
            plan_file=Path(document["plan_file"]),
            plan_sha256=str(document["plan_sha256"]),
            only=tuple(document["only"]),
            allow_destroy=tuple(document["allow_destroy"]),
            changes=tuple(
                SavedChange(str(change["stage"]), str(change["resource"]), str(change["basis"]))
                for change in document["changes"]
            ),
        )
    except (KeyError, TypeError) as err:
        raise SavedPlanError(
            f"{path}: a saved plan without {err}; make a new one with --dry-run --out"
        ) from None
    if not plan.plan_file.exists():
        raise SavedPlanError(f"{path}: its plan file {plan.plan_file} is gone")
    if file_sha256(plan.plan_file) != plan.plan_sha256:
        raise SavedPlanError(
            f"{path}: the plan file {plan.plan_file} changed since this plan was saved; "
            "make a new one with --dry-run --out"
        )
    return plan


def stale(saved: list[SavedChange], fresh: list[Change]) -> list[str]:
    """One line per change that differs between the saved plan and a fresh diff."""
    now = {(change.stage, change.resource): basis(change) for change in fresh}
    then = {(change.stage, change.resource): change.basis for change in saved}
    lines = []
    for key, fingerprint in then.items():
        if key not in now:
            lines.append(f"{key[1]}: saved, but no longer to be done (the site changed)")
        elif now[key] != fingerprint:
            lines.append(f"{key[1]}: decided on facts that changed since the plan was saved")
    lines += [f"{key[1]}: a change the saved plan does not hold" for key in now if key not in then]
    return lines
