"""A NoCloud seed (an ISO 9660 image labelled "cidata") from the same cloud-init
documents the vms stage writes to guestinfo (orchestrator.identity)."""

import json
import tempfile
from pathlib import Path

from orchestrator.identity import NodeIdentity
from orchestrator.lab.netns import require_tools, run

SEED_TOOLS = {"xorriso": "xorriso"}


def nocloud_files(identity: NodeIdentity) -> dict[str, str]:
    """meta-data, user-data and network-config: NoCloud reads the network from
    its own file, where guestinfo carries it inside the metadata."""
    metadata = json.loads(identity.metadata)
    network = metadata.pop("network")
    return {
        "meta-data": json.dumps(metadata, indent=1, sort_keys=True) + "\n",
        "user-data": identity.userdata + "\n",
        "network-config": json.dumps(network, indent=1, sort_keys=True) + "\n",
    }


def write_seed(path: Path, files: dict[str, str]) -> Path:
    """Write the seed ISO to path (replacing it, mode 0600: it holds the host's
    private key) and return path."""
    require_tools(SEED_TOOLS)
    with tempfile.TemporaryDirectory(prefix="vsa-seed-") as staging:
        for name, text in files.items():
            (Path(staging) / name).write_text(text)
        path.unlink(missing_ok=True)
        run(
            [
                "xorriso",
                "-as",
                "mkisofs",
                "-quiet",
                "-volid",
                "cidata",
                "-joliet",
                "-rock",
                "-output",
                path,
                staging,
            ]
        )
    path.chmod(0o600)
    return path
