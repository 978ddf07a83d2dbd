"""Render the lab plan from the simulator's connection facts."""

from pathlib import Path

from jinja2 import Environment, PackageLoader, StrictUndefined

from orchestrator.lab.simulator import SimInfo

_ENV = Environment(
    loader=PackageLoader("orchestrator.lab", "templates"),
    undefined=StrictUndefined,
    keep_trailing_newline=True,
)


def lab_plan_text(info: SimInfo, password_file: str, ssh_key: str, ova: Path | None, manager: str) -> str:
    """The lab plan; its storage VMs come from `ova` (imported), or without one from
    the simulator's template (cloned). With manager = "pacemaker" the third host
    carries the witness."""
    return _ENV.get_template("lab.toml.j2").render(
        info=info, password_file=password_file, ssh_key=ssh_key, ova=ova, manager=manager
    )
