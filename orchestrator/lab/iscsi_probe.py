"""What an ESXi software iSCSI adapter learns on a rescan, done for real from
the lab side: SendTargets discovery at a portal, a login to each target
(CHAP when given), REPORT LUNS, then per LUN its NAA id (INQUIRY VPD page
0x83, the logical unit's NAA designator) and READ CAPACITY(16).

libiscsi (the library behind libiscsi-bin's iscsi-ls / iscsi-inq) is called
in-process through ctypes: the CHAP secret is handed to the library directly,
never through a command line or the environment, and the NAA designator is
read as the bytes the target sent (iscsi-inq prints binary designators as
text, cut at the first zero byte).

reservations() is what a clustered guest does with SCSI-3 persistent
reservations (PERSISTENT RESERVE OUT/IN): register a key, reserve, read the
keys and the reservation back, clear; a refused command names its sense.
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
# A reservation is held by an I_T nexus (initiator name and ISID): like a real initiator, the
# lab's keeps one ISID across logins (libiscsi picks a random one per context otherwise).
LAB_ISID_OUI, LAB_ISID_QUALIFIER = 0x5254, 1


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


class _TaskHead(ctypes.Structure):
    """The start of struct scsi_task (scsi-lowlevel.h): status, then the sense of a CHECK CONDITION."""

    _fields_ = [
        ("status", ctypes.c_int),
        ("cdb_size", ctypes.c_int),
        ("xfer_dir", ctypes.c_int),
        ("expxferlen", ctypes.c_int),
        ("cdb", ctypes.c_ubyte * 16),  # SCSI_CDB_MAX_SIZE
        ("residual_status", ctypes.c_int),
        ("residual", ctypes.c_size_t),
        ("sense_error_type", ctypes.c_ubyte),
        ("sense_key", ctypes.c_int),
        ("sense_ascq", ctypes.c_int),
    ]


class _PrOutBasic(ctypes.Structure):
    _fields_ = [
        ("reservation_key", ctypes.c_uint64),
        ("service_action_reservation_key", ctypes.c_uint64),
        ("spec_i_pt", ctypes.c_uint8),
        ("all_tg_pt", ctypes.c_uint8),
        ("aptpl", ctypes.c_uint8),
    ]


class _PrReadKeysHead(ctypes.Structure):
    _fields_ = [
        ("prgeneration", ctypes.c_uint32),
        ("additional_length", ctypes.c_uint32),
        ("num_keys", ctypes.c_int),
    ]


class _PrReadReservation(ctypes.Structure):
    _fields_ = [
        ("prgeneration", ctypes.c_uint32),
        ("additional_length", ctypes.c_uint32),
        ("reserved", ctypes.c_int),
        ("reservation_key", ctypes.c_uint64),
        ("pr_scope", ctypes.c_ubyte),
        ("pr_type", ctypes.c_ubyte),
    ]


# PERSISTENT RESERVE service actions and the type clustered guests use
PR_IN_READ_KEYS, PR_IN_READ_RESERVATION = 0, 1
PR_OUT_RESERVE, PR_OUT_CLEAR, PR_OUT_REGISTER_AND_IGNORE = 1, 3, 6
PR_TYPE_WRITE_EXCLUSIVE_REGISTRANTS_ONLY = 5


@dataclass(frozen=True)
class Reservations:
    keys: tuple[int, ...]  # registered keys (PR IN READ KEYS)
    holder: int | None  # the reservation's key (PR IN READ RESERVATION), None when unreserved
    type: int | None


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
        ("iscsi_set_isid_oui", ctypes.c_int, [p, ctypes.c_uint32, ctypes.c_uint32]),
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
        (
            "iscsi_persistent_reserve_out_sync",
            p,
            [p, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_int, p],
        ),
        ("iscsi_persistent_reserve_in_sync", p, [p, ctypes.c_int, ctypes.c_int, ctypes.c_uint16]),
        ("scsi_sense_key_str", ctypes.c_char_p, [ctypes.c_int]),
        ("scsi_sense_ascq_str", ctypes.c_char_p, [ctypes.c_int]),
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
            self._good(what, task)
            data = self.lib.scsi_datain_unmarshall(task)
            if not data:
                raise LabError(f"{what}: unparsable answer")
            yield data
        finally:
            self.lib.scsi_free_scsi_task(task)

    def _good(self, what: str, task: int) -> None:
        """LabError naming the status and, for CHECK CONDITION, the sense key and additional sense."""
        head = _TaskHead.from_address(task)
        if head.status == 0:
            return
        detail = f"SCSI status {head.status:#x}"
        if head.status == 2:  # CHECK CONDITION
            key = (self.lib.scsi_sense_key_str(head.sense_key) or b"?").decode()
            ascq = (self.lib.scsi_sense_ascq_str(head.sense_ascq) or b"?").decode()
            detail += f", sense {key} / {ascq} ({head.sense_ascq:#06x})"
        raise LabError(f"{what}: {detail}")

    def _no_data(self, what: str, task: int | None) -> None:
        if not task:
            self._fail(what)
        try:
            self._good(what, task)
        finally:
            self.lib.scsi_free_scsi_task(task)

    def pr_out(
        self, lun: int, action: int, key: int, new_key: int = 0, pr_type: int = 0, aptpl: bool = False
    ):
        what = f"PERSISTENT RESERVE OUT (service action {action})"
        params = _PrOutBasic(key, new_key, 0, 0, int(aptpl))
        task = self.lib.iscsi_persistent_reserve_out_sync(
            self.ctx, lun, action, 0, pr_type, ctypes.byref(params)
        )
        self._no_data(what, task)

    def reservations(self, lun: int) -> Reservations:
        task = self.lib.iscsi_persistent_reserve_in_sync(self.ctx, lun, PR_IN_READ_KEYS, 1024)
        with self._datain("PERSISTENT RESERVE IN (READ KEYS)", task) as data:
            head = _PrReadKeysHead.from_address(data)
            offset = 16  # the keys array after the int (aligned to 8)
            keys = tuple(
                ctypes.c_uint64.from_address(data + offset + 8 * i).value for i in range(head.num_keys)
            )
        task = self.lib.iscsi_persistent_reserve_in_sync(self.ctx, lun, PR_IN_READ_RESERVATION, 1024)
        reservation = self._command("PERSISTENT RESERVE IN (READ RESERVATION)", task, _PrReadReservation)
        held = reservation.reserved != 0  # libiscsi sets it, not additional_length, when one is held
        return Reservations(
            keys=keys,
            holder=reservation.reservation_key if held else None,
            type=reservation.pr_type if held else None,
        )

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


@contextmanager
def session(address: str, port: int, iqn: str, chap: dict | None, initiator: str) -> Iterator[_Session]:
    """A logged-in session to one target, as one initiator (for reservation tests)."""
    live = _Session(_library(), initiator, chap)
    try:
        if live.lib.iscsi_set_isid_oui(live.ctx, LAB_ISID_OUI, LAB_ISID_QUALIFIER) != 0:
            live._fail("setting the ISID")
        live.login(f"{address}:{port}", iqn)
        yield live
    finally:
        live.close()
