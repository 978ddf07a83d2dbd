"""The network and host-add keys of the plan: each bad value is one issue at its
file:line and key, before anything connects."""

import pytest

from orchestrator.plan import load_plan
from tests.unit.test_plan import edit, line_no, only_issue

NET = "replication_prefix = 24\n"


def with_network(text: str, keys: str) -> str:
    return edit(text, NET, NET + keys)


def test_the_opt_in_keys_load(plan_text, write_plan):
    text = with_network(
        plan_text,
        'vswitch = "vSwitch1"\nuplinks = ["vmnic1", "vmnic2"]\nmtu = 9000\niscsi_vlan = 55\nbind = true\n',
    )
    plan = load_plan(write_plan(text))
    assert plan.network.uplinks == ["vmnic1", "vmnic2"] and plan.network.mtu == 9000 and plan.network.bind
    assert [str(h.vmk_ip) for h in plan.hosts] == ["10.11.55.61", "10.11.55.62"]


@pytest.mark.parametrize(
    ("keys", "needle", "key", "message"),
    [
        ("mtu = 9001\n", "mtu = 9001", "network.mtu", "less than or equal to 9000"),
        ("mtu = 1000\n", "mtu = 1000", "network.mtu", "greater than or equal to 1280"),
        ("iscsi_vlan = 4095\n", "iscsi_vlan", "network.iscsi_vlan", "less than or equal to 4094"),
        ('uplinks = ["vmnic1"]\n', "uplinks", "network.uplinks", "give network.vswitch"),
        (
            'vswitch = "vSwitch1"\nuplinks = ["vmnic1", "vmnic1"]\n',
            "uplinks",
            "network.uplinks",
            "vmnic1 is named more than once",
        ),
        ('vswitch = "v1"\nuplinks = ["eth0"]\n', "uplinks", "network.uplinks[0]", "vmnic"),
    ],
)
def test_bad_network_keys(plan_text, write_plan, keys, needle, key, message):
    text = with_network(plan_text, keys)
    issue = only_issue(write_plan(text))
    assert (issue.key, issue.line) == (key, line_no(text, needle))
    assert message in issue.message


@pytest.mark.parametrize(
    ("address", "message"),
    [
        ("192.168.99.1", "is outside 10.0.0.0/8"),
        ("10.11.55.50", "already used by the VIP"),
        ("10.11.55.55", "already used by hosts[0].iscsi_ip"),
        ("10.11.55.61", "already used by hosts[0].vmk_ip"),
    ],
)
def test_bad_vmk_ip(plan_text, write_plan, address, message):
    text = edit(plan_text, 'vmk_ip = "10.11.55.62"', f'vmk_ip = "{address}"')
    issue = only_issue(write_plan(text))
    assert (issue.key, issue.line) == (
        "hosts[1].vmk_ip",
        line_no(text, f'vmk_ip = "{address}"', 2 if address.endswith(".61") else 1),
    )
    assert message in issue.message


def test_bind_needs_every_hosts_vmknic(plan_text, write_plan):
    text = with_network(edit(plan_text, 'vmk_ip = "10.11.55.62"\n', ""), "bind = true\n")
    issue = only_issue(write_plan(text))
    assert issue.key == "hosts[1].esxi" and "give this host a vmk_ip" in issue.message


def test_host_add_thumbprint_is_checked(plan_text, write_plan):
    add = '\n[[hosts]]\nesxi = "esx3"\nadd = { password = { env = "ESX3_PW" }, thumbprint = "12:34" }\n'
    text = plan_text + add
    issue = only_issue(write_plan(text))
    assert issue.key == "hosts[2].add.thumbprint" and "SHA-1 (40 hex digits)" in issue.message
    good = plan_text + add.replace("12:34", "ab" * 20)
    plan = load_plan(write_plan(good))
    assert plan.hosts[2].add is not None and plan.hosts[2].add.thumbprint == ":".join(["AB"] * 20)
    assert plan.hosts[2].add.user == "root"


def test_host_add_password_may_not_be_inline(plan_text, write_plan):
    text = plan_text + f'\n[[hosts]]\nesxi = "esx3"\nadd = {{ password = "x", thumbprint = "{"ab" * 20}" }}\n'
    issue = only_issue(write_plan(text))
    assert issue.key == "hosts[2].add.password" and "secrets may not be written in the plan" in issue.message
