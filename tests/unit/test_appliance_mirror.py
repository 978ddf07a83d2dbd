"""The appliance build's Debian mirror: --mirror, then $VSA_APT_MIRROR, then the
build host's apt sources (deb822 and one-line), never a hard-coded host."""

from pathlib import Path

import pytest

from orchestrator.appliance import recipe
from orchestrator.appliance.mirror import ENV, apt_sources, debian_mirror
from orchestrator.appliance.shell import ApplianceError

DEB822 = """\
Types: deb
# a comment
URIs: http://mirror.example/debian/
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://mirror.example/debian-security
Suites: bookworm-security
Components: main
"""


def apt_dir(tmp_path: Path, sources_list: str = "", parts: dict[str, str] | None = None) -> Path:
    (tmp_path / "sources.list.d").mkdir(parents=True)
    if sources_list:
        (tmp_path / "sources.list").write_text(sources_list)
    for name, text in (parts or {}).items():
        (tmp_path / "sources.list.d" / name).write_text(text)
    return tmp_path


@pytest.fixture(autouse=True)
def _no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV, raising=False)


def test_deb822_entry_for_bookworm_main(tmp_path: Path) -> None:
    apt = apt_dir(tmp_path, parts={"debian.sources": DEB822})
    assert apt_sources(apt) == ["http://mirror.example/debian/"]
    assert debian_mirror(apt_dir=apt) == "http://mirror.example/debian"


def test_one_line_entry_with_options_and_others_skipped(tmp_path: Path) -> None:
    text = (
        "# deb http://old.example/debian bookworm main\n"
        "deb-src http://src.example/debian bookworm main\n"
        "deb http://security.example/debian-security bookworm-security main\n"
        "deb cdrom:[Debian 12]/ bookworm main\n"
        "deb [arch=amd64 signed-by=/usr/share/keyrings/x.gpg] https://local.example/debian "
        "bookworm main contrib\n"
    )
    apt = apt_dir(tmp_path, sources_list=text)
    assert debian_mirror(apt_dir=apt) == "https://local.example/debian"


def test_disabled_and_other_suites_are_not_used(tmp_path: Path) -> None:
    parts = {
        "a.sources": "Enabled: no\nTypes: deb\nURIs: http://off.example/debian\n"
        "Suites: bookworm\nComponents: main\n",
        "b.sources": "Types: deb\nURIs: http://t.example/debian\nSuites: trixie\nComponents: main\n",
        "c.list.disabled": "deb http://x.example/debian bookworm main\n",
    }
    apt = apt_dir(tmp_path, parts=parts)
    with pytest.raises(ApplianceError) as caught:
        debian_mirror(apt_dir=apt)
    assert str(caught.value) == (
        f"appliance build: mirror: no Debian bookworm main entry in {apt}/sources.list or "
        f"{apt}/sources.list.d/; pass --mirror URL (or set $VSA_APT_MIRROR)"
    )


def test_flag_then_environment_then_apt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    apt = apt_dir(tmp_path, parts={"debian.sources": DEB822})
    monkeypatch.setenv(ENV, "http://env.example/debian")
    assert debian_mirror(apt_dir=apt) == "http://env.example/debian"
    assert debian_mirror("file:///srv/mirror/", apt_dir=apt) == "file:///srv/mirror"


def test_the_mirror_is_not_part_of_the_recipe_hash() -> None:
    """Where the packages come from does not change the image (debootstrap's
    sources.list is replaced by a template), so it must not change its cache key."""
    assert "://" not in (recipe.PACKAGE_DIR / "recipe.py").read_text()
    template = recipe.TEMPLATES / "rootfs" / "etc" / "apt" / "sources.list.j2"
    assert all(line.startswith("#") for line in template.read_text().splitlines())
