import hashlib
from pathlib import Path

import pytest

from revive.core.errors import UserError
from revive.guests.windows import settings as settings_mod
from revive.guests.windows.settings import (DEFAULT_PASSWORD, check_iso,
                                           from_table)

SHA = "ab" * 32


def table(**overrides):
    base = {"kind": "windows", "iso": "win.iso", "iso_sha256": SHA,
            "image": 6, "windows_version": "10", "cygwin_mirror": "mirror"}
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def refused(**overrides) -> str:
    with pytest.raises(UserError) as err:
        from_table(table(**overrides), Path("/cfg"))
    message = str(err.value)
    assert "\n" not in message
    return message


def test_defaults_for_windows_10(tmp_path):
    s = from_table(table(), tmp_path)
    assert s.iso == tmp_path / "win.iso"
    assert s.cygwin_mirror == tmp_path / "mirror"
    assert (s.answer_format, s.arch, s.firmware, s.ssh) == \
        ("autounattend", "x86_64", "bios", "cygwin")
    assert (s.admin_user, s.admin_password) == ("revive", DEFAULT_PASSWORD)
    assert s.cygwin_packages == ("openssh", "cygrunsrv")
    assert s.family == "nt6.2+" and not s.legacy


def test_toml_integer_version_and_uppercase_hash():
    s = from_table(table(windows_version=11, iso_sha256=SHA.upper()), Path("/cfg"))
    assert s.windows_version == "11"
    assert s.iso_sha256 == SHA


def test_xp_defaults():
    s = from_table(table(windows_version="xp", image=None,
                         product_key="abcde-fghij-klmno-pqrst-uvwxy"), Path("/cfg"))
    assert (s.answer_format, s.arch, s.admin_user) == ("winnt", "x86", "Administrator")
    assert s.product_key == "ABCDE-FGHIJ-KLMNO-PQRST-UVWXY"
    assert s.image is None and s.legacy


def test_sshd_packages_always_added():
    s = from_table(table(packages=["make", "openssh"]), Path("/cfg"))
    assert s.cygwin_packages == ("make", "openssh", "cygrunsrv")


def test_openssh_without_cygwin_needs_no_mirror():
    s = from_table(table(ssh="openssh", openssh_msi="ssh.msi", cygwin_mirror=None),
                   Path("/cfg"))
    assert s.cygwin_packages == ()
    assert s.openssh_msi == Path("/cfg/ssh.msi")


@pytest.mark.parametrize("overrides, key", [
    ({"colour": "blue"}, "colour"),
    ({"kind": "debian"}, "kind"),
    ({"windows_version": "95"}, "windows_version"),
    ({"iso": None}, "iso"),
    ({"iso_sha256": "123"}, "iso_sha256"),
    ({"image": None}, "image"),
    ({"image": 0}, "image"),
    ({"product_key": "ABCDE-12345"}, "product_key"),
    ({"firmware": "efi"}, "firmware"),
    ({"rtc": "gmt"}, "rtc"),
    ({"ssh": "dropbear"}, "ssh"),
    ({"admin_user": "Administrator"}, "admin_user"),
    ({"admin_user": "a/b"}, "admin_user"),
    ({"admin_password": "line\nbreak"}, "admin_password"),
    ({"computer_name": "much-too-long-a-name"}, "computer_name"),
    ({"computer_name": "1234"}, "computer_name"),
    ({"locale": "english"}, "locale"),
    ({"timezone": "Europe/Berlin"}, "timezone"),
    ({"packages": "openssh"}, "packages"),
    ({"packages": ["ok", "no;rm"]}, "packages"),
    ({"answer_format": "winnt"}, "answer_format"),
    ({"windows_version": "11", "arch": "x86"}, "arch"),
    ({"windows_version": "7", "arch": "x86", "firmware": "uefi"}, "firmware"),
    ({"ssh": "openssh"}, "openssh_msi"),
    ({"cygwin_mirror": None}, "cygwin_mirror"),
])
def test_bad_values_name_their_key(overrides, key):
    message = refused(**overrides)
    assert message.startswith(f"config.toml: [guest] {key}: ")
    assert "; " in message              # what is wrong; what to do


@pytest.mark.parametrize("overrides, key", [
    ({}, "product_key"),
    ({"product_key": "AAAAA-BBBBB-CCCCC-DDDDD-EEEEE", "firmware": "uefi"}, "firmware"),
    ({"product_key": "AAAAA-BBBBB-CCCCC-DDDDD-EEEEE", "ssh": "openssh",
      "openssh_msi": "x.msi"}, "ssh"),
    ({"product_key": "AAAAA-BBBBB-CCCCC-DDDDD-EEEEE", "timezone": "Mars Time"},
     "timezone"),
    ({"product_key": "AAAAA-BBBBB-CCCCC-DDDDD-EEEEE", "locale": "fi-FI"}, "locale"),
    ({"product_key": "AAAAA-BBBBB-CCCCC-DDDDD-EEEEE", "admin_password": 'say "hi"'},
     "admin_password"),
])
def test_xp_specific_refusals(overrides, key):
    message = refused(windows_version="xp", image=None, **overrides)
    assert message.startswith(f"config.toml: [guest] {key}: ")


def test_slice_is_plain_data_without_the_iso_path():
    s = from_table(table(), Path("/cfg"))
    data = s.slice()
    assert "iso" not in data and data["iso_sha256"] == SHA
    assert data["cygwin_mirror"] == "/cfg/mirror"
    assert data["packages"] == ["openssh", "cygrunsrv"]


# --- check_iso ---------------------------------------------------------------

def iso_settings(tmp_path, content=b"not really an ISO", sha=None):
    (tmp_path / "win.iso").write_bytes(content)
    sha = sha or hashlib.sha256(content).hexdigest()
    return from_table(table(iso_sha256=sha), tmp_path)


def test_check_iso_accepts_matching_hash(tmp_path):
    check_iso(iso_settings(tmp_path))


def test_check_iso_refuses_missing_iso(tmp_path):
    s = from_table(table(), tmp_path)
    with pytest.raises(UserError) as err:
        check_iso(s)
    assert str(err.value).startswith("config.toml: [guest] iso: ")
    assert str(tmp_path / "win.iso") in str(err.value)


def test_check_iso_refuses_mismatch_in_one_line(tmp_path):
    s = iso_settings(tmp_path, sha="0" * 64)
    log = tmp_path / "install.log"
    with pytest.raises(UserError) as err:
        check_iso(s, log=log)
    message = str(err.value)
    actual = hashlib.sha256(b"not really an ISO").hexdigest()
    assert "\n" not in message
    assert message.startswith("config.toml: [guest] iso_sha256: win.iso has sha256 "
                              + actual[:12])
    assert str(log) in message
    assert actual in log.read_text()       # the full values go to the log


def test_check_iso_hashes_once_per_file_version(tmp_path, monkeypatch):
    s = iso_settings(tmp_path)
    cache = tmp_path / "iso-sha256.json"
    check_iso(s, cache=cache)
    monkeypatch.setattr(settings_mod, "sha256_file",
                        lambda p: pytest.fail("hashed the ISO again"))
    check_iso(s, cache=cache)
