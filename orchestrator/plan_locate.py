"""Map TOML keys to the line they are written on, so plan errors name file:line.

tomllib gives values without positions; a plan is a small, regular TOML file,
so a line scanner that follows table headers is enough.
"""

import re

_ARRAY_TABLE = re.compile(r"^\[\[\s*([A-Za-z0-9_.\-]+)\s*\]\]")
_TABLE = re.compile(r"^\[\s*([A-Za-z0-9_.\-]+)\s*\]")
_KEY = re.compile(r"^([A-Za-z0-9_\-]+(?:\s*\.\s*[A-Za-z0-9_\-]+)*)\s*=")

Loc = tuple[str | int, ...]


def key_lines(text: str) -> dict[Loc, int]:
    """Return {("hosts", 1, "iscsi_ip"): 42, ("vsphere",): 3, ...} for a TOML text."""
    lines: dict[Loc, int] = {}
    table: Loc = ()
    array_counts: dict[str, int] = {}
    # TOML lines end in LF (or CRLF); str.splitlines() would also split on form feeds,
    # U+2028 and others, and disagree with the parser's line numbers.
    for number, raw in enumerate(text.split("\n"), start=1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if match := _ARRAY_TABLE.match(stripped):
            name = match.group(1)
            array_counts[name] = array_counts.get(name, -1) + 1
            table = (*name.split("."), array_counts[name])
            lines.setdefault(table[:-1], number)  # the array itself: its first header
            lines.setdefault(table, number)
        elif match := _TABLE.match(stripped):
            table = tuple(match.group(1).split("."))
            lines.setdefault(table, number)
        elif match := _KEY.match(stripped):
            key = tuple(part.strip() for part in match.group(1).split("."))
            lines.setdefault((*table, *key), number)
    return lines


def line_of(lines: dict[Loc, int], loc: Loc) -> int:
    """The line of the longest prefix of loc written in the file (1 if none)."""
    for end in range(len(loc), 0, -1):
        if loc[:end] in lines:
            return lines[loc[:end]]
    return 1


def dotted(loc: Loc) -> str:
    """('hosts', 1, 'iscsi_ip') -> 'hosts[1].iscsi_ip'."""
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else part
    return text or "(top level)"
