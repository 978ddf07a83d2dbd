"""HTTP to the vSphere server beside SOAP (disk uploads, datastore files), with
the session's TLS trust and its cookie."""

from typing import Any

import requests
from requests.adapters import HTTPAdapter

from orchestrator.vsphere.session import Session


class PinnedAdapter(HTTPAdapter):
    """Checks the server certificate's fingerprint instead of a CA chain."""

    def __init__(self, fingerprint: str):
        self.fingerprint = fingerprint
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["assert_fingerprint"] = self.fingerprint
        super().init_poolmanager(*args, **kwargs)


def server_http(session: Session) -> tuple[requests.Session, bool | str, dict[str, str]]:
    """A requests session to the server we are logged in to, its `verify` value and
    the headers that authenticate it (the session cookie)."""
    http = requests.Session()
    headers = {"Cookie": session.cookie()} if session.cookie() else {}
    trust = session.trust
    verify: bool | str
    if trust.thumbprint:
        http.mount("https://", PinnedAdapter(trust.thumbprint))
        verify = False  # no CA chain: the pinned fingerprint is the check
    elif trust.ca_file:
        verify = str(trust.ca_file)
    else:
        verify = not trust.insecure
    return http, verify, headers
