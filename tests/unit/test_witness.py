"""The witness: plan rules (at their lines), the three-vote Corosync files, the witness VM
the vms diff plans (no data disk, one NIC), and the guest diff for it."""

from dataclasses import replace
from pathlib import Path
from xml.etree import ElementTree

import pytest

from orchestrator.guest.facts import Services
from orchestrator.guest.managers import pacemaker, services_fact
from orchestrator.guest.render import Secrets, desired_state, sha256
from orchestrator.identity import nic_mac, node_identity
from orchestrator.lab.plan_file import lab_plan_text
from orchestrator.lab.simulator import SimInfo
from orchestrator.plan import PlanError, WitnessNode, load_plan
from orchestrator.stages.guest.diff import diff
from orchestrator.stages.guest.operations import (
    EnableService,
    LoadCib,
    RestartService,
    StartService,
    WaitServing,
    WriteFile,
)
from orchestrator.stages.guest.witness import WitnessFacts
from orchestrator.stages.guest.witness import diff as witness_diff
from orchestrator.stages.vms import diff as vms_diff
from orchestrator.stages.vms.facts import NodeVmFacts, OvaSource, Placement, VmsFacts
from orchestrator.stages.vms.operations import AddController, AddDisk, AddNic, ReconfigureVm
from orchestrator.state import new_ed25519_key
from tests.unit.test_guest_diff import DEVICES, NODES, fresh
from tests.unit.test_pacemaker import healthy, with_ha
from tests.unit.test_plan import THIRD_HOST, edit
from tests.unit.test_vms_diff import TEMPLATE

WITNESS = 'witness = { datastore = "local-esx3", iscsi_ip = "10.11.55.57" }\n'
PACEMAKER = '[ha]\nmanager = "pacemaker"\n'
SECRETS = Secrets(drbd="DRBDSECRET", cluster="COROSYNCSECRET", chap="CHAPSECRET")


@pytest.fixture
def plan_path(plan_text, write_plan) -> Path:
    return write_plan(with_ha(plan_text, PACEMAKER) + THIRD_HOST + WITNESS)


@pytest.fixture
def plan(plan_path):
    return load_plan(plan_path)


def issue(path: Path):
    with pytest.raises(PlanError) as caught:
        load_plan(path)
    [found] = caught.value.issues
    return found


# ---------------------------------------------------------------- plan


def test_a_witness_on_the_third_host_gives_three_votes(plan):
    assert plan.witness == WitnessNode(
        esxi="esx3.demo.local", datastore="local-esx3", node="witness", iscsi_ip="10.11.55.57", memory_mb=512
    )
    assert plan.votes == 3 and [n.node for n in plan.vm_nodes] == ["node1", "node2", "witness"]


def test_heartbeat_cannot_use_a_witness(plan_text, write_plan):
    path = write_plan(plan_text + THIRD_HOST + WITNESS)
    found = issue(path)
    assert found.key == "hosts[2].witness" and 'ha.manager = "pacemaker"' in found.message
    assert path.read_text().splitlines()[found.line - 1].startswith("witness")


def test_a_witness_and_two_node_contradict(plan_text, write_plan):
    path = write_plan(with_ha(plan_text, PACEMAKER + "two_node = true\n") + THIRD_HOST + WITNESS)
    found = issue(path)
    assert found.key == "ha.two_node" and "remove ha.two_node" in found.message


def test_the_witness_may_not_share_a_storage_host(plan_text, write_plan):
    text = with_ha(plan_text, PACEMAKER)
    text = edit(text, 'node = "node2"\n', 'node = "node2"\n' + WITNESS)
    found = issue(write_plan(text))
    assert found.key == "hosts[1].witness" and "third host" in found.message


@pytest.mark.parametrize(("address", "why"), [("10.11.55.55", "already used"), ("192.0.2.5", "outside")])
def test_the_witness_address_is_free_and_on_the_iscsi_network(plan_text, write_plan, address, why):
    witness = WITNESS.replace("10.11.55.57", address)
    found = issue(write_plan(with_ha(plan_text, PACEMAKER) + THIRD_HOST + witness))
    assert found.key == "hosts[2].witness" and why in found.message


# ---------------------------------------------------------------- files


def test_corosync_has_three_members_and_no_two_node(plan):
    desired = desired_state(plan, SECRETS, DEVICES)
    conf = desired["node1"].files[pacemaker.COROSYNC_CONF].content
    assert "name: witness\n        nodeid: 3\n        ring0_addr: 10.11.55.57" in conf
    assert "two_node" not in conf.replace("ha.two_node", "")
    # The witness holds Corosync's files only, the same ones.
    assert set(desired["witness"].files) == {pacemaker.COROSYNC_CONF, pacemaker.AUTHKEY}
    assert desired["witness"].files[pacemaker.COROSYNC_CONF].content == conf


# ---------------------------------------------------------------- vms


def test_the_witness_vm_has_no_data_disk_one_nic_and_its_own_memory(plan):
    witness = plan.witness
    placement = Placement("host-3", "cr-3", "pool-3", "ds-3", True, {"VSA-iSCSI": "net-1"})
    identity = node_identity(plan, witness, new_ed25519_key("root@witness"), "ssh-ed25519 AAAA admin")
    edits = vms_diff.vm_edits(plan, witness, placement, TEMPLATE, identity, None, frozenset(), "vm w")
    assert edits.problems == []
    assert not [d for d in edits.devices if isinstance(d, AddController | AddDisk)]
    [nic] = [d for d in edits.devices if isinstance(d, AddNic)]
    assert (nic.role, nic.network, nic.mac) == ("iscsi", "VSA-iSCSI", nic_mac(plan, "witness", "iscsi"))
    assert edits.memory_mb == 512
    assert "eth1" not in identity.metadata  # no replication network
    ova = OvaSource("vsa-appliance.ova", TEMPLATE)
    site = VmsFacts([NodeVmFacts(witness, placement, None)], True, None, [], ova=ova)
    changes, problems = vms_diff.diff(plan, site, {"witness": identity}, frozenset())
    assert problems == []
    [change] = changes
    assert change.resource == "vm vsa-witness" and change.action == "create"
    assert not any(isinstance(op, ReconfigureVm) for op in change.operations)  # ConfigureNewVm does it


def test_a_host_without_the_iscsi_portgroup_cannot_carry_the_witness(plan):
    placement = Placement("host-3", "cr-3", "pool-3", "ds-3", True, {})
    problems = vms_diff.placement_problems(plan, plan.witness, placement, "vm vsa-witness")
    assert len(problems) == 1 and "VSA-iSCSI" in problems[0].message  # replication is not needed


# ---------------------------------------------------------------- guest


def witness_services(active: bool) -> Services:
    units = frozenset({"corosync", "pacemaker"}) if active else frozenset()
    return Services(units, units, False, False, False, False)


def test_a_fresh_witness_gets_corosync_before_the_nodes_start(plan):
    desired = desired_state(plan, SECRETS, DEVICES)
    empty = WitnessFacts(files={}, services=witness_services(False))
    changes, problems = diff(plan, desired, {node: fresh() for node in NODES}, empty)
    assert problems == []
    resources = [c.resource for c in changes]
    assert resources.index("witness witness") < resources.index("node node1 services")
    change = changes[resources.index("witness witness")]
    writes = [op.path for op in change.operations if isinstance(op, WriteFile)]
    assert writes == [pacemaker.COROSYNC_CONF, pacemaker.AUTHKEY]
    assert change.operations[-2:] == (
        EnableService("witness", "corosync"),
        StartService("witness", "corosync"),
    )
    assert next(a for a in change.attrs if a.name == pacemaker.AUTHKEY).sensitive


def test_the_witness_starts_pacemaker_only_after_the_cib_bans_vsa_serve_there(plan):
    """Its Pacemaker holds the CIB's third copy; started before the ban, it could be given the LUN."""
    desired = desired_state(plan, SECRETS, DEVICES)
    empty = WitnessFacts(files={}, services=witness_services(False))
    changes, _ = diff(plan, desired, {node: fresh() for node in NODES}, empty)
    resources = [c.resource for c in changes]
    assert resources[-2:] == ["pacemaker configuration", "witness witness pacemaker"]
    assert changes[-1].operations == (
        EnableService("witness", "pacemaker"),
        StartService("witness", "pacemaker"),
        WaitServing(),
    )
    assert "pacemaker" not in str(changes[resources.index("witness witness")].operations)
    cib = ElementTree.fromstring(desired["node1"].files[pacemaker.CIB_FILE].content)
    [ban] = cib.findall("constraints/rsc_location")
    assert ban.attrib == {
        "id": pacemaker.WITNESS_BAN,
        "rsc": "vsa-serve",
        "node": "witness",
        "score": "-INFINITY",
        "resource-discovery": "never",
    }


def test_a_site_whose_witness_runs_corosync_only_loads_the_ban_then_starts_pacemaker_there(plan):
    """A site set up before the witness ran Pacemaker: its live CIB lacks the ban (cib_loaded is
    False), so the CIB is loaded again before the witness's Pacemaker starts."""
    desired = desired_state(plan, SECRETS, DEVICES)
    facts = {"node1": healthy(desired, "node1", True), "node2": healthy(desired, "node2", False)}
    for node in NODES:
        facts[node].services = replace(facts[node].services, cib_loaded=False)
    files = {path: (sha256(file.content), file.mode) for path, file in desired["witness"].files.items()}
    corosync_only = frozenset({"corosync"})
    witness = WitnessFacts(files, Services(corosync_only, corosync_only, False, False, False, False))
    changes, _ = diff(plan, desired, facts, witness)
    assert [c.resource for c in changes] == ["pacemaker configuration", "witness witness pacemaker"]
    assert isinstance(changes[0].operations[0], LoadCib)


def test_the_ban_is_part_of_what_counts_as_our_cib_loaded(plan):
    command = services_fact(plan).command
    assert (
        f"//rsc_location[@id='{pacemaker.WITNESS_BAN}']" in command
        and "//primitive[@id='vsa-serve']" in command
    )


def test_a_healthy_witness_has_nothing_to_do_and_a_changed_file_restarts_corosync(plan):
    desired = desired_state(plan, SECRETS, DEVICES)["witness"]
    files = {path: (sha256(file.content), file.mode) for path, file in desired.files.items()}
    assert witness_diff("witness", desired, WitnessFacts(files, witness_services(True))) is None
    files[pacemaker.COROSYNC_CONF] = ("0" * 64, 0o644)
    change = witness_diff("witness", desired, WitnessFacts(files, witness_services(True)))
    assert change is not None and change.operations[-1] == RestartService("witness", "corosync")


def test_the_three_host_example_plan_has_the_witness_on_its_third_host():
    plan = load_plan(Path(__file__).resolve().parents[2] / "plans" / "three-host.toml")
    assert (plan.ha.manager, plan.ha.two_node, plan.votes) == ("pacemaker", False, 3)
    assert plan.witness is not None and plan.witness.esxi == plan.hosts[2].esxi


@pytest.mark.parametrize("manager", ["heartbeat", "pacemaker"])
def test_the_lab_plan_carries_the_witness_only_with_pacemaker(manager, tmp_path):
    info = SimInfo(
        host="127.0.0.1",
        port=8989,
        username="u",
        password="p",
        thumbprint=":".join(["AB"] * 32),
        datacenter="DC0",
        template="vsa-appliance",
        portgroups=["VSA-iSCSI", "VSA-Replication"],
        hosts=[{"name": f"esx{n}", "datastore": f"esx{n}-local"} for n in (1, 2, 3)],
        shared_datastore="shared",
        url="https://127.0.0.1:8989/sdk",
        control_url="http://127.0.0.1:8990",
        spare_hosts=[],
    )
    (tmp_path / "pw").write_text("p\n")
    (tmp_path / "key.pub").write_text("ssh-ed25519 AAAA lab\n")
    path = tmp_path / "lab.toml"
    path.write_text(lab_plan_text(info, "pw", "key", None, manager))
    plan = load_plan(path)
    assert plan.ha.manager == manager
    assert (plan.witness is not None) == (manager == "pacemaker")
