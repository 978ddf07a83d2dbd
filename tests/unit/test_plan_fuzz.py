"""Property-based fuzzing of the plan loader.

Whatever the file holds, load_plan returns a Plan or raises PlanError whose issues all have a
line >= 0, a key and a message; no other exception escapes.
"""

import json
import re
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestrator.plan import Plan, PlanError, load_plan

EXAMPLE = (Path(__file__).resolve().parents[2] / "plans" / "two-node.toml").read_text(encoding="utf-8")
LINES = EXAMPLE.split("\n")
KEY_LINES = [i for i, line in enumerate(LINES) if re.match(r"^[a-z_]+ = ", line)]
KNOWN_KEYS = sorted({LINES[i].split(" = ")[0] for i in KEY_LINES})
HEADERS = [i for i, line in enumerate(LINES) if line.startswith("[")]

SETTINGS = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# ---------------------------------------------------------------- TOML values


def _basic_string(text: str) -> str:
    # a JSON string is a TOML basic string (bar lone surrogates, which tomllib rejects)
    return json.dumps(text)


scalars = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.sampled_from(["inf", "-inf", "nan", "true", "false", "0x1F", "0o17", "0b101", "1_000"]),
    st.text(max_size=20).map(_basic_string),
    st.sampled_from(
        [
            '"10.11.55.55"',
            '"10.11.55.50"',
            '"192.168.22.11"',
            '"255.255.255.255"',
            '"0.0.0.0"',
            '"node1"',
            '"esx1.demo.local"',
            '"C"',
            '"thin"',
            '"iqn.2011-08.local.demo:x"',
            '""',
            "1979-05-27",
            "1979-05-27T07:32:00Z",
            "07:32:00",
            "'literal'",
            '"""multi\nline"""',
        ]
    ),
)


def _inline_table(pairs: list[tuple[str, str]]) -> str:
    return "{ " + ", ".join(f"{key} = {value}" for key, value in pairs) + " }"


keys = st.one_of(
    st.sampled_from([*KNOWN_KEYS, "env", "file", "template", "ova", "str", "int", "none"]),
    st.from_regex(r"\A[A-Za-z_][A-Za-z0-9_\-]{0,12}\Z"),
)

values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4).map(lambda items: "[" + ", ".join(items) + "]"),
        st.lists(st.tuples(keys, inner), max_size=3, unique_by=lambda kv: kv[0]).map(_inline_table),
    ),
    max_leaves=6,
)

# ---------------------------------------------------------------- mutations of the example


# weighted towards mutations that keep the TOML valid, so that validation is exercised
MUTATIONS = [
    *["retype"] * 4,
    *["drop"] * 3,
    *["add_key"] * 2,
    "text_line",
    "duplicate",
    "add_table",
    "swap",
]


@st.composite
def mutated_plan(draw) -> bytes:
    lines = list(LINES)
    for _ in range(draw(st.integers(min_value=1, max_value=6))):
        kind = draw(st.sampled_from(MUTATIONS))
        if not lines:
            lines.append("")
        index = draw(st.integers(min_value=0, max_value=len(lines) - 1))
        if kind == "drop":
            del lines[index]
        elif kind == "add_key":
            lines.insert(index, f"{draw(keys)} = {draw(values)}")
        elif kind == "retype":
            key_lines = [i for i, line in enumerate(lines) if re.match(r"^[A-Za-z_]+ = ", line)]
            if key_lines:
                at = draw(st.sampled_from(key_lines))
                lines[at] = f"{lines[at].split(' = ')[0]} = {draw(values)}"
        elif kind == "text_line":
            lines.insert(index, draw(st.text(max_size=40)))
        elif kind == "duplicate":
            lines.insert(index, lines[draw(st.integers(0, len(lines) - 1))])
        elif kind == "add_table":
            name = draw(st.sampled_from(["[[hosts]]", "[vsphere]", "[extra]", "[ha]", "[hosts]"]))
            lines.insert(index, name)
        elif kind == "swap":
            other = draw(st.integers(min_value=0, max_value=len(lines) - 1))
            lines[index], lines[other] = lines[other], lines[index]
    data = "\n".join(lines).encode("utf-8", errors="surrogatepass")
    if draw(st.integers(min_value=0, max_value=9)) == 0:  # now and then, raw bytes too
        at = draw(st.integers(min_value=0, max_value=len(data)))
        data = data[:at] + draw(st.binary(min_size=1, max_size=8)) + data[at:]
    return data


plan_files = st.one_of(
    mutated_plan(),
    mutated_plan(),
    mutated_plan(),
    st.binary(max_size=200),
    st.text(max_size=200).map(lambda text: text.encode("utf-8", errors="surrogatepass")),
)


def _check(path: Path) -> Plan | None:
    try:
        plan = load_plan(path)
    except PlanError as error:
        assert error.issues
        for issue in error.issues:
            assert isinstance(issue.line, int) and issue.line >= 0, issue
            assert issue.message.strip(), issue
            assert issue.key, issue
            assert issue.file == str(path)
        assert str(error)
        return None
    assert isinstance(plan, Plan)
    # a valid plan keeps its promises
    assert len(plan.storage_nodes) == 2
    assert plan.iqn.startswith("iqn.")
    assert plan.state_dir.name.endswith(".state")
    return plan


@SETTINGS
@given(data=plan_files)
def test_load_plan_only_returns_a_plan_or_raises_plan_error(data: bytes):
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "plan.toml"
        path.write_bytes(data)
        _check(path)


# ---------------------------------------------------------------- line numbers of unknown keys


def _sections() -> list[tuple[str, int, int]]:
    """(dotted prefix, first body line index, end index) of each table in the example."""
    result = [("", 0, HEADERS[0])]
    counts: dict[str, int] = {}
    for n, start in enumerate(HEADERS):
        end = HEADERS[n + 1] if n + 1 < len(HEADERS) else len(LINES)
        header = LINES[start]
        if header.startswith("[["):
            name = header.strip("[]")
            counts[name] = counts.get(name, -1) + 1
            prefix = f"{name}[{counts[name]}]."
        else:
            prefix = header.strip("[]") + "."
        result.append((prefix, start + 1, end))
    return result


SECTIONS = _sections()


@settings(max_examples=100, deadline=None)
@given(
    section=st.sampled_from(SECTIONS),
    offset=st.integers(min_value=0, max_value=30),
    key=st.from_regex(r"\Azz[a-z0-9_\-]{0,10}\Z"),
    value=values,
)
def test_unknown_key_is_reported_on_its_own_line(section, offset, key, value):
    prefix, start, end = section
    at = start + offset % (end - start + 1)
    lines = list(LINES)
    lines.insert(at, f"{key} = {value}")
    text = "\n".join(lines)
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "plan.toml"
        path.write_text(text, encoding="utf-8")
        try:
            load_plan(path)
        except PlanError as error:
            issues = error.issues
        else:
            raise AssertionError("an unknown key was accepted")
    if issues[0].key == "(syntax)":  # e.g. a value tomllib rejects (surrogate escape)
        return
    assert [(i.key, i.line) for i in issues] == [(prefix + key, at + 1)]
    assert "unknown key" in issues[0].message
