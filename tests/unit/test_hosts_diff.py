"""The `hosts` diff as a pure function (plan + facts -> changes), and the stage's password check."""

import pytest

from orchestrator.logs import Redactor
from orchestrator.plan import Plan, load_plan
from orchestrator.progress import Reporter
from orchestrator.stages.contract import RunContext
from orchestrator.stages.hosts.diff import diff
from orchestrator.stages.hosts.facts import HostsFacts
from orchestrator.stages.hosts.operations import AddHost
from orchestrator.stages.hosts.stage import HostsStage
from orchestrator.state import StateDir
from tests.unit.test_plan import edit

ESX3 = "esx3.demo.local"
THUMBPRINT = "ab:cd:" + "01" * 18  # written in lower case, as a user might
PINNED = "AB:CD:" + ":".join(["01"] * 18)
CLUSTER = '[cluster]\nname = "vsa-cluster"\nha = true\n'


def add_host(password: str = '{ env = "ESX3_PW" }', user: str = "") -> str:
    login = f'user = "{user}", ' if user else ""
    add = f'add = {{ {login}password = {password}, thumbprint = "{THUMBPRINT}" }}'
    return f'\n[[hosts]]\nesxi = "{ESX3}"\n{add}\n'


@pytest.fixture
def plan_of(plan_text, write_plan):
    def make(extra: str = "", cluster: bool = True) -> Plan:
        text = plan_text if cluster else edit(plan_text, CLUSTER, "")
        return load_plan(write_plan(text + extra))

    return make


def facts(missing: tuple[str, ...] = (ESX3,), cluster_id: str | None = "domain-c7", esxi: bool = False):
    return HostsFacts(missing=missing, host_folder="group-h4", cluster_id=cluster_id, esxi=esxi)


def test_a_missing_host_with_add_goes_into_the_planned_cluster(plan_of):
    changes, problems = diff(plan_of(add_host()), facts())
    assert problems == []
    [change] = changes
    assert (change.action, change.resource) == ("create", f"host {ESX3}")
    assert change.operations == (
        AddHost(host=ESX3, user="root", thumbprint=PINNED, host_folder="group-h4", cluster_id="domain-c7"),
    )
    attrs = {attr.name: attr.after for attr in change.attrs}
    assert attrs == {"into": "vsa-cluster", "user": "root", "thumbprint": f"{PINNED} (pinned)"}
    assert change.note is None


def test_a_missing_host_is_added_standalone_while_the_cluster_does_not_exist(plan_of):
    [change], _ = diff(plan_of(add_host(user="admin")), facts(cluster_id=None))
    [op] = change.operations
    assert isinstance(op, AddHost) and op.cluster_id is None and op.host_folder == "group-h4"
    assert op.user == "admin"
    assert change.attrs[0].after == "the datacenter (standalone)"
    assert change.note is not None and "moves it into vsa-cluster" in change.note


def test_a_missing_host_is_added_standalone_by_a_plan_without_a_cluster(plan_of):
    [change], _ = diff(plan_of(add_host(), cluster=False), facts(cluster_id=None))
    assert change.operations[0].cluster_id is None
    assert change.attrs[0].after == "the datacenter (standalone)" and change.note is None


def test_a_present_host_gives_no_change(plan_of):
    assert diff(plan_of(add_host()), facts(missing=())) == ([], [])


def test_a_missing_host_without_add_is_not_this_stages_change(plan_of):
    plan = plan_of(f'\n[[hosts]]\nesxi = "{ESX3}"\n')
    assert diff(plan, facts()) == ([], [])


def test_adding_a_host_through_a_single_esxi_host_is_a_problem(plan_of):
    changes, [problem] = diff(plan_of(add_host()), facts(esxi=True))
    assert changes == []
    assert problem.resource == f"host {ESX3}" and "hosts[2].add needs vCenter" in problem.message


# ---------------------------------------------------------------- the password, read by the stage


def stage_diff(plan: Plan, tmp_path, found: HostsFacts):
    ctx = RunContext(
        plan=plan,
        session=None,
        state=StateDir(tmp_path / "state", persist=True),
        reporter=Reporter(None),
        allow_destroy=frozenset(),
        redactor=Redactor(),
    )
    return ctx, HostsStage().diff(ctx, found)


def test_an_unset_password_variable_is_a_problem_naming_its_key(plan_of, tmp_path, monkeypatch):
    monkeypatch.delenv("ESX3_PW", raising=False)
    _, (changes, problems) = stage_diff(plan_of(add_host()), tmp_path, facts())
    assert len(changes) == 1  # the change is still shown; the problem refuses the run
    [problem] = problems
    assert problem.resource == f"host {ESX3}"
    assert problem.message == "hosts[2].add.password: environment variable ESX3_PW is not set"


def test_an_unreadable_password_file_is_a_problem(plan_of, tmp_path):
    _, (_, [problem]) = stage_diff(plan_of(add_host('{ file = "no-such-secret" }')), tmp_path, facts())
    assert problem.message.startswith("hosts[2].add.password: cannot read secret file ")
    assert "no-such-secret" in problem.message


def test_a_readable_password_is_masked_and_the_host_pending(plan_of, tmp_path, write_plan):
    write_plan("s3cret\n", "esx3.pw")
    ctx, (changes, problems) = stage_diff(plan_of(add_host('{ file = "esx3.pw" }')), tmp_path, facts())
    assert problems == [] and len(changes) == 1
    assert "s3cret" in ctx.redactor.secrets
    assert ctx.pending_hosts == {ESX3}


def test_a_present_hosts_password_is_not_read(plan_of, tmp_path, monkeypatch):
    monkeypatch.delenv("ESX3_PW", raising=False)
    ctx, result = stage_diff(plan_of(add_host()), tmp_path, facts(missing=()))
    assert result == ([], []) and ctx.pending_hosts == set()
