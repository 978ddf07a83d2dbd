"""What an ESXi software iSCSI adapter learns on a rescan, done for real from
the lab side: SendTargets discovery at a portal, a login to each target
(CHAP when given), REPORT LUNS, then per LUN its NAA id (INQUIRY VPD page
0x83, the logical unit's NAA designator) and READ CAPACITY(16).

libiscsi (the library behind libiscsi-bin's iscsi-ls / iscsi-inq) is called
in-process through ctypes: the CHAP secret is handed to the library directly,
never through a command line or the environment, and the NAA designator is
read as the bytes the target sent (iscsi-inq prints binary designators as
text, cut at the first zero byte).
"""

import ctypes
import ctypes.util
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import NoReturn

from orchestrator.lab.simulator import LabError

SESSION_DISCOVERY, SESSION_NORMAL = 1, 2
INQUIRY_DEVICE_IDENTIFICATION = 0x83
DESIGNATOR_NAA, ASSOCIATION_LOGICAL_UNIT = 3, 0
DEFAULT_INITIATOR = "iqn.2011-08.local.vsa-lab:probe"


class _Designator(ctypes.Structure):
    pass


# struct scsi_inquiry_device_designator (scsi-lowlevel.h, public API)
_Designator._fields_ = [
    ("next", ctypes.POINTER(_Designator)),
    ("protocol_identifier", ctypes.c_int),
    ("code_set", ctypes.c_int),
    ("piv", ctypes.c_int),
    ("association", ctypes.c_int),
    ("designator_type", ctypes.c_int),
    ("designator_length", ctypes.c_int),
    ("designator", ctypes.POINTER(ctypes.c_ubyte)),
]


class _DeviceIdentification(ctypes.Structure):
    _fields_ = [
        ("qualifier", ctypes.c_int),
        ("device_type", ctypes.c_int),
        ("pagecode", ctypes.c_int),
        ("designators", ctypes.POINTER(_Designator)),
    ]


class _ReadCapacity16(ctypes.Structure):
    _fields_ = [("returned_lba", ctypes.c_uint64), ("block_length", ctypes.c_uint32)]


class _DiscoveryAddress(ctypes.Structure):
    pass


_DiscoveryAddress._fields_ = [
    ("next", ctypes.POINTER(_DiscoveryAddress)),
    ("target_name", ctypes.c_char_p),
]


@dataclass(frozen=True)
class Lun:
    iqn: str
    lun: int
    naa: str
    capacity_bytes: int
    block_size: int

    def to_json(self) -> dict:
        return asdict(self)


def _library() -> ctypes.CDLL:
    name = ctypes.util.find_library("iscsi") or "libiscsi.so.7"
    try:
        lib = ctypes.CDLL(name)
    except OSError:
        raise LabError("libiscsi not found; run scripts/install-lab-deps (libiscsi-bin)") from None
    p = ctypes.c_void_p
    for fn, res, args in [
        ("iscsi_create_context", p, [ctypes.c_char_p]),
        ("iscsi_destroy_context", ctypes.c_int, [p]),
        ("iscsi_get_error", ctypes.c_char_p, [p]),
        ("iscsi_set_session_type", ctypes.c_int, [p, ctypes.c_int]),
        ("iscsi_set_targetname", ctypes.c_int, [p, ctypes.c_char_p]),
        ("iscsi_set_initiator_username_pwd", ctypes.c_int, [p, ctypes.c_char_p, ctypes.c_char_p]),
        ("iscsi_connect_sync", ctypes.c_int, [p, ctypes.c_char_p]),
        ("iscsi_full_connect_sync", ctypes.c_int, [p, ctypes.c_char_p, ctypes.c_int]),
        ("iscsi_login_sync", ctypes.c_int, [p]),
        ("iscsi_logout_sync", ctypes.c_int, [p]),
        ("iscsi_discovery_sync", ctypes.POINTER(_DiscoveryAddress), [p]),
        ("iscsi_free_discovery_data", None, [p, ctypes.POINTER(_DiscoveryAddress)]),
        ("iscsi_reportluns_sync", p, [p, ctypes.c_int, ctypes.c_int]),
        ("iscsi_inquiry_sync", p, [p, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_int]),
        ("iscsi_readcapacity16_sync", p, [p, ctypes.c_int]),
        ("scsi_datain_unmarshall", p, [p]),
        ("scsi_free_scsi_task", None, [p]),
    ]:
        func = getattr(lib, fn)
        func.restype, func.argtypes = res, args
    return lib


class _Session:
    """One libiscsi context: a discovery session, or a normal one to a target."""

    def __init__(self, lib: ctypes.CDLL, initiator: str, chap: dict | None):
        self.lib = lib
        self.ctx = lib.iscsi_create_context(initiator.encode())
        if not self.ctx:
            raise LabError("libiscsi: cannot create a context")
        if chap:
            name = (chap.get("name") or initiator).encode()
            if lib.iscsi_set_initiator_username_pwd(self.ctx, name, chap["secret"].encode()) != 0:
                self._fail("setting CHAP")

    def _fail(self, what: str) -> NoReturn:
        raise LabError(f"{what}: {(self.lib.iscsi_get_error(self.ctx) or b'').decode(errors='replace')}")

    def close(self) -> None:
        self.lib.iscsi_logout_sync(self.ctx)
        self.lib.iscsi_destroy_context(self.ctx)

    def discover(self, portal: str) -> list[str]:
        self.lib.iscsi_set_session_type(self.ctx, SESSION_DISCOVERY)
        if self.lib.iscsi_connect_sync(self.ctx, portal.encode()) != 0:
            self._fail(f"connect {portal}")
        if self.lib.iscsi_login_sync(self.ctx) != 0:
            self._fail(f"discovery login {portal}")
        head = self.lib.iscsi_discovery_sync(self.ctx)
        if not head:
            self._fail(f"SendTargets {portal}")
        names, node = [], head
        while node:
            names.append(node.contents.target_name.decode())
            node = node.contents.next
        self.lib.iscsi_free_discovery_data(self.ctx, head)
        return names

    def login(self, portal: str, iqn: str) -> None:
        self.lib.iscsi_set_session_type(self.ctx, SESSION_NORMAL)
        self.lib.iscsi_set_targetname(self.ctx, iqn.encode())
        if self.lib.iscsi_full_connect_sync(self.ctx, portal.encode(), 0) != 0:
            self._fail(f"login {iqn} at {portal}")

    @contextmanager
    def _datain(self, what: str, task: int | None) -> Iterator[int]:
        """The unmarshalled answer of a finished SCSI task with GOOD status; the task is freed after."""
        if not task:
            self._fail(what)
        try:
            status = ctypes.c_int.from_address(task).value  # scsi_task.status
            if status != 0:
                raise LabError(f"{what}: SCSI status {status:#x}")
            data = self.lib.scsi_datain_unmarshall(task)
            if not data:
                raise LabError(f"{what}: unparsable answer")
            yield data
        finally:
            self.lib.scsi_free_scsi_task(task)

    def _command(self, what: str, task: int | None, struct: type[ctypes.Structure]) -> ctypes.Structure:
        with self._datain(what, task) as data:
            return struct.from_buffer_copy(ctypes.string_at(data, ctypes.sizeof(struct)))

    def luns(self) -> list[int]:
        with self._datain("REPORT LUNS", self.lib.iscsi_reportluns_sync(self.ctx, 0, 4096)) as data:
            num = ctypes.c_uint32.from_address(data).value
            return [ctypes.c_uint16.from_address(data + 4 + 2 * i).value for i in range(min(num, 256))]

    def naa(self, lun: int) -> str:
        task = self.lib.iscsi_inquiry_sync(self.ctx, lun, 1, INQUIRY_DEVICE_IDENTIFICATION, 255)
        with self._datain("INQUIRY VPD 0x83", task) as data:
            node = _DeviceIdentification.from_address(data).designators
            while node:
                d = node.contents
                if d.designator_type == DESIGNATOR_NAA and d.association == ASSOCIATION_LOGICAL_UNIT:
                    return "naa." + bytes(d.designator[: d.designator_length]).hex()
                node = d.next
        raise LabError(f"LUN {lun} has no NAA designator in VPD page 0x83")

    def capacity(self, lun: int) -> tuple[int, int]:
        task = self.lib.iscsi_readcapacity16_sync(self.ctx, lun)
        cap = self._command("READ CAPACITY(16)", task, _ReadCapacity16)
        return (cap.returned_lba + 1) * cap.block_length, cap.block_length


def probe(address: str, port: int, chap: dict | None, initiator: str | None = None) -> list[Lun]:
    """Every LUN the portal serves to this initiator; LabError when discovery
    or a login fails (a wrong CHAP secret, a portal that does not answer)."""
    lib = _library()
    initiator = initiator or DEFAULT_INITIATOR
    portal = f"{address}:{port}"
    session = _Session(lib, initiator, chap)
    try:
        targets = session.discover(portal)
    finally:
        session.close()
    found: list[Lun] = []
    for iqn in targets:
        session = _Session(lib, initiator, chap)
        try:
            session.login(portal, iqn)
            for lun in session.luns():
                size, block = session.capacity(lun)
                found.append(
                    Lun(iqn=iqn, lun=lun, naa=session.naa(lun), capacity_bytes=size, block_size=block)
                )
        finally:
            session.close()
    return found
