"""Network partitions between lab VMs, for Jepsen-style tests.

A cut is a pair of MAC addresses: every unicast frame from one to the other,
in both directions and of any ethertype (ARP, IPv4, ...), is dropped where the
lab bridges forward it (an nftables table of ours, `bridge vsa_partition`, in
the lab namespace). Frames to or from any other MAC pass, so the lab side (the
initiator on br-iscsi) keeps reaching every VM while two of them are cut apart.

A broadcast from one side (an ARP request, say) still reaches the other, but
nothing sent back arrives, so no conversation between the two gets through.

    with Partition([node_pairs(plan, "node1", "node2")]):
        ...  # node1 and node2 cannot reach each other; both reach the lab side
"""

import re
import subprocess
from collections.abc import Iterable, Sequence
from types import TracebackType

from orchestrator.identity import nic_mac
from orchestrator.lab import netns
from orchestrator.lab.simulator import LabError
from orchestrator.plan import Plan

TABLE = "vsa_partition"
NIC_ROLES = tuple(netns.BRIDGES)
_MAC = re.compile(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}")

MacPair = tuple[str, str]


def cut(namespace: str, pairs: Iterable[MacPair]) -> None:
    """Cut each pair of MACs from each other, replacing any earlier cut in this
    namespace (one nft transaction: there is no moment with neither in force)."""
    checked = [_pair(pair) for pair in pairs]
    elements = sorted({f"{a} . {b}" for a, b in checked} | {f"{b} . {a}" for a, b in checked})
    if not elements:
        heal(namespace)
        return
    _nft(
        namespace,
        f"table bridge {TABLE} {{}}\n"
        f"delete table bridge {TABLE}\n"
        f"table bridge {TABLE} {{\n"
        f"    set cut {{\n"
        f"        type ether_addr . ether_addr\n"
        f"        elements = {{ {', '.join(elements)} }}\n"
        f"    }}\n"
        f"    chain forward {{\n"
        f"        type filter hook forward priority filter; policy accept;\n"
        f"        ether saddr . ether daddr @cut counter drop\n"
        f"    }}\n"
        f"}}\n",
    )


def heal(namespace: str) -> None:
    """Remove our table (and only it); harmless when there is none."""
    _nft(namespace, f"table bridge {TABLE} {{}}\ndelete table bridge {TABLE}\n")


def rules(namespace: str) -> str:
    """Our table as nft lists it, or "" when nothing is cut."""
    listed = _nft(namespace, "list tables bridge\n")
    if f"table bridge {TABLE}" not in listed.splitlines():
        return ""
    return _nft(namespace, f"list table bridge {TABLE}\n")


def node_pairs(plan: Plan, a: str, b: str, roles: Sequence[str] = NIC_ROLES) -> list[MacPair]:
    """The MAC pairs that cut node a from node b on these networks (NIC roles)."""
    return [(nic_mac(plan, a, role), nic_mac(plan, b, role)) for role in roles]


class Partition:
    """A cut for the length of a with block; healed on the way out, even on error."""

    def __init__(self, pairs: Iterable[MacPair], namespace: str | None = None) -> None:
        self.pairs = [_pair(pair) for pair in pairs]
        self.namespace = namespace or netns.NAMESPACE

    def __enter__(self) -> "Partition":
        cut(self.namespace, self.pairs)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        heal(self.namespace)


def _pair(pair: MacPair) -> MacPair:
    a, b = (mac.strip().lower() for mac in pair)
    for mac in (a, b):
        if not _MAC.fullmatch(mac):
            raise LabError(f"partition: {mac!r} is not a MAC address (aa:bb:cc:dd:ee:ff)")
    if a == b:
        raise LabError(f"partition: cannot cut {a} from itself")
    return a, b


def _nft(namespace: str, script: str) -> str:
    """Run an nft script inside the namespace; its stdout, or LabError with nft's stderr."""
    netns.require_tools({"ip": "iproute2", "nft": "nftables"})
    command = ["ip", "netns", "exec", namespace, "nft", "-f", "-"]
    result = subprocess.run(command, input=script, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip()
        raise LabError(f"nft in namespace {namespace} failed (exit {result.returncode}): {detail}")
    return result.stdout
