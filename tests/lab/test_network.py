"""The lab network: one namespace with the two bridges, idempotent up and down,
nothing left in the root namespace."""

import json
import subprocess

import pytest

from orchestrator.lab import netns
from orchestrator.lab.simulator import LabError


def _root_links() -> set[str]:
    out = subprocess.run(["ip", "-json", "link", "show"], capture_output=True, text=True, check=True).stdout
    return {link["ifname"] for link in json.loads(out)}


def _lab_addresses() -> dict[str, list[str]]:
    out = netns.run(["ip", "-n", netns.NAMESPACE, "-json", "address", "show"])
    return {
        link["ifname"]: [f"{a['local']}/{a['prefixlen']}" for a in link["addr_info"] if a["family"] == "inet"]
        for link in json.loads(out)
    }


def test_up_and_down_are_idempotent_and_stay_in_the_namespace(lab_network: None) -> None:
    root_before = _root_links()
    netns.up()
    netns.up()
    addresses = _lab_addresses()
    assert addresses["br-iscsi"] == ["10.11.55.1/24"]
    assert addresses["br-repl"] == []
    assert addresses["lo"] == ["127.0.0.1/8"]
    netns.add_tap("lab-test-tap", "replication")
    netns.add_tap("lab-test-tap", "replication")
    link = json.loads(netns.run(["ip", "-n", netns.NAMESPACE, "-json", "link", "show", "lab-test-tap"]))[0]
    assert link["master"] == "br-repl"
    netns.delete_tap("lab-test-tap")
    netns.delete_tap("lab-test-tap")
    assert _root_links() == root_before

    netns.down()
    netns.down()
    assert not netns.exists()
    netns.up()  # the session's lab network, as the fixture left it
    assert netns.exists()


def test_missing_tools_are_named_with_their_package() -> None:
    with pytest.raises(LabError, match=r"install-lab-deps.*no-such-package"):
        netns.require_tools({"vsa-no-such-command": "no-such-package"})
