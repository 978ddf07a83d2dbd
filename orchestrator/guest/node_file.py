"""A file a storage node must hold, and the templates files are rendered from."""

from dataclasses import dataclass
from importlib import resources

from jinja2 import Environment, PackageLoader, StrictUndefined

_ENV = Environment(
    loader=PackageLoader("orchestrator.guest", "templates"),
    undefined=StrictUndefined,
    keep_trailing_newline=True,
)


@dataclass(frozen=True)
class NodeFile:
    content: str
    mode: int
    sensitive: bool
    # What it configures: "drbd", "heartbeat", "corosync" (their units restart when it changes),
    # "cib" (loaded into Pacemaker's CIB), "hosts", "target", "agent" (read at each use).
    service: str


def render(template: str, **values: object) -> str:
    return _ENV.get_template(template).render(**values)


def shipped(name: str) -> str:
    """A file shipped as it is (orchestrator/guest/files)."""
    return resources.files("orchestrator.guest").joinpath("files", name).read_text()
