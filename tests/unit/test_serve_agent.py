"""ocf:vsa:serve's start, run as rendered with stand-ins for drbdadm, corosync-quorumtool and
the rest: when it drops a DRBD connection to a peer that left the membership (three votes
only), and that it logs each step."""

import os
import re
import subprocess
from pathlib import Path

import pytest

from orchestrator.guest.managers import pacemaker
from orchestrator.guest.render import node_files
from orchestrator.plan import load_plan
from tests.unit.test_guest_diff import DEVICES
from tests.unit.test_pacemaker import PACEMAKER as TWO_NODE
from tests.unit.test_pacemaker import SECRETS, with_ha
from tests.unit.test_plan import THIRD_HOST
from tests.unit.test_witness import PACEMAKER, WITNESS

RESOURCES = ("iscsi.config", "iscsi.target.0")
# A stand-in drbdadm over one folder per resource: cs (connection state), role, and peer
# (the peer's role while connected). `primary` is refused while a connected peer is Primary.
DRBDADM = """#!/bin/sh
d=$DRBD_STATE/$2
echo "$1 $2" >> $DRBD_STATE/calls
case $1 in
    cstate) cat $d/cs ;;
    disconnect) echo StandAlone > $d/cs ;;
    connect) echo WFConnection > $d/cs ;;
    primary) [ "$(cat $d/cs)" = Connected ] && [ "$(cat $d/peer)" = Primary ] && exit 11
        echo Primary > $d/role ;;
esac
# Both resources run side by side: /proc/drbd is replaced whole, never seen half written.
for r in $DRBD_STATE/*/; do echo " 0: cs:$(cat $r/cs) ro:$(cat $r/role)/Unknown"; done > $DRBD_STATE/proc.$$
mv $DRBD_STATE/proc.$$ $DRBD_STATE/proc
"""


def start(
    tmp_path: Path, plan_text: str, members: str, peer_connected: bool, mounted: bool = True
) -> list[str]:
    """Run the rendered agent's start on node1: its exit, then the drbdadm calls it made (the two
    resources are promoted side by side: their calls interleave)."""
    plan = load_plan(_write(tmp_path, plan_text))
    agent = node_files(plan, SECRETS, DEVICES)[pacemaker.SERVE_AGENT].content
    state, bin_dir = tmp_path / "drbd", tmp_path / "bin"
    bin_dir.mkdir()
    for resource in RESOURCES:
        folder = state / resource
        folder.mkdir(parents=True)
        (folder / "cs").write_text("Connected\n" if peer_connected else "WFConnection\n")
        (folder / "role").write_text("Secondary\n")
        (folder / "peer").write_text("Primary\n")
    (state / "proc").write_text("")
    lines = "\\n".join(f"  {n}  1 {name}" for n, name in enumerate(members.split(), 1))
    stand_ins = {
        "drbdadm": DRBDADM,
        "corosync-quorumtool": f'#!/bin/sh\nprintf "Quorate:   Yes\\n Nodeid Votes Name\\n{lines}\\n"\n',
        "uname": "#!/bin/sh\necho node1\n",
        "logger": f'#!/bin/sh\necho "$*" >> {tmp_path / "journal"}\n',
        "mountpoint": f"#!/bin/sh\nexit {0 if mounted else 1}\n",
        "mount": f'#!/bin/sh\necho "$*" >> {tmp_path / "mounts"}\n',
        "ip": "#!/bin/sh\nexit 0\n",
        "target": "#!/bin/sh\nexit 0\n",
        "send_arp": "#!/bin/sh\nexit 0\n",
    }
    for name, body in stand_ins.items():
        (bin_dir / name).write_text(body)
        (bin_dir / name).chmod(0o755)
    agent = agent.replace("/proc/drbd", str(state / "proc")).replace("PROMOTE_WAIT_S=30", "PROMOTE_WAIT_S=2")
    agent = re.sub(r"\S+/send_arp ", f"{bin_dir / 'send_arp'} ", agent)
    agent = re.sub(r"^TARGET=.*$", f"TARGET={bin_dir / 'target'}", agent, flags=re.M)
    (tmp_path / "serve").write_text(agent)
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "DRBD_STATE": str(state),
        "OCF_RESKEY_ip": "10.11.55.50",
        "OCF_RESKEY_cidr_netmask": "24",
    }
    code = subprocess.run(["sh", str(tmp_path / "serve"), "start"], env=env, check=False).returncode
    calls = [call for call in (state / "calls").read_text().splitlines() if not call.startswith("cstate")]
    return [f"exit {code}", *calls]


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "plan.toml"
    path.write_text(text)
    return path


@pytest.fixture
def three_votes(plan_text) -> str:
    return with_ha(plan_text, PACEMAKER) + THIRD_HOST + WITNESS


def test_a_connection_to_a_peer_that_left_the_membership_is_dropped_then_listened_on_again(
    tmp_path, three_votes
):
    calls = start(tmp_path, three_votes, members="node1 witness", peer_connected=True)
    assert calls[0] == "exit 0"
    for resource in RESOURCES:
        assert [c for c in calls if c.endswith(resource)] == [
            f"primary {resource}",
            f"disconnect {resource}",
            f"primary {resource}",
            f"connect {resource}",
        ]
    journal = (tmp_path / "journal").read_text()
    assert "node2 left the membership" in journal
    assert all(step in journal for step in ("DRBD primary", "config volume mounted", "VIP up"))


def test_a_peer_still_a_member_is_never_disconnected(tmp_path, three_votes):
    calls = start(tmp_path, three_votes, members="node1 node2 witness", peer_connected=True)
    assert calls[0] == "exit 1"  # the peer is primary and connected: refused until the deadline
    assert not [call for call in calls if call.startswith(("disconnect", "connect"))]


def test_with_two_votes_a_connection_is_never_dropped(tmp_path, plan_text):
    calls = start(tmp_path, with_ha(plan_text, TWO_NODE), members="node1", peer_connected=True)
    assert calls[0] == "exit 1"
    assert not [call for call in calls if call.startswith(("disconnect", "connect"))]


def test_a_peer_already_gone_for_drbd_is_promoted_without_a_disconnect(tmp_path, three_votes):
    calls = start(tmp_path, three_votes, members="node1 witness", peer_connected=False)
    assert sorted(calls) == ["exit 0", *(f"primary {resource}" for resource in RESOURCES)]


@pytest.mark.parametrize(
    ("mounted", "expected"),
    [(False, "-t ext4 -o sync /dev/drbd0 /srv/data"), (True, "-o remount,sync /srv/data")],
)
def test_the_config_volume_is_mounted_synchronous(tmp_path, three_votes, mounted, expected):
    """A PERSISTENT RESERVE OUT's APTPL file must be on both disks when LIO answers: a config
    volume mounted by an older agent without sync is remounted."""
    calls = start(tmp_path, three_votes, members="node1 witness", peer_connected=False, mounted=mounted)
    assert calls[0] == "exit 0"
    assert (tmp_path / "mounts").read_text().splitlines() == [expected]
