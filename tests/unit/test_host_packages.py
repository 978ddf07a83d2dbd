"""Every host command the code runs and every absolute host file it names is in
orchestrator/host_files.py, belongs (per `dpkg -S`) to the package named there,
and that package is one scripts/install-lab-deps or scripts/bootstrap installs.

A file is a dependency like a command: with --no-install-recommends, mbr.bin
(syslinux-common, only recommended by syslinux) was missing on fresh machines.
"""

import ast
import ctypes.util
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from orchestrator import host_files

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = (REPO / "scripts" / "install-lab-deps", REPO / "scripts" / "bootstrap")
SOURCES = ("orchestrator", "tests", "bench")
HOST_PREFIXES = ("/usr/", "/lib/", "/lib64/", "/bin/", "/sbin/", "/etc/", "/opt/", "/var/lib/", "/boot/")
# Code whose absolute paths name files on a storage node (read or written over SSH),
# not on the host that runs vsa-orchestrate.
GUEST_SIDE = (
    "orchestrator/guest/",
    "orchestrator/stages/guest/",
    "orchestrator/status/",
    "tests/unit/test_guest_",
    "tests/unit/test_pacemaker.py",
    "tests/lab/test_pacemaker.py",
    "orchestrator/switchover.py",  # runs crm_resource on the storage nodes
    "tests/unit/test_switchover.py",
    "tests/unit/test_status_",
    "tests/lab/test_boot.py",
    "tests/lab/test_interlocks.py",
    "tests/lab/test_end_to_end.py",
    "tests/unit/test_appliance_mirror.py",  # apt sources as text, not files read
)
# Paths no package owns by definition (the local administrator's), and a script
# whose paths are inside the fresh root it makes.
NOT_PACKAGED = ("/usr/local/",)
NOT_SCANNED = ("fresh-check",)
RUNNERS = {"run", "Popen", "check_output", "check_call", "call"}


def python_files() -> list[tuple[str, ast.AST]]:
    files = []
    for folder in SOURCES:
        for path in sorted((REPO / folder).rglob("*.py")):
            files.append((path.relative_to(REPO).as_posix(), ast.parse(path.read_text())))
    return files


def _first_word(node: ast.AST) -> str | None:
    """The command of an argv literal: its first element, when that is a string."""
    if isinstance(node, ast.List | ast.Tuple):
        for element in node.elts:
            if isinstance(element, ast.Starred):
                if isinstance(element.value, ast.Call) and _name(element.value.func) == "exec_prefix":
                    continue  # ip netns exec NS <command>
                return None
            if isinstance(element, ast.Constant) and isinstance(element.value, str):
                return element.value
            return None
    return None


def _name(func: ast.AST) -> str:
    return func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")


def commands_in_code() -> dict[str, set[str]]:
    """command -> files: argv literals handed to subprocess/run helpers or assigned to
    command/args variables, shutil.which("x"), and the lab tests' initiator(plan, "x", ...)."""
    found: dict[str, set[str]] = {}
    for name, tree in python_files():
        words = []
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                called = _name(node.func)
                if called in RUNNERS and node.args:
                    words.append(_first_word(node.args[0]))
                elif called == "which" and node.args and isinstance(node.args[0], ast.Constant):
                    words.append(node.args[0].value)
                elif called == "initiator" and len(node.args) > 1 and isinstance(node.args[1], ast.Constant):
                    words.append(node.args[1].value)
            elif isinstance(node, ast.Assign) and any(
                isinstance(target, ast.Name) and target.id in {"command", "args", "argv", "cmd"}
                for target in node.targets
            ):
                words.append(_first_word(node.value))
            elif isinstance(node, ast.FunctionDef) and node.name == "command":
                words += [_first_word(ret.value) for ret in ast.walk(node) if isinstance(ret, ast.Return)]
                words += [
                    _first_word(assign.value)
                    for assign in ast.walk(node)
                    if isinstance(assign, ast.Assign) and isinstance(assign.value, ast.List)
                ]
        for word in filter(None, words):
            found.setdefault(word, set()).add(name)
    return found


def tool_maps_in_code() -> list[tuple[str, dict[str, str]]]:
    """Every {command: package} literal (the *_TOOLS maps, require_tools({...}))."""
    maps = []
    for name, tree in python_files():
        for node in ast.walk(tree):
            if isinstance(node, ast.Dict) and node.keys and name != "orchestrator/host_files.py":
                pairs = list(zip(node.keys, node.values, strict=True))
                if all(isinstance(k, ast.Constant) and isinstance(v, ast.Constant) for k, v in pairs):
                    mapping = {k.value: v.value for k, v in pairs}
                    if all(isinstance(v, str) for v in mapping.values()) and set(mapping) & set(
                        host_files.COMMANDS
                    ):
                        maps.append((name, mapping))
    return maps


def host_paths_in_code() -> dict[str, set[str]]:
    """Absolute host paths named in the Python sources (string literals, f-string
    parts) and in the shell scripts."""
    found: dict[str, set[str]] = {}
    for name, tree in python_files():
        if name.startswith(GUEST_SIDE) or name == "tests/unit/test_host_packages.py":
            continue
        # An f-string's text after a placeholder ("{root}/lib/modules") is no absolute path.
        relative = {
            id(part)
            for node in ast.walk(tree)
            if isinstance(node, ast.JoinedStr)
            for before, part in zip(node.values, node.values[1:], strict=False)
            if isinstance(before, ast.FormattedValue)
        }
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in relative:
                for match in re.findall(r"(?<![\w.])/[\w.+-]+(?:/[\w.+-]+)*", node.value):
                    if match.startswith(HOST_PREFIXES):
                        found.setdefault(match, set()).add(name)
    for script in sorted((REPO / "scripts").iterdir()):
        if script.name in NOT_SCANNED:
            continue
        text = "\n".join(line.split("#", 1)[0] for line in script.read_text().splitlines())
        for match in re.findall(r"(?<![\w.$}])/(?:usr|lib|etc|opt|bin|sbin)/[\w.+/-]*[\w+-]", text):
            found.setdefault(match, set()).add(f"scripts/{script.name}")
    return found


def named_packages() -> set[str]:
    """The packages the install scripts install: their bash arrays and apt_install lines."""
    names: set[str] = set()
    for script in SCRIPTS:
        text = "\n".join(line.split("#", 1)[0] for line in script.read_text().splitlines())
        for body in re.findall(r"\w+=\(([^)]*)\)", text):
            names.update(body.split())
        for line in re.findall(r"^\s*apt_install ([\w .+-]+)$", text, re.M):
            names.update(line.split())
    return {name for name in names if re.fullmatch(r"[a-z0-9][a-z0-9.+-]+", name)}


def _aliases(path: str) -> list[str]:
    """path and its other spelling on a merged-/usr system (dpkg knows only one)."""
    for short in ("/bin/", "/sbin/", "/lib/", "/lib64/"):
        if path.startswith("/usr" + short):
            return [path, path[len("/usr") :]]
        if path.startswith(short):
            return [path, "/usr" + path]
    return [path]


def owners(path: str) -> set[str]:
    """The packages dpkg says ship path (or, for a symlink, its target)."""
    candidates = _aliases(path)
    resolved = str(Path(path).resolve())
    if resolved != path:
        candidates += _aliases(resolved)
    found: set[str] = set()
    for candidate in candidates:
        result = subprocess.run(["dpkg", "-S", candidate], capture_output=True, text=True, check=False)
        for line in result.stdout.splitlines():
            if line.startswith("diversion by") or ": " not in line:
                continue
            packages, owned = line.split(": ", 1)
            if owned == candidate:
                found.update(package.strip().split(":")[0] for package in packages.split(","))
    return found


needs_dpkg = pytest.mark.skipif(shutil.which("dpkg") is None, reason="not a Debian host (no dpkg)")


def test_every_command_the_code_runs_is_registered() -> None:
    ours = {"dpkg"}  # dpkg -S in this very test
    unknown = {
        command: sorted(files)
        for command, files in commands_in_code().items()
        if command not in host_files.COMMANDS and command not in ours
    }
    assert not unknown, f"add these commands and their packages to orchestrator/host_files.py: {unknown}"


def test_the_codes_tool_maps_agree_with_the_registry() -> None:
    maps = tool_maps_in_code()
    assert maps  # the scan does find them (build, lab, seed, qemu, the lab tests)
    for name, mapping in maps:
        for command, package in mapping.items():
            if command in host_files.COMMANDS:
                assert package == host_files.COMMANDS[command], f"{name}: {command}"


def _within(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def test_every_host_path_the_code_names_is_registered() -> None:
    known = (*host_files.FILES, *host_files.CONFIGURATION)
    unknown = {
        path: sorted(files)
        for path, files in host_paths_in_code().items()
        if not path.startswith(NOT_PACKAGED)
        and not any(_within(path, entry) or _within(entry, path) for entry in known)
    }
    assert not unknown, f"add these host files and their packages to orchestrator/host_files.py: {unknown}"
    assert host_files.MBR_BIN in host_paths_in_code()  # the scan sees ova.py's literal


def test_the_install_scripts_name_every_registered_package() -> None:
    packages = {
        *host_files.COMMANDS.values(),
        *(entry.package for entry in host_files.FILES.values()),
        *host_files.LIBRARIES.values(),
    }
    missing = sorted(packages - named_packages())
    assert not missing, f"scripts/install-lab-deps installs none of {missing}"


@needs_dpkg
@pytest.mark.parametrize("path", sorted(host_files.FILES))
def test_each_host_file_belongs_to_its_package(path: str) -> None:
    package = host_files.FILES[path].package
    assert package in owners(path), (
        f"dpkg -S {path}: not from {package} (owners: {sorted(owners(path)) or 'none; not installed'}); "
        f"run {host_files.INSTALL}"
    )


@needs_dpkg
@pytest.mark.parametrize("command", sorted(host_files.COMMANDS))
def test_each_command_belongs_to_its_package(command: str) -> None:
    package = host_files.COMMANDS[command]
    path = shutil.which(command)
    assert path, f"{command} not found; run {host_files.INSTALL} (it installs {package})"
    assert package in owners(path), f"dpkg -S {path}: not from {package} (owners: {sorted(owners(path))})"


@needs_dpkg
@pytest.mark.parametrize("library", sorted(host_files.LIBRARIES))
def test_each_library_belongs_to_its_package(library: str) -> None:
    package = host_files.LIBRARIES[library]
    soname = ctypes.util.find_library(library)
    assert soname, f"lib{library} not found; run {host_files.INSTALL} (it installs {package})"
    result = subprocess.run(["dpkg", "-S", f"*/{soname}"], capture_output=True, text=True, check=False)
    packages = {line.split(": ", 1)[0].split(":")[0] for line in result.stdout.splitlines() if ": " in line}
    assert package in packages, f"dpkg -S */{soname}: {sorted(packages) or 'none'}"
