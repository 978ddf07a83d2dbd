"""The NoCloud seed carries the identity documents, network split out."""

import json
import subprocess
from pathlib import Path

from orchestrator.identity import node_identity
from orchestrator.lab.seed import nocloud_files, write_seed
from orchestrator.plan import Plan
from orchestrator.state import new_ed25519_key


def test_seed_splits_the_network_out_of_the_metadata(lab_plan: Plan, tmp_path: Path) -> None:
    node = lab_plan.storage_nodes[1]
    identity = node_identity(lab_plan, node, new_ed25519_key("root@node2"), "ssh-ed25519 AAAA admin")
    files = nocloud_files(identity)

    metadata = json.loads(files["meta-data"])
    network = json.loads(files["network-config"])
    assert "network" not in metadata
    assert metadata["local-hostname"] == "node2"
    assert network == json.loads(identity.metadata)["network"]
    assert network["ethernets"]["eth1"]["addresses"] == ["192.168.22.12/24"]
    assert files["user-data"].startswith("#cloud-config\n")

    seed = write_seed(tmp_path / "seed.iso", files)
    assert seed.stat().st_mode & 0o777 == 0o600
    label = subprocess.run(["blkid", "-o", "value", "-s", "LABEL", seed], capture_output=True, text=True)
    assert label.stdout.strip() == "cidata"
