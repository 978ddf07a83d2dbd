"""Which Debian mirror the appliance build downloads from: the one the build
host's apt already uses, so the build works wherever apt works.

Order: an explicit URL (`appliance build --mirror URL`), then $VSA_APT_MIRROR
(`lab up` and the tests), then the build host's apt sources: the first
enabled `deb` entry whose suites include bookworm and whose components
include main, in /etc/apt/sources.list.d/*.sources (deb822, `URIs:`) or the
one-line /etc/apt/sources.list and /etc/apt/sources.list.d/*.list.

The mirror is not part of the recipe hash (recipe.recipe_hash): it decides
where the same signed packages come from, not what goes into the image, so
two hosts with different mirrors share one cache entry. The manifest records
the mirror a build used.
"""

import os
from pathlib import Path

from orchestrator.appliance.recipe import SUITE
from orchestrator.appliance.shell import ApplianceError

ENV = "VSA_APT_MIRROR"
APT_DIR = Path("/etc/apt")
SCHEMES = ("http://", "https://", "file:/")


def debian_mirror(explicit: str | None = None, apt_dir: Path = APT_DIR) -> str:
    """The mirror URL for debootstrap, or ApplianceError saying how to give one."""
    for given in (explicit, os.environ.get(ENV)):
        if given:
            if not given.startswith(SCHEMES):
                raise ApplianceError(
                    f"appliance build: mirror: {given!r} is not an http(s):// or file:/ URL; "
                    f"check --mirror or ${ENV}"
                )
            return given.rstrip("/")
    for uri in apt_sources(apt_dir):
        return uri.rstrip("/")
    raise ApplianceError(
        f"appliance build: mirror: no Debian {SUITE} main entry in {apt_dir}/sources.list or "
        f"{apt_dir}/sources.list.d/; pass --mirror URL (or set ${ENV})"
    )


def apt_sources(apt_dir: Path = APT_DIR) -> list[str]:
    """URIs of the enabled `deb` entries for SUITE with component main, in apt's order."""
    found: list[str] = []
    files = [apt_dir / "sources.list"]
    parts = apt_dir / "sources.list.d"
    if parts.is_dir():
        files += sorted(path for path in parts.iterdir() if path.suffix in (".list", ".sources"))
    for path in files:
        try:
            text = path.read_text(errors="replace")
        except OSError:
            continue
        entries = _deb822(text) if path.suffix == ".sources" else _one_line(text)
        found += [uri for uri in entries if uri.startswith(SCHEMES)]
    return found


def _one_line(text: str) -> list[str]:
    uris = []
    for line in text.splitlines():
        words = line.split("#", 1)[0].split()
        if len(words) >= 2 and words[1].startswith("["):  # deb [signed-by=... arch=...] URI ...
            while words[1:] and not words[1].endswith("]"):
                del words[1]
            del words[1:2]
        if len(words) >= 4 and words[0] == "deb" and words[2] == SUITE and "main" in words[3:]:
            uris.append(words[1])
    return uris


def _deb822(text: str) -> list[str]:
    uris = []
    for stanza in _stanzas(text):
        if stanza.get("enabled", "yes").lower() == "no":
            continue
        types, suites = stanza.get("types", "").split(), stanza.get("suites", "").split()
        if "deb" in types and SUITE in suites and "main" in stanza.get("components", "").split():
            uris += stanza.get("uris", "").split()
    return uris


def _stanzas(text: str) -> list[dict[str, str]]:
    """deb822 paragraphs as {lower-case field: value}; continuation lines joined."""
    stanzas: list[dict[str, str]] = [{}]
    field = None
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        if not line.strip():
            if stanzas[-1]:
                stanzas.append({})
            field = None
        elif line[0] in " \t" and field:
            stanzas[-1][field] += " " + line.strip()
        elif ":" in line:
            field, value = line.split(":", 1)
            field = field.strip().lower()
            stanzas[-1][field] = value.strip()
    return [stanza for stanza in stanzas if stanza]
