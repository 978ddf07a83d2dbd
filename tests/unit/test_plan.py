"""The plan loader: the example plan, and one test per class of error (DESIGN.md, "The plan file").

Every error test writes a variant of plans/two-node.toml and checks the issue's file, the exact
line of the offending key in the written text, the dotted key and the message.
"""

import ipaddress
import os
import re
from pathlib import Path

import pytest

from orchestrator.plan import Plan, PlanError, PlanIssue, SecretRef, load_plan
from tests.unit.conftest import EXAMPLE_PLAN

# ---------------------------------------------------------------- helpers


def edit(text: str, old: str, new: str, nth: int = 1) -> str:
    """Replace the nth occurrence of old (which must exist) with new."""
    start = -1
    for _ in range(nth):
        start = text.find(old, start + 1)
        assert start >= 0, f"{old!r} occurs fewer than {nth} times"
    return text[:start] + new + text[start + len(old) :]


def line_no(text: str, needle: str, nth: int = 1) -> int:
    """1-based number of the nth line of text that contains needle."""
    found = [number for number, line in enumerate(text.split("\n"), 1) if needle in line]
    assert len(found) >= nth, f"{needle!r} is on fewer than {nth} lines"
    return found[nth - 1]


def issues_of(path: Path) -> list[PlanIssue]:
    with pytest.raises(PlanError) as info:
        load_plan(path)
    issues = info.value.issues
    assert issues, "PlanError without issues"
    for issue in issues:
        assert issue.file == str(path)
        assert issue.message
    return issues


def only_issue(path: Path) -> PlanIssue:
    issues = issues_of(path)
    assert len(issues) == 1, "\n".join(map(str, issues))
    return issues[0]


def issue_at(issues: list[PlanIssue], key: str) -> PlanIssue:
    matching = [issue for issue in issues if issue.key == key]
    assert matching, f"no issue at {key}; got:\n" + "\n".join(map(str, issues))
    return matching[0]


THIRD_HOST = '\n[[hosts]]\nesxi = "esx3.demo.local"\n'


# ---------------------------------------------------------------- the example plan


def test_example_plan_matches_the_original_recipe(plan_text, write_plan):
    path = write_plan(plan_text)
    plan = load_plan(path)

    assert isinstance(plan, Plan)
    assert plan.name == "vsa"
    assert plan.path == path.resolve()
    assert plan.base_dir == path.resolve().parent
    assert plan.state_dir == path.resolve().parent / "plan.toml.state"

    nodes = plan.storage_nodes
    assert [n.node for n in nodes] == ["node1", "node2"]
    assert [n.esxi for n in nodes] == ["esx1.demo.local", "esx2.demo.local"]
    assert [str(n.iscsi_ip) for n in nodes] == ["10.11.55.55", "10.11.55.56"]
    assert [str(n.replication_ip) for n in nodes] == ["192.168.22.11", "192.168.22.12"]
    assert [n.datastore for n in nodes] == ["datastore1", "datastore1"]
    assert [plan.vm_name(n.node) for n in nodes] == ["vsa-node1", "vsa-node2"]

    assert str(plan.network.vip) == "10.11.55.50"
    iscsi = ipaddress.ip_network(f"{plan.network.vip}/{plan.network.iscsi_prefix}", strict=False)
    assert all(n.iscsi_ip in iscsi for n in nodes)
    replication = ipaddress.ip_network(
        f"{nodes[0].replication_ip}/{plan.network.replication_prefix}", strict=False
    )
    assert str(replication) == "192.168.22.0/24"
    assert nodes[1].replication_ip in replication

    vm = plan.storage_vm
    assert (vm.meta_disk_gb, vm.config_disk_gb, vm.data_disk_gb) == (1, 1, 50)
    assert vm.source.ova == "vsa-appliance.ova" and vm.source.template is None
    assert plan.ova_file == (plan.base_dir / "vsa-appliance.ova").resolve()
    assert plan.iqn == "iqn.2011-08.local.demo:storage.disk.0"
    assert plan.target.kind == "lio" and plan.target.chap is True
    assert plan.replication.protocol == "C"
    assert plan.datastore.name == "vsa-ds0"
    assert plan.cluster is not None and plan.cluster.ha is True
    assert plan.vsphere.password == SecretRef(env="VSA_VSPHERE_PASSWORD")
    assert plan.vsphere.thumbprint == ":".join(["00"] * 32)
    assert plan.vsphere.insecure is False
    ha = plan.ha
    assert ha.keepalive < ha.warntime < ha.deadtime <= ha.initdead


def test_third_consumer_host_with_only_esxi_is_accepted(plan_text, write_plan):
    plan = load_plan(write_plan(plan_text + THIRD_HOST))
    assert [h.esxi for h in plan.hosts] == [
        "esx1.demo.local",
        "esx2.demo.local",
        "esx3.demo.local",
    ]
    assert [h.is_storage_node for h in plan.hosts] == [True, True, False]
    assert [n.node for n in plan.storage_nodes] == ["node1", "node2"]


def test_default_iqn_is_derived_from_the_plan_name(plan_text, write_plan):
    text = edit(plan_text, 'iqn = "iqn.2011-08.local.demo:storage.disk.0"\n', "")
    plan = load_plan(write_plan(text))
    assert plan.iqn == "iqn.2011-08.org.vsa-orchestrate:vsa.lun0"


def test_thumbprint_is_normalised(plan_text, write_plan):
    digits = "ab" * 32
    text = edit(plan_text, ":".join(["00"] * 32), digits)
    plan = load_plan(write_plan(text))
    assert plan.vsphere.thumbprint == ":".join(["AB"] * 32)


# ---------------------------------------------------------------- unknown keys


@pytest.mark.parametrize(
    ("anchor", "nth", "typo", "key", "valid"),
    [
        ('name = "vsa"\n', 1, 'nmae = "vsa"\n', "nmae", "name"),
        (
            'replication_ip = "192.168.22.12"\n',
            1,
            'replicaton_ip = "x"\n',
            "hosts[1].replicaton_ip",
            "replication_ip",
        ),
        (
            'datastore = "datastore1"\n',
            1,
            'datstore = "d"\n',
            "hosts[0].datstore",
            "datastore",
        ),
        (
            "iscsi_prefix = 8\n",
            1,
            "iscsi-gateway = 1\n",
            "network.iscsi-gateway",
            "iscsi_gateway",
        ),
        ("chap = true\n", 1, "str = 1\n", "target.str", "chap"),
        (
            'server = "vcenter.demo.local"\n',
            1,
            "int = 1\n",
            "vsphere.int",
            "thumbprint",
        ),
    ],
)
def test_unknown_key(plan_text, write_plan, anchor, nth, typo, key, valid):
    text = edit(plan_text, anchor, anchor + typo, nth)
    issue = only_issue(write_plan(text))
    assert issue.key == key
    assert issue.line == line_no(text, typo.strip())
    assert "unknown key" in issue.message
    assert valid in issue.message


def test_unknown_table(plan_text, write_plan):
    text = plan_text + '\n[datastores]\nname = "x"\n'
    issue = only_issue(write_plan(text))
    assert issue.key == "datastores"
    assert issue.line == line_no(text, "[datastores]")
    assert "datastore" in issue.message


def test_unknown_key_in_inline_secret_table(plan_text, write_plan):
    text = edit(
        plan_text,
        '{ env = "VSA_VSPHERE_PASSWORD" }',
        '{ envv = "VSA_VSPHERE_PASSWORD" }',
    )
    issues = issues_of(write_plan(text))
    issue = issue_at(issues, "vsphere.password.envv")
    assert issue.line == line_no(text, "password =")
    assert "env" in issue.message and "file" in issue.message


# ---------------------------------------------------------------- target kinds


@pytest.mark.parametrize("kind", ["iet", "tgt"])
def test_target_kinds_not_built_are_refused(plan_text, write_plan, kind):
    text = edit(plan_text, 'kind = "lio"', f'kind = "{kind}"')
    path = write_plan(text)
    issue = only_issue(path)
    assert (issue.key, issue.line) == ("target.kind", line_no(text, f'kind = "{kind}"'))
    assert str(issue) == f'{path}:{issue.line}: target.kind: "{kind}" is not built yet; use "lio"'


def test_target_kind_defaults_to_lio(plan_text, write_plan):
    assert load_plan(write_plan(edit(plan_text, 'kind = "lio"\n', ""))).target.kind == "lio"


# ---------------------------------------------------------------- duplicates


def test_duplicate_node_names(plan_text, write_plan):
    text = edit(plan_text, 'node = "node2"', 'node = "node1"')
    issue = only_issue(write_plan(text))
    assert issue.key == "hosts[1].node"
    assert issue.line == line_no(text, 'node = "node1"', nth=2)
    assert "'node1'" in issue.message and "hosts[0]" in issue.message and "unique" in issue.message


def test_duplicate_esxi_names(plan_text, write_plan):
    text = edit(plan_text, 'esxi = "esx2.demo.local"', 'esxi = "esx1.demo.local"')
    issue = only_issue(write_plan(text))
    assert issue.key == "hosts[1].esxi"
    assert issue.line == line_no(text, 'esxi = "esx1.demo.local"', nth=2)
    assert "esx1.demo.local" in issue.message and "unique" in issue.message


def test_duplicate_esxi_name_on_a_consumer_host(plan_text, write_plan):
    text = plan_text + '\n[[hosts]]\nesxi = "esx2.demo.local"\n'
    issue = only_issue(write_plan(text))
    assert issue.key == "hosts[2].esxi"
    assert issue.line == line_no(text, 'esxi = "esx2.demo.local"', nth=2)


@pytest.mark.parametrize(
    ("old", "new", "key", "other"),
    [
        (
            'iscsi_ip = "10.11.55.56"',
            'iscsi_ip = "10.11.55.55"',
            "hosts[1].iscsi_ip",
            "hosts[0].iscsi_ip",
        ),
        (
            'replication_ip = "192.168.22.12"',
            'replication_ip = "192.168.22.11"',
            "hosts[1].replication_ip",
            "hosts[0].replication_ip",
        ),
    ],
)
def test_duplicate_ips(plan_text, write_plan, old, new, key, other):
    text = edit(plan_text, old, new)
    issue = only_issue(write_plan(text))
    assert issue.key == key
    assert issue.line == line_no(text, new, nth=2)
    value = new.split('"')[1]
    assert value in issue.message and other in issue.message and "unique" in issue.message


# ---------------------------------------------------------------- addresses


@pytest.mark.parametrize(
    ("old", "new", "key", "network"),
    [
        (
            'iscsi_ip = "10.11.55.55"',
            'iscsi_ip = "11.11.55.55"',
            "hosts[0].iscsi_ip",
            "10.0.0.0/8",
        ),
        (
            'replication_ip = "192.168.22.12"',
            'replication_ip = "192.168.23.12"',
            "hosts[1].replication_ip",
            "192.168.22.0/24",
        ),
        (
            "iscsi_prefix = 8",
            'iscsi_prefix = 8\niscsi_gateway = "11.0.0.1"',
            "network.iscsi_gateway",
            "10.0.0.0/8",
        ),
    ],
)
def test_ip_outside_its_prefix(plan_text, write_plan, old, new, key, network):
    text = edit(plan_text, old, new)
    issue = only_issue(write_plan(text))
    assert issue.key == key
    assert issue.line == line_no(text, new.split("\n")[-1])
    assert "outside" in issue.message and network in issue.message


def test_gateway_inside_the_prefix_is_accepted(plan_text, write_plan):
    text = edit(plan_text, "iscsi_prefix = 8", 'iscsi_prefix = 8\niscsi_gateway = "10.0.0.1"')
    plan = load_plan(write_plan(text))
    assert str(plan.network.iscsi_gateway) == "10.0.0.1"


def test_gateway_equal_to_the_vip(plan_text, write_plan):
    text = edit(plan_text, "iscsi_prefix = 8", 'iscsi_prefix = 8\niscsi_gateway = "10.11.55.50"')
    issue = only_issue(write_plan(text))
    assert issue.key == "network.iscsi_gateway"
    assert issue.line == line_no(text, "iscsi_gateway =")
    assert "VIP" in issue.message


def test_vip_equal_to_a_node_ip(plan_text, write_plan):
    text = edit(plan_text, 'vip = "10.11.55.50"', 'vip = "10.11.55.56"')
    issue = only_issue(write_plan(text))
    assert issue.key == "hosts[1].iscsi_ip"
    assert issue.line == line_no(text, 'iscsi_ip = "10.11.55.56"')
    assert "10.11.55.56" in issue.message and "VIP" in issue.message


def test_node_ip_on_the_network_address(plan_text, write_plan):
    text = edit(
        plan_text,
        'replication_ip = "192.168.22.12"',
        'replication_ip = "192.168.22.255"',
    )
    issue = only_issue(write_plan(text))
    assert issue.key == "hosts[1].replication_ip"
    assert issue.line == line_no(text, "192.168.22.255")
    assert "broadcast" in issue.message


# ---------------------------------------------------------------- storage nodes


def test_one_storage_node(plan_text, write_plan):
    second = plan_text.index('[[hosts]]\nesxi = "esx2.demo.local"')
    text = plan_text[:second] + '[[hosts]]\nesxi = "esx2.demo.local"\n'
    issue = only_issue(write_plan(text))
    assert issue.key == "hosts"
    assert issue.line == line_no(text, "[[hosts]]")
    assert "found 1 storage node" in issue.message and "exactly two" in issue.message


def test_three_storage_nodes(plan_text, write_plan):
    text = plan_text + (
        '\n[[hosts]]\nesxi = "esx3.demo.local"\ndatastore = "datastore1"\nnode = "node3"\n'
        'iscsi_ip = "10.11.55.57"\nreplication_ip = "192.168.22.13"\n'
    )
    issue = only_issue(write_plan(text))
    assert issue.key == "hosts"
    assert issue.line == line_no(text, "[[hosts]]")
    assert "found 3 storage node" in issue.message and "exactly two" in issue.message


@pytest.mark.parametrize("missing", ["datastore", "node", "iscsi_ip", "replication_ip"])
def test_storage_node_missing_a_key(plan_text, write_plan, missing):
    header = plan_text.index('[[hosts]]\nesxi = "esx2.demo.local"')
    start = plan_text.index(f"\n{missing} = ", header) + 1
    end = plan_text.index("\n", start) + 1
    text = plan_text[:start] + plan_text[end:]
    issues = issues_of(write_plan(text))
    issue = issue_at(issues, f"hosts[1].{missing}")
    assert issue.line == line_no(text, "[[hosts]]", nth=2)
    assert "storage node needs all of" in issue.message
    # with the node name gone, only one storage node remains: that is reported too
    assert {i.key for i in issues} <= {f"hosts[1].{missing}", "hosts"}


# ---------------------------------------------------------------- sizes


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("data_disk_gb", 0),
        ("data_disk_gb", -50),
        ("meta_disk_gb", 0),
        ("config_disk_gb", -1),
        ("cpus", 0),
    ],
)
def test_non_positive_sizes(plan_text, write_plan, key, value):
    lines = plan_text.split("\n")
    index = next(i for i, line in enumerate(lines) if line.startswith(f"{key} = "))
    lines[index] = f"{key} = {value}"
    text = "\n".join(lines)
    issue = only_issue(write_plan(text))
    assert issue.key == f"storage_vm.{key}"
    assert issue.line == index + 1
    assert "greater than 0" in issue.message and f"got {value}" in issue.message


def test_memory_below_minimum(plan_text, write_plan):
    text = edit(plan_text, "memory_mb = 1024", "memory_mb = 128")
    issue = only_issue(write_plan(text))
    assert issue.key == "storage_vm.memory_mb"
    assert issue.line == line_no(text, "memory_mb")
    assert "256" in issue.message


# ---------------------------------------------------------------- secrets

SECRET = "hunter2-Zq8!"


@pytest.mark.parametrize(
    "value",
    [
        f'"{SECRET}"',
        f"'{SECRET}'",
        f'["{SECRET}"]',
        f'{{ value = "{SECRET}" }}',
        f'{{ env = "VSA_VSPHERE_PASSWORD", password = "{SECRET}" }}',
    ],
)
def test_inline_secret_is_rejected_without_echoing_it(plan_text, write_plan, value):
    text = edit(plan_text, '{ env = "VSA_VSPHERE_PASSWORD" }', value)
    with pytest.raises(PlanError) as info:
        load_plan(write_plan(text))
    error = info.value
    assert error.issues
    issue = error.issues[0]
    assert issue.key.startswith("vsphere.password")
    assert issue.line == line_no(text, "password =")
    assert "env" in issue.message and "file" in issue.message
    for shown in (
        str(error),
        repr(error),
        repr(error.issues),
        *(i.model_dump_json() for i in error.issues),
    ):
        assert SECRET not in shown
        assert "hunter2" not in shown


def test_inline_secret_message_explains_the_valid_forms(plan_text, write_plan):
    text = edit(plan_text, '{ env = "VSA_VSPHERE_PASSWORD" }', f'"{SECRET}"')
    issue = only_issue(write_plan(text))
    assert issue.key == "vsphere.password"
    assert "may not be written in the plan" in issue.message
    assert '{ env = "VARIABLE" }' in issue.message and '{ file = "path/to/secret" }' in issue.message


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ('{ env = "MY_PW" }', SecretRef(env="MY_PW")),
        ('{ file = "secrets/vcenter" }', SecretRef(file="secrets/vcenter")),
    ],
)
def test_env_and_file_secret_forms_are_accepted(plan_text, write_plan, value, expected):
    text = edit(plan_text, '{ env = "VSA_VSPHERE_PASSWORD" }', value)
    plan = load_plan(write_plan(text))
    assert plan.vsphere.password == expected


@pytest.mark.parametrize("value", ['{ env = "A", file = "b" }', "{}"])
def test_secret_needs_exactly_one_source(plan_text, write_plan, value):
    text = edit(plan_text, '{ env = "VSA_VSPHERE_PASSWORD" }', value)
    issue = only_issue(write_plan(text))
    assert issue.key == "vsphere.password"
    assert issue.line == line_no(text, "password =")
    assert "exactly one" in issue.message
    assert "{'" not in issue.message  # no dump of the table


def test_resolve_env_set(monkeypatch, tmp_path):
    monkeypatch.setenv("VSA_TEST_SECRET", "from-env")
    assert SecretRef(env="VSA_TEST_SECRET").resolve(tmp_path, "vsphere.password") == "from-env"


def test_resolve_env_unset(monkeypatch, tmp_path):
    monkeypatch.delenv("VSA_TEST_SECRET", raising=False)
    with pytest.raises(
        ValueError,
        match=r"vsphere\.password: environment variable VSA_TEST_SECRET is not set",
    ):
        SecretRef(env="VSA_TEST_SECRET").resolve(tmp_path, "vsphere.password")


def test_resolve_env_empty_counts_as_unset(monkeypatch, tmp_path):
    monkeypatch.setenv("VSA_TEST_SECRET", "")
    with pytest.raises(ValueError, match="VSA_TEST_SECRET is not set"):
        SecretRef(env="VSA_TEST_SECRET").resolve(tmp_path, "k")


def test_resolve_file_relative_to_the_plan_dir(plan_text, write_plan, tmp_path, monkeypatch):
    text = edit(plan_text, '{ env = "VSA_VSPHERE_PASSWORD" }', '{ file = "secrets/vcenter" }')
    path = write_plan(text, "site/plan.toml")
    secret = path.parent / "secrets" / "vcenter"
    secret.parent.mkdir()
    secret.write_text("s3cret\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # relative to the plan, not to the working directory
    plan = load_plan(path)
    assert plan.resolve_password() == "s3cret"
    assert SecretRef(file="secrets/vcenter").resolve(path.parent, "k") == "s3cret"


def test_resolve_plan_loaded_by_relative_path(plan_text, tmp_path, monkeypatch):
    site = tmp_path / "site"
    (site / "secrets").mkdir(parents=True)
    (site / "secrets" / "pw").write_text("rel\n")
    text = edit(plan_text, '{ env = "VSA_VSPHERE_PASSWORD" }', '{ file = "secrets/pw" }')
    (site / "plan.toml").write_text(text)
    monkeypatch.chdir(tmp_path)
    plan = load_plan("site/plan.toml")
    monkeypatch.chdir("/")
    assert plan.resolve_password() == "rel"


def test_resolve_file_missing(tmp_path):
    with pytest.raises(ValueError, match=r"vsphere\.password: cannot read secret file .*nope"):
        SecretRef(file="nope").resolve(tmp_path, "vsphere.password")


# ---------------------------------------------------------------- vSphere trust


@pytest.mark.parametrize(
    "value",
    [
        ":".join(["00"] * 31),  # 62 digits
        ":".join(["zz"] * 32),  # not hex
        "SHA1:" + ":".join(["00"] * 20),
    ],
)
def test_thumbprint_format(plan_text, write_plan, value):
    text = edit(plan_text, ":".join(["00"] * 32), value)
    issue = only_issue(write_plan(text))
    assert issue.key == "vsphere.thumbprint"
    assert issue.line == line_no(text, "thumbprint =")
    assert "64 hex digits" in issue.message and "SHA-256" in issue.message


def test_insecure_with_thumbprint(plan_text, write_plan):
    text = edit(plan_text, 'datacenter = "DC"', 'insecure = true\ndatacenter = "DC"')
    issue = only_issue(write_plan(text))
    assert issue.key == "vsphere.insecure"
    assert issue.line == line_no(text, "insecure = true")
    assert "cannot be combined with thumbprint" in issue.message
    assert "{'" not in issue.message


def test_insecure_alone_is_accepted(plan_text, write_plan):
    start = plan_text.index("thumbprint =")
    end = plan_text.index("\n", start)
    text = plan_text[:start] + "insecure = true" + plan_text[end:]
    plan = load_plan(write_plan(text))
    assert plan.vsphere.insecure is True and plan.vsphere.thumbprint is None


def test_thumbprint_with_ca_file(plan_text, write_plan):
    text = edit(plan_text, 'datacenter = "DC"', 'ca_file = "ca.pem"\ndatacenter = "DC"')
    issue = only_issue(write_plan(text))
    assert issue.key == "vsphere.ca_file"
    assert issue.line == line_no(text, "ca_file =")
    assert "either thumbprint or ca_file" in issue.message


# ---------------------------------------------------------------- heartbeat, replication


@pytest.mark.parametrize(
    ("old", "new", "key"),
    [
        ("keepalive = 1", "keepalive = 5", "ha.warntime"),
        ("warntime = 5", "warntime = 10", "ha.deadtime"),
        ("deadtime = 10", "deadtime = 61", "ha.initdead"),
        ("initdead = 60", "initdead = 9", "ha.initdead"),
    ],
)
def test_heartbeat_timing_order(plan_text, write_plan, old, new, key):
    text = edit(plan_text, old, new)
    issue = only_issue(write_plan(text))
    assert issue.key == key
    assert issue.line == line_no(text, key.split(".")[1] + " =")
    assert "keepalive < warntime < deadtime <= initdead" in issue.message


def test_heartbeat_deadtime_equal_initdead_is_accepted(plan_text, write_plan):
    plan = load_plan(write_plan(edit(plan_text, "initdead = 60", "initdead = 10")))
    assert plan.ha.deadtime == plan.ha.initdead == 10


@pytest.mark.parametrize("protocol", ['"A"', '"B"', '"c"', "3"])
def test_replication_protocol_other_than_c(plan_text, write_plan, protocol):
    text = edit(plan_text, 'protocol = "C"', f"protocol = {protocol}")
    issue = only_issue(write_plan(text))
    assert issue.key == "replication.protocol"
    assert issue.line == line_no(text, "protocol =")
    assert "'C'" in issue.message


# ---------------------------------------------------------------- the file itself


def test_invalid_toml_reports_the_parser_line(plan_text, write_plan):
    text = edit(plan_text, "cpus = 1", "cpus = = 1")
    issue = only_issue(write_plan(text))
    assert issue.key == "(syntax)"
    assert issue.line == line_no(text, "cpus = = 1")
    assert "not valid TOML" in issue.message


def test_invalid_toml_unterminated_at_end(plan_text, write_plan):
    text = plan_text + '\n[[hosts]]\nesxi = "esx3'
    issue = only_issue(write_plan(text))
    assert issue.key == "(syntax)"
    assert issue.line == text.count("\n") + 1


def test_duplicate_key_is_a_toml_error(plan_text, write_plan):
    text = edit(plan_text, "cpus = 1", "cpus = 1\ncpus = 2")
    issue = only_issue(write_plan(text))
    assert issue.key == "(syntax)"
    assert issue.line == line_no(text, "cpus = 2")


def test_not_utf8(plan_text, write_plan):
    raw = plan_text.encode().replace(b'"node2"', b'"node\xff"')
    issue = only_issue(write_plan(raw))
    assert issue.key == "(syntax)"
    assert issue.line == line_no(plan_text, '"node2"')
    assert "UTF-8" in issue.message


def test_missing_file(tmp_path):
    path = tmp_path / "nope.toml"
    issue = only_issue(path)
    assert issue.line == 0
    assert issue.key == "(file)"
    assert "No such file" in issue.message
    assert str(issue).startswith(f"{path}:0: (file): ")


def test_directory_instead_of_file(tmp_path):
    issue = only_issue(tmp_path)
    assert issue.key == "(file)" and issue.line == 0 and issue.message


def test_crlf_line_endings(plan_text, write_plan):
    text = edit(plan_text, "cpus = 1", "cpus = 0").replace("\n", "\r\n")
    issue = only_issue(write_plan(text.encode()))
    assert issue.key == "storage_vm.cpus"
    assert issue.line == line_no(plan_text, "cpus = 1")


def test_unicode_line_separators_do_not_shift_lines(plan_text, write_plan):
    # TOML allows U+2028 and U+0085 in comments and strings; they do not end a line
    text = edit(plan_text, "# The original", "# a \u2028 separator and \x85 NEL: The original")
    text = edit(text, 'name = "vsa-cluster"', 'name = "vsa\u2028cluster"')
    text = edit(text, "cpus = 1", "cpus = 0")
    issue = only_issue(write_plan(text))
    assert issue.line == line_no(plan_text, "cpus = 1")


# ---------------------------------------------------------------- several at once


def test_several_schema_errors_are_all_reported(plan_text, write_plan):
    text = edit(plan_text, 'name = "vsa"', 'name = "vsa"\nnmae = 1')
    text = edit(text, '{ env = "VSA_VSPHERE_PASSWORD" }', f'"{SECRET}"')
    text = edit(text, "data_disk_gb = 50", "data_disk_gb = 0")
    text = edit(text, 'protocol = "C"', 'protocol = "A"')
    text = edit(text, "warntime = 5", "warntime = 50")
    path = write_plan(text)
    with pytest.raises(PlanError) as info:
        load_plan(path)
    issues = info.value.issues
    expected = {
        "nmae": "nmae = 1",
        "vsphere.password": "password =",
        "storage_vm.data_disk_gb": "data_disk_gb = 0",
        "replication.protocol": 'protocol = "A"',
        "ha.deadtime": "deadtime =",
    }
    assert {i.key for i in issues} == set(expected)
    for key, needle in expected.items():
        assert issue_at(issues, key).line == line_no(text, needle)
    message = str(info.value)
    assert SECRET not in message
    assert all(f"{path}:{i.line}: {i.key}: " in message for i in issues)


def test_several_consistency_errors_are_all_reported(plan_text, write_plan):
    text = edit(plan_text, 'node = "node2"', 'node = "node1"')
    text = edit(text, 'esxi = "esx2.demo.local"', 'esxi = "esx1.demo.local"')
    text = edit(text, 'iscsi_ip = "10.11.55.56"', 'iscsi_ip = "10.11.55.55"')
    text = edit(text, 'replication_ip = "192.168.22.12"', 'replication_ip = "192.168.99.12"')
    issues = issues_of(write_plan(text))
    keys = [i.key for i in issues]
    assert sorted(keys) == sorted(
        [
            "hosts[1].node",
            "hosts[1].esxi",
            "hosts[1].iscsi_ip",
            "hosts[1].replication_ip",
        ]
    )
    assert issue_at(issues, "hosts[1].replication_ip").line == line_no(text, "192.168.99.12")
    assert issue_at(issues, "hosts[1].iscsi_ip").line == line_no(text, 'iscsi_ip = "10.11.55.55"', nth=2)


def test_incomplete_node_does_not_hide_address_errors(plan_text, write_plan):
    start = plan_text.index('datastore = "datastore1"', plan_text.index("esx2.demo.local"))
    text = plan_text[:start] + plan_text[plan_text.index("\n", start) + 1 :]
    text = edit(text, 'iscsi_ip = "10.11.55.55"', 'iscsi_ip = "10.11.55.50"')
    issues = issues_of(write_plan(text))
    assert {i.key for i in issues} == {"hosts[1].datastore", "hosts[0].iscsi_ip"}
    assert "VIP" in issue_at(issues, "hosts[0].iscsi_ip").message


def test_issue_str_format():
    issue = PlanIssue(file="p.toml", line=7, key="hosts[1].node", message="bad")
    assert str(issue) == "p.toml:7: hosts[1].node: bad"
    assert str(PlanError([issue, issue])) == "p.toml:7: hosts[1].node: bad\np.toml:7: hosts[1].node: bad"


def test_environment_is_untouched_by_loading(plan_text, write_plan):
    before = dict(os.environ)
    load_plan(write_plan(plan_text))
    assert dict(os.environ) == before


def test_initiator_recovery_timeout_derives_from_deadtime(plan_text, write_plan):
    plan = load_plan(write_plan(plan_text))
    assert (plan.failover_s, plan.recovery_timeout) == (20, 30)
    assert (plan.initiator.noop_out_interval, plan.initiator.noop_out_timeout) == (5, 10)


def test_initiator_recovery_timeout_shorter_than_a_failover_is_refused(plan_text, write_plan):
    text = plan_text.replace("# recovery_timeout = 30", "recovery_timeout = 15")
    with pytest.raises(PlanError) as caught:
        load_plan(write_plan(text))
    [issue] = caught.value.issues
    assert issue.key == "initiator.recovery_timeout"
    assert issue.line == next(
        n for n, line in enumerate(text.splitlines(), 1) if line.startswith("recovery_timeout")
    )
    assert "before a failover completes" in issue.message and "above 20" in issue.message


def test_deadtime_too_long_for_esxi_path_recovery_is_refused(plan_text, write_plan):
    text = plan_text.replace("deadtime = 10", "deadtime = 115").replace("initdead = 60", "initdead = 230")
    with pytest.raises(PlanError) as caught:
        load_plan(write_plan(text))
    [issue] = caught.value.issues
    assert issue.key == "ha.deadtime"


def test_the_ssh_key_path_expands_home_before_the_plan_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    text = EXAMPLE_PLAN.read_text()
    cases = {"~/.ssh/id_ed25519": tmp_path / "home/.ssh/id_ed25519", "keys/admin": tmp_path / "keys/admin"}
    for key, expected in cases.items():
        plan_path = tmp_path / "plan.toml"
        plan_path.write_text(re.sub(r'ssh_key = "[^"]*"', f'ssh_key = "{key}"', text))
        assert load_plan(plan_path).ssh_key_file == expected


def test_liveness_reset_after_defaults_above_a_failover(plan_text, write_plan):
    plan = load_plan(write_plan(plan_text))
    assert plan.liveness.reset_after_s is None and plan.reset_after_s == 120
    slow = plan_text.replace("deadtime = 10", "deadtime = 100").replace("initdead = 60", "initdead = 200")
    slow = slow.replace("# recovery_timeout = 30", "recovery_timeout = 120")
    assert load_plan(write_plan(slow)).reset_after_s == 170  # failover 110 s + 60


def test_liveness_reset_after_is_taken_when_set(plan_text, write_plan):
    text = plan_text.replace("# reset_after_s = 120", "reset_after_s = 45")
    assert load_plan(write_plan(text)).reset_after_s == 45


def test_liveness_reset_before_a_failover_completes_is_refused(plan_text, write_plan):
    text = plan_text.replace("# reset_after_s = 120", "reset_after_s = 20")
    issue = only_issue(write_plan(text))
    assert issue.key == "liveness.reset_after_s"
    assert issue.line == line_no(text, "reset_after_s = 20")
    assert "before its peer can have taken the LUN over" in issue.message and "above 20" in issue.message


@pytest.mark.parametrize("value", ["0", "5", "3601"])
def test_liveness_reset_after_out_of_range_is_refused(plan_text, write_plan, value):
    text = plan_text.replace("# reset_after_s = 120", f"reset_after_s = {value}")
    issue = only_issue(write_plan(text))
    assert issue.key == "liveness.reset_after_s"
    assert issue.line == line_no(text, f"reset_after_s = {value}")
