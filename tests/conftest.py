"""Every test run gets a lab of its own, never the user's.

`lab up` and the README's first command use the namespace `vsa-lab` and the
lab folder ~/.cache/vsa-orchestrate/lab (or $VSA_LAB_NS / $VSA_LAB_DIR). The
tests must not touch them: before any orchestrator module reads those
variables, they are pointed at the tests' own namespace (`vsa-test`, or
$VSA_TEST_LAB_NS for a second test run beside this one) and a lab folder in
the system's temporary folder. Subprocesses (the CLI, the simulator's hook)
inherit both.
"""

import os
import tempfile
from pathlib import Path

USER_NAMESPACE = "vsa-lab"

os.environ["VSA_LAB_NS"] = os.environ.get("VSA_TEST_LAB_NS", "vsa-test")
os.environ["VSA_LAB_DIR"] = str(Path(tempfile.gettempdir()) / f"{os.environ['VSA_LAB_NS']}-lab")

if os.environ["VSA_LAB_NS"] == USER_NAMESPACE:
    raise SystemExit(f"VSA_TEST_LAB_NS must not be {USER_NAMESPACE}: that is the user's lab")
