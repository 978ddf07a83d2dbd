"""The pure parts of an NFC upload: device URLs, the streamed body, keep-alives."""

import hashlib

from orchestrator.vsphere import nfc_lease


def test_the_star_host_is_the_server_we_connected_to():
    url = "https://*/nfc/52a1/disk-0.vmdk"
    assert nfc_lease.device_url(url, "vc.example:8443") == "https://vc.example:8443/nfc/52a1/disk-0.vmdk"
    other = "https://esx1.example/nfc/52a1/disk-0.vmdk"
    assert nfc_lease.device_url(other, "vc.example:443") == other


def upload(chunks: list[bytes]) -> nfc_lease.Upload:
    data = b"".join(chunks)
    return nfc_lease.Upload(
        url="https://vc/nfc/x/d.vmdk",
        name="d.vmdk",
        size=len(data),
        chunks=lambda: iter(chunks),
        algorithm="sha256",
        hexdigest=hashlib.sha256(data).hexdigest(),
    )


def test_the_body_has_a_length_hands_out_every_byte_and_hashes_it():
    chunks = [b"a" * 10, b"b" * 5, b"c"]
    seen: list[int] = []
    body = nfc_lease._Body(upload(chunks), seen.append)
    assert len(body) == 16
    out = b""
    while data := body.read(4):
        out += data
    assert out == b"".join(chunks) and sum(seen) == 16 and body.sent == 16
    assert body.hasher.hexdigest() == hashlib.sha256(out).hexdigest()
    assert nfc_lease._Body(upload(chunks), seen.append).read() == b"".join(chunks)


class FakeLease:
    def __init__(self):
        self.percents: list[int] = []

    def HttpNfcLeaseProgress(self, percent: int) -> None:
        self.percents.append(percent)


def test_keepalives_are_rate_limited_and_never_claim_100_before_complete():
    lease = FakeLease()
    keepalive = nfc_lease.KeepAlive(lease, total=100, interval_s=3600)
    keepalive.add(50)
    assert lease.percents == []  # not yet: the interval has not passed
    keepalive.add(50)
    keepalive.report()
    assert lease.percents == [99]
    eager = nfc_lease.KeepAlive(lease, total=100, interval_s=0)
    eager.add(10)
    assert lease.percents == [99, 10]
