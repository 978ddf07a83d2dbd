"""The plan file: schema v1 (see DESIGN.md), loading and validation.

Every problem is reported as `file:line: key: what is wrong; what is valid`,
all problems at once, before anything connects anywhere.
"""

import ipaddress
import os
import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PositiveInt,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from orchestrator.plan_locate import Loc, dotted, key_lines, line_of

ISCSI_PORT = 3260  # the target's portal on the VIP (and on each node's iSCSI address)

IPv4 = ipaddress.IPv4Address


class PlanIssue(BaseModel):
    """One problem found in a plan, located in its file."""

    file: str
    line: int
    key: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.key}: {self.message}"


class PlanError(Exception):
    """A plan that cannot be used; carries every issue found."""

    def __init__(self, issues: list[PlanIssue]):
        self.issues = issues
        super().__init__("\n".join(str(issue) for issue in issues))


def _at_key(key: str, message: str) -> PydanticCustomError:
    """A model-level error that the report places on one key of that model."""
    return PydanticCustomError("plan_rule", message, {"key": key})


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SecretRef(_Section):
    """Where a secret comes from: an environment variable or a file, never inline."""

    env: str | None = None
    file: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _not_inline(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            raise PydanticCustomError(
                "inline_secret",
                "secrets may not be written in the plan; use "
                '{ env = "VARIABLE" } or { file = "path/to/secret" }',
            )
        return value

    @model_validator(mode="after")
    def _exactly_one(self) -> "SecretRef":
        if (self.env is None) == (self.file is None):
            raise ValueError('give exactly one of { env = "VARIABLE" } or { file = "path" }')
        return self

    def resolve(self, base_dir: Path, key: str) -> str:
        """The secret's value; raises PlanError-free ValueError with a clear message."""
        if self.env is not None:
            value = os.environ.get(self.env)
            if not value:
                raise ValueError(f"{key}: environment variable {self.env} is not set")
            return value
        if self.file is None:  # the validator above requires env or file
            raise ValueError(f'{key}: give {{ env = "VARIABLE" }} or {{ file = "path" }}')
        path = (base_dir / Path(self.file).expanduser()).resolve()
        try:
            return path.read_text().rstrip("\n")
        except OSError as err:
            raise ValueError(f"{key}: cannot read secret file {path}: {err.strerror}") from None


class VSphere(_Section):
    server: str
    port: Annotated[int, Field(ge=1, le=65535)] = 443
    user: str
    password: SecretRef
    thumbprint: str | None = None
    ca_file: str | None = None
    insecure: bool = False
    datacenter: str

    @field_validator("thumbprint")
    @classmethod
    def _sha256(cls, value: str | None) -> str | None:
        if value is None:
            return None
        digits = value.replace(":", "").lower()
        if not re.fullmatch(r"[0-9a-f]{64}", digits):
            raise ValueError(
                "must be the SHA-256 fingerprint of the server certificate: "
                "64 hex digits, colons allowed (openssl x509 -noout -fingerprint -sha256)"
            )
        return ":".join(digits[i : i + 2] for i in range(0, 64, 2)).upper()

    @model_validator(mode="after")
    def _one_trust_mode(self) -> "VSphere":
        if self.insecure and (self.thumbprint or self.ca_file):
            raise _at_key(
                "insecure",
                "insecure = true cannot be combined with thumbprint or ca_file; "
                "remove insecure to verify the certificate",
            )
        if self.thumbprint and self.ca_file:
            raise _at_key("ca_file", "give either thumbprint or ca_file, not both")
        return self


class Cluster(_Section):
    name: str
    ha: bool = True


Vlan = Annotated[int, Field(ge=0, le=4094)]
Mtu = Annotated[int, Field(ge=1280, le=9000)]
Uplink = Annotated[str, Field(pattern=r"^vmnic[0-9]+$")]


class Network(_Section):
    """The storage networks. The keys after `replication_prefix` are opt-in: each one
    the plan gives is created and healed by the network stage; without them the
    portgroups (and vmknics) must exist and are only adopted."""

    iscsi_portgroup: str
    iscsi_prefix: Annotated[int, Field(ge=1, le=30)]
    iscsi_gateway: IPv4 | None = None
    vip: IPv4
    replication_portgroup: str
    replication_prefix: Annotated[int, Field(ge=1, le=30)]
    vswitch: str | None = None  # the standard vSwitch missing portgroups are created on
    uplinks: list[Uplink] | None = None  # with vswitch: create it with these (hosts[].uplinks overrides)
    mtu: Mtu | None = None  # the vSwitch's and the iSCSI vmknics' MTU
    iscsi_vlan: Vlan | None = None
    replication_vlan: Vlan | None = None
    bind: bool = False  # bind each host's iSCSI vmknic to its software iSCSI adapter

    @model_validator(mode="after")
    def _uplinks_need_vswitch(self) -> "Network":
        if self.uplinks is not None and self.vswitch is None:
            raise _at_key("uplinks", 'uplinks belong to a vSwitch: give network.vswitch = "vSwitch1" too')
        return self


class Source(_Section):
    template: str | None = None
    ova: str | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> "Source":
        if (self.template is None) == (self.ova is None):
            raise ValueError('give exactly one of { template = "name" } or { ova = "path" }')
        return self


Provisioning = Literal["thick-eager", "thick-lazy", "thin"]


class StorageVm(_Section):
    source: Source
    cpus: PositiveInt = 1
    memory_mb: Annotated[int, Field(ge=256)] = 1024
    meta_disk_gb: PositiveInt = 1
    config_disk_gb: PositiveInt = 1
    data_disk_gb: PositiveInt
    provisioning: Provisioning = "thick-eager"
    ssh_user: str = "root"
    ssh_key: str


class Replication(_Section):
    protocol: Literal["C"] = Field(
        "C",
        description="only synchronous protocol C: A and B can lose acknowledged writes",
    )
    resync_rate: Annotated[str, Field(pattern=r"^[1-9][0-9]*[KMG]?$")] = "100M"


class Ha(_Section):
    """The cluster manager and its timings. heartbeat's keys (keepalive ..
    auto_failback) are read only with manager = "heartbeat"."""

    manager: Literal["heartbeat", "pacemaker"] = "pacemaker"
    # Pacemaker/Corosync with two votes: no quorum can tell a dead peer from a cut-off one.
    two_node: bool = False
    keepalive: PositiveInt = 1
    deadtime: PositiveInt = 10
    warntime: PositiveInt = 5
    initdead: PositiveInt = 60
    auto_failback: bool = False

    @model_validator(mode="after")
    def _ordered(self) -> "Ha":
        if not self.keepalive < self.warntime < self.deadtime <= self.initdead:
            if self.warntime <= self.keepalive:
                key = "warntime"
            elif self.deadtime <= self.warntime:
                key = "deadtime"
            else:
                key = "initdead"
            raise _at_key(
                key,
                "timings must satisfy keepalive < warntime < deadtime <= initdead "
                f"(got {self.keepalive} < {self.warntime} < {self.deadtime} <= {self.initdead})",
            )
        return self


_IQN = r"^iqn\.[0-9]{4}-[0-9]{2}\.[a-z0-9][a-z0-9.\-]*(:[A-Za-z0-9.\-:_]+)?$"


# Target kinds named in the schema but never built (no appliance support, no tests).
_UNBUILT_TARGETS = ("iet", "tgt")


class Target(_Section):
    kind: Literal["lio"] = "lio"  # LIO, started by heartbeat's vsa-target resource script
    iqn: Annotated[str, Field(pattern=_IQN)] | None = None
    chap: bool = True

    @model_validator(mode="before")
    @classmethod
    def _built_kind(cls, value: Any) -> Any:
        kind = value.get("kind") if isinstance(value, dict) else None
        if kind in _UNBUILT_TARGETS:
            raise _at_key("kind", f'"{kind}" is not built yet; use "lio"')
        return value


# Seconds a takeover needs after heartbeat declares the peer dead: DRBD promote,
# config filesystem mount, VIP and target start.
TAKEOVER_S = 10
# Pacemaker: Corosync's token (1 s) and consensus (1.2 s) declare a node lost, then
# one resource agent (vsa-serve) promotes, mounts, starts the target and the VIP.
# The bound is the measured worst case plus a margin: from SIGKILL of the serving
# node to the LUN served again, 19.4-19.7 s in the lab (three VMs under TCG on two
# cores; real hardware is faster), so 25 s; ESXi's RecoveryTimeout derives from it.
PACEMAKER_FAILOVER_S = 25


class Initiator(_Section):
    """ESXi software iSCSI timeouts on our target (ESXi's ranges). Unset
    recovery_timeout derives from ha.deadtime, so a failover completes before
    ESXi declares the path dead, and far inside its 140 s all-paths-down timeout."""

    recovery_timeout: Annotated[int, Field(ge=1, le=120)] | None = None
    noop_out_interval: Annotated[int, Field(ge=1, le=60)] = 5
    noop_out_timeout: Annotated[int, Field(ge=10, le=30)] = 10
    login_timeout: Annotated[int, Field(ge=1, le=60)] = 5


class Liveness(_Section):
    """A storage VM that vSphere shows powered on but whose guest has not answered
    SSH for reset_after_s (hung, panicked) is reset by the vms stage, and only
    while its peer serves the LUN UpToDate (never the only good copy). Unset, it
    is RESET_AFTER_S, or longer when a failover takes longer (Plan.reset_after_s)."""

    reset_after_s: Annotated[int, Field(ge=10, le=3600)] | None = None


RESET_AFTER_S = 120


class Datastore(_Section):
    name: str
    rename: bool = False  # rename our LUN's datastore when its name differs


def _host_thumbprint(value: str) -> str:
    digits = value.replace(":", "").lower()
    if not re.fullmatch(r"[0-9a-f]{40}|[0-9a-f]{64}", digits):
        raise ValueError(
            "must be the host certificate's SHA-1 (40 hex digits) or SHA-256 (64) fingerprint, "
            "colons allowed (on the host: openssl x509 -noout -fingerprint -sha1 of its rui.crt)"
        )
    return ":".join(digits[i : i + 2] for i in range(0, len(digits), 2)).upper()


class HostAdd(_Section):
    """How to add a host that is not yet in vCenter: its root login and the
    certificate thumbprint vCenter must see (pinned: any other is refused)."""

    user: str = "root"
    password: SecretRef
    thumbprint: str

    @field_validator("thumbprint")
    @classmethod
    def _fingerprint(cls, value: str) -> str:
        return _host_thumbprint(value)


NodeName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]{0,30}$")]


class Witness(_Section):
    """The third vote: a small VM from the same appliance on a host without a
    storage node, a Corosync member that holds no data and never serves the LUN."""

    node: NodeName = "witness"
    datastore: str
    iscsi_ip: IPv4
    memory_mb: Annotated[int, Field(ge=256)] = 512


class HostEntry(_Section):
    """One ESXi host; with `node` it also carries a storage VM, with `witness` the witness VM."""

    esxi: str
    datastore: str | None = None
    node: NodeName | None = None
    iscsi_ip: IPv4 | None = None
    replication_ip: IPv4 | None = None
    vmk_ip: IPv4 | None = None  # the host's VMkernel port on the iSCSI portgroup
    uplinks: list[Uplink] | None = None  # this host's uplinks for network.vswitch
    add: HostAdd | None = None
    witness: Witness | None = None

    @property
    def is_storage_node(self) -> bool:
        return self.node is not None


class VmNode(BaseModel):
    """A VM of ours on one host's local datastore, reached at its iSCSI address."""

    model_config = ConfigDict(frozen=True)

    esxi: str
    datastore: str
    node: str
    iscsi_ip: IPv4


class StorageNode(VmNode):
    """A host entry that carries a storage VM, with every key present."""

    replication_ip: IPv4


class WitnessNode(VmNode):
    """The witness VM: no data disks, one NIC (iSCSI network); Corosync's third vote and a
    copy of Pacemaker's CIB, never a resource."""

    memory_mb: int


class Plan(_Section):
    name: Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]{0,30}$")]
    vsphere: VSphere
    cluster: Cluster | None = None
    network: Network
    storage_vm: StorageVm
    replication: Replication = Replication()
    ha: Ha = Ha()
    target: Target = Target()
    initiator: Initiator = Initiator()
    liveness: Liveness = Liveness()
    datastore: Datastore
    hosts: Annotated[list[HostEntry], Field(min_length=2)]

    _path: Path = PrivateAttr(default=Path("plan.toml"))

    @property
    def path(self) -> Path:
        return self._path

    @property
    def base_dir(self) -> Path:
        return self._path.parent

    @property
    def ssh_key_file(self) -> Path:
        """The admin's private key: `~` expands first, then a relative path is the plan's folder's."""
        return (self.base_dir / Path(self.storage_vm.ssh_key).expanduser()).resolve()

    @property
    def ova_file(self) -> Path | None:
        """The source OVA (storage_vm.source.ova): `~` expands, a relative path is the plan folder's."""
        ova = self.storage_vm.source.ova
        return (self.base_dir / Path(ova).expanduser()).resolve() if ova else None

    @property
    def state_dir(self) -> Path:
        """Generated secrets and host keys, beside the plan (DESIGN.md)."""
        return self._path.with_name(self._path.name + ".state")

    @property
    def storage_nodes(self) -> list[StorageNode]:
        return [StorageNode(**host.model_dump()) for host in self.hosts if host.node]

    @property
    def witness(self) -> WitnessNode | None:
        for host in self.hosts:
            if host.witness is not None:
                return WitnessNode(esxi=host.esxi, **host.witness.model_dump())
        return None

    @property
    def vm_nodes(self) -> list[VmNode]:
        """Every VM of ours: the storage nodes, then the witness."""
        witness = self.witness
        return [*self.storage_nodes, *([witness] if witness else [])]

    @property
    def votes(self) -> int:
        """Corosync's expected votes: one per storage node and the witness."""
        return len(self.vm_nodes)

    @property
    def iqn(self) -> str:
        return self.target.iqn or f"iqn.2011-08.org.vsa-orchestrate:{self.name}.lun0"

    @property
    def failover_s(self) -> int:
        """Worst-case seconds from a node's death to the LUN served again."""
        if self.ha.manager == "pacemaker":
            return PACEMAKER_FAILOVER_S
        return self.ha.deadtime + TAKEOVER_S

    @property
    def failover_reason(self) -> str:
        """Where failover_s comes from, for messages."""
        if self.ha.manager == "pacemaker":
            return f"Pacemaker's takeover bound = {self.failover_s} s"
        return f"ha.deadtime {self.ha.deadtime} s + {TAKEOVER_S} s takeover = {self.failover_s} s"

    @property
    def recovery_timeout(self) -> int:
        return self.initiator.recovery_timeout or min(120, self.failover_s + 10)

    @property
    def reset_after_s(self) -> int:
        """Seconds a powered-on node's guest may not answer SSH before the vms stage resets it."""
        return self.liveness.reset_after_s or max(RESET_AFTER_S, self.failover_s + 60)

    @property
    def chap_name(self) -> str:
        """The CHAP user name ESXi presents to the target."""
        return self.name

    def vm_name(self, node: str) -> str:
        return f"{self.name}-{node}"

    def resolve_password(self) -> str:
        return self.vsphere.password.resolve(self.base_dir, "vsphere.password")


def load_plan(path: str | Path) -> Plan:
    """Read, parse and validate a plan; raise PlanError listing every issue."""
    path = Path(path)
    shown = str(path)
    try:
        raw = path.read_bytes()
    except OSError as err:
        message = err.strerror or str(err)
        raise PlanError([PlanIssue(file=shown, line=0, key="(file)", message=message)]) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        message = f"not valid UTF-8 (byte {err.start}); a plan is a UTF-8 TOML file"
        raise PlanError([PlanIssue(file=shown, line=line, key="(syntax)", message=message)]) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        line = _toml_error_line(str(err), text)
        issue = PlanIssue(file=shown, line=line, key="(syntax)", message=f"not valid TOML: {err}")
        raise PlanError([issue]) from None
    except RecursionError:
        message = "not valid TOML: values are nested too deeply"
        raise PlanError([PlanIssue(file=shown, line=1, key="(syntax)", message=message)]) from None
    lines = key_lines(text)
    try:
        plan = Plan.model_validate(data)
    except ValidationError as err:
        issues = [_issue_from_pydantic(shown, lines, error) for error in err.errors()]
        raise PlanError(issues) from None
    problems = consistency_problems(plan)
    if problems:
        raise PlanError([_issue(shown, lines, loc, message) for loc, message in problems])
    plan._path = path.resolve()
    return plan


def _toml_error_line(message: str, text: str) -> int:
    match = re.search(r"line (\d+)", message)
    if match:
        return int(match.group(1))
    return text.count("\n") + 1 if "end of document" in message else 1


def _issue(file: str, lines: dict[Loc, int], loc: Loc, message: str) -> PlanIssue:
    return PlanIssue(file=file, line=line_of(lines, loc), key=dotted(loc), message=message)


def _issue_from_pydantic(file: str, lines: dict[Loc, int], error: Any) -> PlanIssue:
    loc = _clean_loc(error["loc"])
    kind = error["type"]
    ctx = error.get("ctx") or {}
    if kind == "plan_rule":
        loc = (*loc, ctx["key"])
        message = error["msg"]
    elif kind == "extra_forbidden":
        valid = ", ".join(sorted(_model_at(loc[:-1]).model_fields))
        message = f"unknown key; valid keys here are: {valid}"
    elif kind == "missing":
        message = "required key is missing"
    elif kind == "inline_secret":
        message = error["msg"]
    elif kind == "value_error" and isinstance(error.get("input"), dict):
        # A rule over a whole table: printing the table would not help.
        message = _strip_prefix(error["msg"])
    else:
        message = f"{_strip_prefix(error['msg'])} (got {_short(error.get('input'))})"
    return _issue(file, lines, loc, message)


def _clean_loc(raw: tuple[Any, ...]) -> Loc:
    """The error location as plan keys, without the type tags pydantic puts after a field
    of a union type (e.g. 'str', 'constrained-str').

    Tags only follow a leaf field; a name that is not a field of the model it appears in
    is a key written in the plan (an unknown key) and is kept as written.
    """
    loc: list[str | int] = []
    model: type[BaseModel] | None = Plan
    for part in raw:
        if isinstance(part, int):
            loc.append(part)
            continue
        if model is None:
            continue  # below a leaf field: a union tag
        loc.append(part)
        field = model.model_fields.get(part)
        if field is None:
            model = None
            continue
        model = next(
            (c for c in _classes_in(field.annotation) if issubclass(c, BaseModel)),
            None,
        )
    return tuple(loc)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _strip_prefix(message: str) -> str:
    return message.removeprefix("Value error, ")


def _model_at(loc: Loc) -> type[BaseModel]:
    """The model class that a location inside Plan points at."""
    model: type[BaseModel] = Plan
    for part in loc:
        if isinstance(part, int):
            continue
        annotation = model.model_fields[part].annotation
        for candidate in _classes_in(annotation):
            if issubclass(candidate, BaseModel):
                model = candidate
                break
    return model


def _classes_in(annotation: Any) -> list[type]:
    if isinstance(annotation, type):
        return [annotation]
    found: list[type] = []
    for arg in getattr(annotation, "__args__", ()):
        found.extend(_classes_in(arg))
    return found


def consistency_problems(plan: Plan) -> list[tuple[Loc, str]]:
    """Rules that span several keys; each problem is (location, message)."""
    problems: list[tuple[Loc, str]] = []
    problems += _duplicate_names(plan)
    problems += _initiator_timeouts(plan)
    problems += _liveness_after_failover(plan)
    problems += _storage_node_shape(plan)
    problems += _votes(plan)
    problems += _witness(plan)
    problems += _addresses(plan)
    problems += _host_networking(plan)
    return problems


_NODE_KEYS = ("datastore", "node", "iscsi_ip", "replication_ip")


def _initiator_timeouts(plan: Plan) -> list[tuple[Loc, str]]:
    if plan.recovery_timeout > plan.failover_s:
        return []
    loc: Loc = ("initiator", "recovery_timeout") if plan.initiator.recovery_timeout else ("ha", "deadtime")
    return [
        (
            loc,
            f"ESXi would declare the path dead after {plan.recovery_timeout} s, before a failover "
            f"completes ({plan.failover_reason}); "
            f"set initiator.recovery_timeout above {plan.failover_s} (at most 120)"
            + (" or lower ha.deadtime" if plan.ha.manager == "heartbeat" else ""),
        )
    ]


def _liveness_after_failover(plan: Plan) -> list[tuple[Loc, str]]:
    if plan.liveness.reset_after_s is None or plan.liveness.reset_after_s > plan.failover_s:
        return []
    message = (
        f"a silent node would be reset after {plan.liveness.reset_after_s} s, before its peer can have "
        f"taken the LUN over ({plan.failover_reason}); "
        f"set liveness.reset_after_s above {plan.failover_s} (at most 3600)"
    )
    return [(("liveness", "reset_after_s"), message)]


def _votes(plan: Plan) -> list[tuple[Loc, str]]:
    witnesses = [index for index, host in enumerate(plan.hosts) if host.witness is not None]
    if plan.ha.manager == "heartbeat":
        message = (
            'the witness is a Corosync member; heartbeat cannot use it: set ha.manager = "pacemaker" '
            "or remove the witness"
        )
        return [(("hosts", index, "witness"), message) for index in witnesses]
    if witnesses and plan.ha.two_node:
        message = "the witness gives the third vote; remove ha.two_node (it would let a cut-off node serve)"
        return [(("ha", "two_node"), message)]
    if witnesses or plan.ha.two_node:
        return []
    message = (
        "Pacemaker on two storage nodes has two votes, so a node cut off from its peer cannot tell it "
        'from a dead one: give a third host the witness VM, witness = { datastore = "...", '
        'iscsi_ip = "..." } in its [[hosts]] entry, or set ha.two_node = true to run with two votes '
        '(warned on every run and in status), or keep the original recipe: ha.manager = "heartbeat"'
    )
    return [(("ha", "manager"), message)]


def _witness(plan: Plan) -> list[tuple[Loc, str]]:
    """One witness, on a host without a storage node, at a free address of the iSCSI network."""
    problems: list[tuple[Loc, str]] = []
    net = plan.network
    iscsi_net = ipaddress.IPv4Network(f"{net.vip}/{net.iscsi_prefix}", strict=False)
    taken = {net.vip, *(host.iscsi_ip for host in plan.hosts if host.iscsi_ip), net.iscsi_gateway}
    taken |= {host.vmk_ip for host in plan.hosts if host.vmk_ip}
    first = None
    for index, host in enumerate(plan.hosts):
        witness = host.witness
        if witness is None:
            continue
        loc: Loc = ("hosts", index, "witness")
        if first is not None:
            problems.append((loc, f"hosts[{first}] carries the witness already; a site has one"))
            continue
        first = index
        if host.node is not None:
            message = "the witness must live on a third host, not beside a storage node (it is its vote)"
            problems.append((loc, message))
        if witness.node in {other.node for other in plan.hosts}:
            problems.append(
                (loc, f"node name {witness.node!r} is a storage node's; give the witness another")
            )
        if witness.iscsi_ip not in iscsi_net:
            problems.append(
                (loc, f"iscsi_ip {witness.iscsi_ip} is outside {iscsi_net} (network.iscsi_prefix)")
            )
        elif witness.iscsi_ip in taken:
            problems.append((loc, f"iscsi_ip {witness.iscsi_ip} is already used; addresses must be unique"))
    return problems


def _duplicate_names(plan: Plan) -> list[tuple[Loc, str]]:
    problems: list[tuple[Loc, str]] = []
    for key in ("esxi", "node"):
        seen: dict[str, int] = {}
        for index, host in enumerate(plan.hosts):
            value = getattr(host, key)
            if value is None:
                continue
            if value in seen:
                message = f"{value!r} is already used by hosts[{seen[value]}]; names must be unique"
                problems.append((("hosts", index, key), message))
            seen.setdefault(value, index)
    return problems


def _storage_node_shape(plan: Plan) -> list[tuple[Loc, str]]:
    problems: list[tuple[Loc, str]] = []
    for index, host in enumerate(plan.hosts):
        given = [key for key in _NODE_KEYS if getattr(host, key) is not None]
        if given and len(given) != len(_NODE_KEYS):
            for key in _NODE_KEYS:
                if key not in given:
                    message = (
                        "a storage node needs all of datastore, node, iscsi_ip, replication_ip; "
                        "a host that only mounts the datastore gives just esxi"
                    )
                    problems.append((("hosts", index, key), message))
    count = sum(1 for host in plan.hosts if host.node)
    if count != 2:
        message = (
            f"found {count} storage node(s); exactly two hosts must carry a node "
            "(DRBD 8.4 and heartbeat are two-node designs; other hosts give only esxi)"
        )
        problems.append((("hosts",), message))
    return problems


def _addresses(plan: Plan) -> list[tuple[Loc, str]]:
    problems: list[tuple[Loc, str]] = []
    net = plan.network
    iscsi_net = ipaddress.IPv4Network(f"{net.vip}/{net.iscsi_prefix}", strict=False)
    # Only complete storage nodes; _storage_node_shape reports the incomplete ones.
    nodes = [
        (index, host)
        for index, host in enumerate(plan.hosts)
        if all(getattr(host, key) is not None for key in _NODE_KEYS)
    ]
    if not nodes:
        return problems
    first_replication = nodes[0][1].replication_ip
    replication_net = ipaddress.IPv4Network(f"{first_replication}/{net.replication_prefix}", strict=False)
    owners: dict[IPv4, Loc] = {net.vip: ("network", "vip")}
    _check_usable(net.vip, iscsi_net, ("network", "vip"), problems)
    if net.iscsi_gateway is not None:
        gateway_loc: Loc = ("network", "iscsi_gateway")
        if net.iscsi_gateway not in iscsi_net:
            problems.append(
                (
                    gateway_loc,
                    (
                        f"{net.iscsi_gateway} is outside {iscsi_net} (network.vip and "
                        "network.iscsi_prefix); use an address in it"
                    ),
                )
            )
        else:
            _check_usable(net.iscsi_gateway, iscsi_net, gateway_loc, problems)
        if net.iscsi_gateway == net.vip:
            problems.append(
                (gateway_loc, f"{net.iscsi_gateway} is the VIP; the gateway must be another address")
            )
        owners.setdefault(net.iscsi_gateway, gateway_loc)
    for index, host in nodes:
        for key, network, prefix_key in (
            ("iscsi_ip", iscsi_net, "network.iscsi_prefix"),
            ("replication_ip", replication_net, "network.replication_prefix"),
        ):
            address: IPv4 = getattr(host, key)
            loc: Loc = ("hosts", index, key)
            if address not in network:
                problems.append((loc, f"{address} is outside {network} ({prefix_key}); use an address in it"))
            else:
                _check_usable(address, network, loc, problems)
            if address in owners:
                other = dotted(owners[address])
                what = "the VIP" if other == "network.vip" else other
                problems.append((loc, f"{address} is already used by {what}; addresses must be unique"))
            owners.setdefault(address, loc)
    if iscsi_net.overlaps(replication_net):
        problems.append(
            (
                ("network", "replication_prefix"),
                (
                    f"replication network {replication_net} overlaps the iSCSI network "
                    f"{iscsi_net}; use a separate subnet for replication"
                ),
            )
        )
    return problems


def _check_usable(
    address: IPv4,
    network: ipaddress.IPv4Network,
    loc: Loc,
    problems: list[tuple[Loc, str]],
) -> None:
    if network.prefixlen < 31 and address in (network.network_address, network.broadcast_address):
        problems.append((loc, f"{address} is the network or broadcast address of {network}"))


def _host_networking(plan: Plan) -> list[tuple[Loc, str]]:
    """vmk_ip inside the iSCSI network and unique among every planned address;
    uplinks only with a vSwitch and each named once; bind needs every vmknic."""
    problems: list[tuple[Loc, str]] = []
    net = plan.network
    iscsi_net = ipaddress.IPv4Network(f"{net.vip}/{net.iscsi_prefix}", strict=False)
    owners: dict[IPv4, str] = {net.vip: "the VIP"}
    if net.iscsi_gateway is not None:
        owners.setdefault(net.iscsi_gateway, "network.iscsi_gateway")
    for index, host in enumerate(plan.hosts):
        for key in ("iscsi_ip", "replication_ip"):
            address = getattr(host, key)
            if address is not None:
                owners.setdefault(address, f"hosts[{index}].{key}")
    for index, host in enumerate(plan.hosts):
        loc: Loc = ("hosts", index, "vmk_ip")
        if host.vmk_ip is None:
            if net.bind:
                problems.append(
                    (
                        ("hosts", index, "esxi"),
                        "network.bind = true binds every host's vmknic; give this host a vmk_ip",
                    )
                )
            continue
        if host.vmk_ip not in iscsi_net:
            problems.append(
                (loc, f"{host.vmk_ip} is outside {iscsi_net} (network.iscsi_prefix); use an address in it")
            )
        else:
            _check_usable(host.vmk_ip, iscsi_net, loc, problems)
        if host.vmk_ip in owners:
            problems.append(
                (loc, f"{host.vmk_ip} is already used by {owners[host.vmk_ip]}; addresses must be unique")
            )
        owners.setdefault(host.vmk_ip, f"hosts[{index}].vmk_ip")
    named: list[tuple[Loc, list[str]]] = [(("network", "uplinks"), net.uplinks or [])]
    for index, host in enumerate(plan.hosts):
        if host.uplinks is not None:
            named.append((("hosts", index, "uplinks"), host.uplinks))
            if net.vswitch is None:
                message = 'uplinks belong to a vSwitch: give network.vswitch = "vSwitch1" too'
                problems.append((("hosts", index, "uplinks"), message))
    for where, uplinks in named:
        for name in sorted({name for name in uplinks if uplinks.count(name) > 1}):
            problems.append((where, f"{name} is named more than once; name each uplink once"))
    return problems
