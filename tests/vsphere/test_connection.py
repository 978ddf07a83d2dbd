"""Connection safety and one-line errors: each refuses with exit 1 and changes nothing."""

import socket

import pytest

from tests.vsphere.conftest import Site, vsa


def error_lines(out: str) -> list[str]:
    return [line for line in out.splitlines() if line.startswith("error:")]


def assert_refused(site: Site, capsys, expected: str) -> None:
    site.info.reset_calls()
    assert vsa(site.plan, "--yes") == 1
    captured = capsys.readouterr()
    errors = error_lines(captured.err)
    assert len(errors) == 1, captured.err
    assert expected in errors[0]
    assert "Traceback" not in captured.err + captured.out
    assert "error:" not in captured.out
    assert site.tasks_since_reset() == {}
    assert site.vm_names() == ["vsa-appliance"]


def test_wrong_thumbprint_is_refused_before_any_login(site: Site, capsys):
    site.edit_plan(site.info.thumbprint, "AB:" * 31 + "AB")
    site.info.reset_calls()

    assert vsa(site.plan, "--yes") == 1

    out = capsys.readouterr().err
    assert f"presents a certificate with SHA-256 thumbprint {site.info.thumbprint}" in out
    assert "refusing to log in" in out
    assert site.info.calls()["total"] == 0


def test_wrong_password_is_one_clear_line(site: Site, capsys):
    site.plan.with_name("vsphere-password").write_text("not-the-password\n")
    assert_refused(site, capsys, "rejected user vsa-admin: wrong user name or password")
    assert "not-the-password" not in (site.plan.with_name("lab.toml.state") / "run.log").read_text()


def test_unreachable_server_is_one_clear_line(site: Site, capsys):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free_port = probe.getsockname()[1]
    site.edit_plan(f"port = {site.info.port}", f"port = {free_port}")
    site.info.reset_calls()
    assert vsa(site.plan, "--yes") == 1
    errors = error_lines(capsys.readouterr().err)
    assert len(errors) == 1
    assert f"cannot reach vSphere at 127.0.0.1:{free_port}" in errors[0]


def test_system_trust_without_pin_refuses_a_self_signed_server(site: Site, capsys):
    site.edit_plan(f'thumbprint = "{site.info.thumbprint}"\n', "")
    assert_refused(site, capsys, "certificate not trusted")


def test_insecure_is_allowed_only_when_asked_and_warns(site: Site, capsys):
    site.edit_plan(f'thumbprint = "{site.info.thumbprint}"', "insecure = true")
    assert vsa(site.plan, "--dry-run") == 2
    assert "TLS verification is off" in capsys.readouterr().err


def test_unknown_datacenter(site: Site, capsys):
    site.edit_plan('datacenter = "DC0"', 'datacenter = "Nowhere"')
    assert_refused(site, capsys, "datacenter 'Nowhere' not found")


def test_unknown_host(site: Site, capsys):
    site.edit_plan('esxi = "esx2.lab.local"', 'esxi = "esx9.lab.local"')
    assert_refused(site, capsys, "ESXi host 'esx9.lab.local' not found in datacenter 'DC0'")


def test_unknown_datastore(site: Site, capsys):
    site.edit_plan('datastore = "esx2-local"', 'datastore = "esx1-local"')
    assert_refused(site, capsys, "host esx2.lab.local has no datastore named 'esx1-local'")


def test_datastore_shared_by_several_hosts_is_not_local(site: Site, capsys):
    site.edit_plan('datastore = "esx1-local"', f'datastore = "{site.info.shared_datastore}"')
    assert_refused(
        site, capsys, "datastore 'shared-ds' is shared by several hosts, not local to esx1.lab.local"
    )


def test_missing_portgroup(site: Site, capsys):
    site.edit_plan('replication_portgroup = "VSA-Replication"', 'replication_portgroup = "VSA-Repl"')
    site.info.reset_calls()
    assert vsa(site.plan, "--yes") == 1
    out = capsys.readouterr().err
    assert "has no portgroup 'VSA-Repl'" in out
    assert site.tasks_since_reset() == {}


def test_password_from_unset_environment_variable(site: Site, capsys):
    site.edit_plan('password = { file = "vsphere-password" }', 'password = { env = "VSA_TEST_UNSET_PW" }')
    assert_refused(site, capsys, "environment variable VSA_TEST_UNSET_PW is not set")


@pytest.mark.parametrize("flag", ["--check"])
def test_check_validates_without_connecting(site: Site, capsys, flag: str):
    site.info.reset_calls()
    assert vsa(site.plan, flag) == 0
    assert "is valid" in capsys.readouterr().out
    assert site.info.calls()["total"] == 0
