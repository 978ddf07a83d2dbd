"""`vsa-orchestrate appliance build`: build (or find cached) the storage-node image."""

import argparse
import time
from pathlib import Path

from orchestrator.appliance.build import Appliance, build_appliance, cache_root
from orchestrator.appliance.mirror import ENV as MIRROR_ENV
from orchestrator.appliance.recipe import SUITE, recipe_hash
from orchestrator.appliance.shell import ApplianceError
from orchestrator.output import error_line, make_console


def appliance_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="vsa-orchestrate appliance", description="the storage-node appliance image"
    )
    parser.add_argument("action", choices=["build"])
    parser.add_argument("--force", action="store_true", help="rebuild even when the cache has this recipe")
    parser.add_argument(
        "--cache-dir", type=Path, help=f"cache folder (default {cache_root().parent}, or $VSA_CACHE_DIR)"
    )
    parser.add_argument(
        "--mirror",
        metavar="URL",
        help=f"Debian mirror to build from (default ${MIRROR_ENV}, else the {SUITE} main entry of "
        "this host's apt sources)",
    )
    args = parser.parse_args(argv)
    console, errors = make_console(), make_console(stderr=True)
    cached = Appliance(cache_root(args.cache_dir) / recipe_hash()).complete() and not args.force
    started = time.monotonic()
    try:
        disk_path = build_appliance(
            args.cache_dir, force=args.force, progress=console.print, mirror=args.mirror
        )
    except ApplianceError as err:
        errors.print(error_line(err))
        return 1
    except OSError as err:  # anything build_appliance did not place in a step
        errors.print(error_line(f"appliance build: {err}"))
        return 1
    appliance = Appliance.of(disk_path)
    seconds = time.monotonic() - started
    how = "found in the cache" if cached else "built"
    console.print(f"appliance {how} in {seconds:.1f} s: {appliance.directory}")
    for path in (appliance.disk, appliance.kernel, appliance.initrd, appliance.ova):
        console.print(f"  {path.name}: {path.stat().st_size / 2**20:.0f} MiB")
    return 0
