"""Whether files exist on a datastore, read over the server's /folder HTTP
interface: a plain GET whose body is never read, so planning needs no vSphere
task (HostDatastoreBrowser searches are tasks, which a dry run must not start)."""

import warnings
from urllib.parse import quote, urlencode

import requests
import urllib3

from orchestrator.vsphere.server_http import server_http
from orchestrator.vsphere.session import Session, VSphereError

TIMEOUT_S = 30


def existing_files(session: Session, datacenter: str, datastore: str, paths: list[str]) -> frozenset[str]:
    """The subset of `paths` ("folder/file.vmdk" inside the datastore) that exist."""
    http, verify, headers = server_http(session)
    query = urlencode({"dcPath": datacenter, "dsName": datastore})
    found = set()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", urllib3.exceptions.InsecureRequestWarning)
            for path in paths:
                url = f"https://{session.server}/folder/{quote(path)}?{query}"
                with http.get(
                    url, headers=headers, verify=verify, stream=True, timeout=TIMEOUT_S
                ) as response:
                    if response.status_code == 200:
                        found.add(path)
                    elif response.status_code != 404:
                        raise VSphereError(
                            f"reading [{datastore}] {path} over {session.server}/folder failed: HTTP "
                            f"{response.status_code}; check that the user may browse datastore {datastore}"
                        )
    except requests.RequestException as err:
        raise VSphereError(
            f"reading [{datastore}] over {session.server}/folder failed ({type(err).__name__}); "
            "rerun when the server is reachable"
        ) from None
    finally:
        http.close()
    return frozenset(found)
