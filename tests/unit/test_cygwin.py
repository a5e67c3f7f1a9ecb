import hashlib
import lzma
import shutil
from pathlib import Path

import pytest

from revive.core.errors import UserError
from revive.guests.windows.cygwin import (closure, copy_payload, find_mirror_root,
                                         parse_setup_ini)

FIXTURE = Path(__file__).parent.parent / "data" / "cygwin"
REQUESTED = ["openssh", "cygrunsrv"]
EXPECTED = ["base-files", "bash", "coreutils", "csih", "cygrunsrv", "cygutils",
            "cygwin", "libcrypto3", "libncursesw10", "libreadline7", "openssh", "zlib0"]


@pytest.fixture
def ini():
    return parse_setup_ini((FIXTURE / "setup.ini").read_text())


@pytest.fixture
def mirror(tmp_path):
    copy = tmp_path / "mirror"
    shutil.copytree(FIXTURE, copy)
    return copy


def test_headers(ini):
    assert ini.headers["release"] == "cygwin"
    assert ini.headers["arch"] == "x86_64"
    assert ini.headers["setup-version"] == "2.932"
    assert len(ini.packages) == 15


def test_closure_is_requested_plus_base_plus_dependencies(ini):
    assert [p.name for p in closure(ini, REQUESTED)] == EXPECTED


def test_closure_of_nothing_is_base_and_its_dependencies(ini):
    assert [p.name for p in closure(ini, [])] == \
        ["base-files", "bash", "coreutils", "cygwin", "libncursesw10", "libreadline7"]


def test_depends2_names_without_version_relations(ini):
    assert ini.packages["openssh"].depends == \
        ("csih", "cygrunsrv", "cygwin", "libcrypto3", "zlib0")
    assert ini.packages["bash"].depends == ("cygwin", "libreadline7")


def test_requires_is_space_separated(ini):
    assert ini.packages["csih"].depends == ("cygutils", "cygwin")


def test_prev_and_test_sections_are_ignored(ini):
    readline = ini.packages["libreadline7"]
    assert readline.version == "8.2-1"
    assert readline.depends == ("libncursesw10",)
    assert readline.install.path == "x86_64/release/libreadline7/libreadline7-8.2-1.tar.xz"
    assert ini.packages["coreutils"].version == "9.0-1"
    assert ini.packages["coreutils"].depends == ("cygwin",)


def test_quoted_multiline_values_do_not_leak_fields():
    text = ('@ demo\nsdesc: "Demo"\nldesc: "First line\nrequires: not-a-package\n'
            'version: 0.0\nstill the description"\ncategory: Base\nversion: 1.0-1\n'
            'install: x86_64/release/demo/demo-1.0-1.tar.xz 3 ' + "0" * 128 + "\n")
    demo = parse_setup_ini(text).packages["demo"]
    assert (demo.version, demo.depends, demo.categories) == ("1.0-1", (), ("Base",))


def test_virtual_names_resolve_through_provides():
    text = ("@ app\nversion: 1\ndepends2: libfoo\n\n"
            "@ foo-impl\nversion: 2\nprovides: libfoo\n")
    assert [p.name for p in closure(parse_setup_ini(text), ["app"])] == ["app", "foo-impl"]


def test_unknown_requested_package_is_refused(ini):
    with pytest.raises(UserError) as err:
        closure(ini, ["openssh", "no-such-package"])
    assert "no-such-package" in str(err.value)


def test_unknown_dependency_is_refused():
    with pytest.raises(UserError) as err:
        closure(parse_setup_ini("@ app\nversion: 1\ndepends2: ghost\n"), ["app"])
    assert "app needs ghost" in str(err.value)


# --- copying ---------------------------------------------------------------------

def files_under(root: Path):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_copy_payload_copies_exactly_the_closure(mirror, tmp_path, ini):
    dest = tmp_path / "payload" / "cygwin"
    copied = copy_payload(mirror, dest, REQUESTED)
    assert [p.name for p in copied] == EXPECTED
    expected_files = sorted([p.install.path for p in closure(ini, REQUESTED)]
                            + ["x86_64/setup.ini", "setup-x86_64.exe"])
    assert files_under(dest) == expected_files
    for path in expected_files:
        assert (dest / path).read_bytes() == \
            (FIXTURE / ("setup.ini" if path == "x86_64/setup.ini" else path)).read_bytes()


def damage(mirror: Path, package: str) -> Path:
    [archive] = (mirror / "x86_64" / "release" / package).glob("*.tar.xz")
    data = bytearray(archive.read_bytes())
    data[0] ^= 0xFF                                    # same size, other bytes
    archive.write_bytes(bytes(data))
    return archive


def test_wrong_hash_is_refused_naming_package_and_file(mirror, tmp_path):
    archive = damage(mirror, "zlib0")
    dest = tmp_path / "out"
    with pytest.raises(UserError) as err:
        copy_payload(mirror, dest, REQUESTED)
    message = str(err.value)
    assert "package zlib0" in message and str(archive) in message
    assert "sha512" in message and "download it again" in message
    assert not (dest / "x86_64/release/zlib0").exists() or \
        not any((dest / "x86_64/release/zlib0").iterdir())


def test_wrong_size_is_refused(mirror, tmp_path):
    [archive] = (mirror / "x86_64/release/openssh").glob("*.tar.xz")
    archive.write_bytes(archive.read_bytes() + b"x")
    with pytest.raises(UserError) as err:
        copy_payload(mirror, tmp_path / "out", REQUESTED)
    assert "package openssh" in str(err.value) and "bytes" in str(err.value)


def test_missing_archive_is_refused(mirror, tmp_path):
    shutil.rmtree(mirror / "noarch/release/csih")
    with pytest.raises(UserError) as err:
        copy_payload(mirror, tmp_path / "out", REQUESTED)
    message = str(err.value)
    assert "package csih 0.9.13-1" in message and "is missing" in message
    assert "csih-0.9.13-1.tar.xz" in message


def test_archives_outside_the_closure_may_be_missing(mirror, tmp_path):
    shutil.rmtree(mirror / "x86_64/release/vim")
    copy_payload(mirror, tmp_path / "out", REQUESTED)


def test_setup_program_is_required(mirror, tmp_path):
    (mirror / "setup-x86_64.exe").unlink()
    with pytest.raises(UserError) as err:
        copy_payload(mirror, tmp_path / "out", REQUESTED)
    assert "setup-x86_64.exe" in str(err.value)


def test_download_without_installing_layout(tmp_path):
    """setup's download folder: <dir>/<escaped mirror url>/x86_64/setup.ini,
    archives relative to the escaped folder, setup.exe copied to <dir>."""
    outer = tmp_path / "downloads"
    site = outer / "https%3a%2f%2fmirrors.kernel.org%2fsourceware%2fcygwin%2f"
    shutil.copytree(FIXTURE, site)
    (site / "x86_64").mkdir(exist_ok=True)
    (site / "setup.ini").rename(site / "x86_64" / "setup.ini")
    (site / "setup-x86_64.exe").rename(outer / "setup-x86_64.exe")
    root, _ = find_mirror_root(outer)
    assert root == site
    copied = copy_payload(outer, tmp_path / "out", REQUESTED)
    assert [p.name for p in copied] == EXPECTED


def test_compressed_setup_ini_is_read(mirror, tmp_path):
    (mirror / "x86_64").mkdir(exist_ok=True)
    text = (mirror / "setup.ini").read_text()
    (mirror / "x86_64" / "setup.xz").write_bytes(lzma.compress(text.encode()))
    (mirror / "setup.ini").unlink()
    dest = tmp_path / "out"
    copy_payload(mirror, dest, REQUESTED)
    assert (dest / "x86_64/setup.ini").read_text() == text


def test_missing_mirror_is_refused(tmp_path):
    with pytest.raises(UserError) as err:
        copy_payload(tmp_path / "absent", tmp_path / "out", REQUESTED)
    assert str(err.value).startswith("config.toml: [guest] cygwin_mirror: ")


def test_fixture_hashes_are_real(ini):
    """The fixture itself: every current archive matches its setup.ini line."""
    for pkg in ini.packages.values():
        data = (FIXTURE / pkg.install.path).read_bytes()
        assert len(data) == pkg.install.size
        assert hashlib.sha512(data).hexdigest() == pkg.install.digest
