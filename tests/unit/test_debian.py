"""The Debian guest without a VM: its [guest] keys, the host's apt sources
it reuses, the mirror state it records, and the installer hooks' shell."""

import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

from revive.config import parse
from revive.core.errors import UserError
from revive import inputs
from revive.guests import debian, kind_for
from revive.guests.debian import apt, rootfs
from tests import configs

SIGNED = "/usr/share/keyrings/debian-archive-keyring.gpg"

DEB822 = f"""\
Types: deb
# a comment inside a stanza
URIs: http://archive.example/debian
Suites: bookworm bookworm-updates
Components: main contrib
Signed-By: {SIGNED}

Types: deb deb-src
URIs: http://security.example/debian-security
Suites: bookworm-security
Components: main
Signed-By: -----BEGIN PGP PUBLIC KEY BLOCK-----
 .
 mQINBGPL0BUBEADmW5NlOZiMkd
 -----END PGP PUBLIC KEY BLOCK-----

Enabled: no
Types: deb
URIs: http://disabled.example/debian
Suites: bookworm
Components: main

Types: deb-src
URIs: http://source-only.example/debian
Suites: bookworm
Components: main
"""

ONE_LINE = """\
# the host's sources.list
deb [arch=amd64 signed-by=/etc/keys/a.gpg] http://one.example/debian trixie main
deb-src http://one.example/debian trixie main
deb http://one.example/debian trixie-backports main   # not a companion suite
"""


def config(guest: str):
    """A config with these [guest] keys and the exchange folder."""
    raw = {"guest": tomllib.loads(guest), "shares": {"xchg": configs.shares()["xchg"]}}
    return parse(raw, Path("/tmp/project/config.toml"))


def host_root(tmp_path: Path) -> Path:
    (tmp_path / "etc/apt/sources.list.d").mkdir(parents=True)
    (tmp_path / "etc/apt/sources.list").write_text(ONE_LINE)
    (tmp_path / "etc/apt/sources.list.d/debian.sources").write_text(DEB822)
    (tmp_path / "etc/apt/sources.list.d/other.list.disabled").write_text(
        "deb http://ignored.example/ bookworm main\n")
    return tmp_path


# --- [guest] ----------------------------------------------------------------

def test_defaults():
    s = debian.from_table({"kind": "debian"})
    assert (s.suite, s.mirror, s.packages) == ("bookworm", "host", ("build-essential",))
    assert set(debian.REQUIRED) <= set(s.all_packages)
    assert "build-essential" in s.all_packages


def test_the_required_packages_stay_when_the_user_lists_others():
    s = debian.from_table({"packages": ["git"]})
    assert "build-essential" not in s.all_packages
    assert {"git", "openssh-server", "systemd-sysv"} <= set(s.all_packages)


@pytest.mark.parametrize("table, key", [
    ({"packages": ["Build essential"]}, "packages"),
    ({"packages": "build-essential"}, "packages"),
    ({"packages": ["gcc=12"]}, "packages"),
    ({"suite": "Bookworm"}, "suite"),
    ({"suite": 12}, "suite"),
    ({"mirror": "archive.example/debian"}, "mirror"),
    ({"mirror": "http://a b/"}, "mirror"),
    ({"mirrors": "host"}, "mirrors"),
])
def test_mistakes_are_one_line_naming_the_key(table, key):
    with pytest.raises(UserError) as err:
        debian.from_table(table)
    message = str(err.value)
    assert message.startswith(f"config.toml: [guest] {key}: ")
    assert "\n" not in message


def test_a_mistake_is_one_line_while_the_config_loads():
    with pytest.raises(UserError, match=r"^config.toml: \[guest\] packages: "):
        config('kind = "debian"\npackages = ["No Such"]')


def test_payload_record_changes_with_the_package_list_only():
    def record(text):
        return inputs.for_stage(config(text), "payload").plain()
    base = record('kind = "debian"\nmirror = "http://archive.example/debian"')
    same = record('kind = "debian"\nmirror = "http://archive.example/debian/"\n'
                  'suite = "bookworm"\npackages = ["build-essential"]')
    more = record('kind = "debian"\nmirror = "http://archive.example/debian"\n'
                  'packages = ["build-essential", "git"]')
    assert base == same
    assert base != more
    assert "git" in more["guest.packages"]


def test_the_guest_boots_the_payload_kernel_without_a_bootloader():
    kind = kind_for(config('kind = "debian"\nmirror = "http://archive.example/debian"'))
    devices = kind.installed_devices(inputs.for_stage(
        config('kind = "debian"\nmirror = "http://archive.example/debian"'), "snapshot"))
    assert devices.kernel.kernel.endswith("/payload/boot/vmlinuz")
    assert "root=/dev/vda1" in devices.kernel.append
    names = {p.name for p in debian.source_files()}
    assert {"installer-hooks.sh", "installer-init", "boot-init"} <= names
    assert "sources.py" not in names


def test_the_steps_after_a_revive_start_only_the_payloads_busybox():
    """The clock, every share and the agent's output share: the pinned static
    busybox's applets, never Debian's dynamically linked date or mount."""
    from revive.config import Share
    kind = kind_for(config('kind = "debian"\nmirror = "http://archive.example/debian"'))
    shares = [Share("src", "/mnt/new share", "ro", "9p", None),
              Share("xchg", "/mnt/xchg", "rw", "smb", None)]
    steps = kind.after_revive(shares, 1795805517.6, {})
    started = re.findall(r"(\S*) (date|mount|mkdir) -", steps)
    assert {program for program, _ in started} == {debian.BUSYBOX}
    assert sorted(applet for _, applet in started) == ["date", "mkdir", "mkdir", "mount",
                                                       "mount"]
    assert kind.program("mount") == f"{debian.BUSYBOX} mount"


# --- the host's apt sources -------------------------------------------------

def test_host_sources_read_both_formats_in_apt_order(tmp_path):
    found = apt.host_sources(host_root(tmp_path))
    assert [(s.uri, s.suite) for s in found] == [
        ("http://one.example/debian", "trixie"),
        ("http://one.example/debian", "trixie-backports"),
        ("http://archive.example/debian", "bookworm"),
        ("http://archive.example/debian", "bookworm-updates"),
        ("http://security.example/debian-security", "bookworm-security"),
    ]
    assert found[0].signed_by == "/etc/keys/a.gpg"
    assert found[2].components == ("main", "contrib")
    assert found[4].signed_by.startswith("-----BEGIN PGP PUBLIC KEY BLOCK-----\n\n")


def test_a_suite_takes_its_updates_and_security_companions(tmp_path):
    host = apt.host_sources(host_root(tmp_path))
    chosen = apt.sources_for("bookworm", "host", host)
    assert [s.suite for s in chosen] == ["bookworm", "bookworm-updates", "bookworm-security"]
    assert [s.suite for s in apt.sources_for("trixie", "host", host)] == ["trixie"]


def test_a_suite_the_host_does_not_carry_says_what_it_has(tmp_path):
    with pytest.raises(UserError) as err:
        apt.sources_for("sid", "host", apt.host_sources(host_root(tmp_path)))
    assert "[guest] suite" in str(err.value) and "bookworm" in str(err.value)


def test_an_explicit_mirror_is_used_alone():
    chosen = apt.sources_for("bookworm", "http://mirror.example/debian", [])
    assert chosen == [apt.Source("http://mirror.example/debian", "bookworm", ("main",))]


def test_deb822_round_trips_inline_keys(tmp_path):
    found = apt.host_sources(host_root(tmp_path))
    again = apt.parse_deb822(apt.deb822(found))
    assert again == found
    assert "Types: deb-src\n" in apt.deb822(found[:1], types="deb-src")


# --- the recorded mirror state ----------------------------------------------

def test_release_fields_are_grouped_by_list_file():
    text = ("a_dists_bookworm_InRelease:Origin: Debian\n"
            "a_dists_bookworm_InRelease:Suite: oldstable\n"
            "a_dists_bookworm_InRelease:Date: Sat, 11 Jul 2026 10:16:37 UTC\n"
            "b_dists_bookworm-security_InRelease:Date: Wed, 25 Nov 2026 22:33:12 UTC\n")
    releases = rootfs.parse_releases(text)
    assert releases["a_dists_bookworm_InRelease"] == {
        "Origin": "Debian", "Suite": "oldstable", "Date": "Sat, 11 Jul 2026 10:16:37 UTC"}
    assert set(releases) == {"a_dists_bookworm_InRelease", "b_dists_bookworm-security_InRelease"}


def test_the_cache_key_follows_the_recipe():
    src = [apt.Source("http://mirror.example/debian", "bookworm", ("main",))]
    one = rootfs.cache_key(rootfs.recipe("bookworm", src, ["b", "a"]))
    assert one == rootfs.cache_key(rootfs.recipe("bookworm", src, ["a", "b", "a"]))
    assert one != rootfs.cache_key(rootfs.recipe("bookworm", src, ["a", "b", "c"]))
    assert one != rootfs.cache_key(rootfs.recipe("trixie", src, ["a", "b"]))


def test_the_packages_listing_starts_with_the_mirror_state():
    info = {"suite": "bookworm", "mmdebstrap": "mmdebstrap 1.3.5", "packages": ["a"],
            "sources": apt.deb822([apt.Source("http://m.example/debian", "bookworm", ("main",))]),
            "releases": {"x_InRelease": {"Suite": "oldstable", "Codename": "bookworm",
                                         "Date": "Sat, 11 Jul 2026"}},
            "installed": [["a", "1.0"], ["libc6:amd64", "2.36"]]}
    text = rootfs.packages_listing(info)
    assert "dated Sat, 11 Jul 2026" in text
    assert text.endswith("a\t1.0\nlibc6:amd64\t2.36\n")


# --- the installer hooks ----------------------------------------------------

@pytest.mark.skipif(not shutil.which("busybox"), reason="busybox is not installed")
def test_the_installer_hooks_parse_in_busybox_sh():
    hooks = Path(debian.HERE, "installer-hooks.sh")
    subprocess.run(["busybox", "sh", "-n", str(hooks)], check=True)
    text = hooks.read_text()
    for step in ("copy_system()", "apply_answers()", "make_host_key()"):
        assert step in text
    # busybox runs its own applet for a bare name it knows (depmod).
    assert "in_target /sbin/depmod" in text


# --- another architecture ---------------------------------------------------

def test_the_arch_picks_the_suite_and_a_longer_install():
    assert debian.from_table({"arch": "riscv64"}).suite == "trixie"
    assert debian.from_table({"arch": "arm64"}).suite == "bookworm"
    assert debian.from_table({"arch": "riscv64", "suite": "sid"}).suite == "sid"
    assert config('kind = "debian"').value("timeouts.install") == 20 * 60
    assert config('kind = "debian"\narch = "arm64"').value("timeouts.install") == 60 * 60
    with pytest.raises(UserError, match=r"^config.toml: \[guest\] arch: 's390x' is not an "
                                        r"architecture of the Debian guest; use one of: amd64"):
        debian.from_table({"arch": "s390x"})


def test_the_root_maker_follows_the_host_and_is_hashed():
    assert rootfs.maker("amd64", "x86_64") == rootfs.MMDEBSTRAP
    assert rootfs.maker("arm64", "x86_64") == rootfs.FOREIGN
    assert rootfs.maker("arm64", "aarch64") == rootfs.MMDEBSTRAP
    assert rootfs.maker("riscv64", "x86_64") == rootfs.FOREIGN
    record = inputs.for_stage(config('kind = "debian"\narch = "arm64"\n'
                                     'mirror = "http://archive.example/debian"'),
                              "payload").plain()
    assert record["host.root_maker"] == rootfs.maker("arm64")
    # The arch shapes the machine: the install and the snapshot hash it.
    assert inputs.for_stage(config('kind = "debian"\narch = "arm64"'),
                            "install").plain()["guest.arch"] == "arm64"


def test_amd64_keeps_its_cache_key_and_a_foreign_root_has_its_own():
    src = [apt.Source("http://mirror.example/debian", "bookworm", ("main",))]
    plain = rootfs.recipe("bookworm", src, ["a"])
    assert plain == rootfs.recipe("bookworm", src, ["a"], "amd64", rootfs.MMDEBSTRAP)
    assert "arch" not in plain and "maker" not in plain
    foreign = rootfs.recipe("bookworm", src, ["a"], "arm64", rootfs.FOREIGN)
    assert rootfs.cache_key(foreign) != rootfs.cache_key(plain)
    assert rootfs.folder_for("bookworm", src, ["a"], Path("/c"), "arm64", rootfs.FOREIGN) \
        .name.startswith("bookworm-arm64-")


def test_a_foreign_root_records_what_debootstrap_fetched(tmp_path):
    (tmp_path / "debootstrap").mkdir()
    (tmp_path / "debootstrap/debpaths").write_text(
        "gcc /var/cache/apt/archives/gcc_4%3a12.2.0-3_arm64.deb\n"
        "adduser /var/cache/apt/archives/adduser_3.134_all.deb\n")
    lists = tmp_path / "var/lib/apt/lists"
    lists.mkdir(parents=True)
    (lists / "m_debian_dists_bookworm_Release").write_text(
        "Origin: Debian\nSuite: stable\nCodename: bookworm\nDate: Sat, 10 May 2025\n"
        "MD5Sum:\n abc 1 main/Release\n")
    (lists / "m_debian_dists_bookworm_main_binary-arm64_Packages").write_text("Date: no\n")
    rootfs._foreign_records(tmp_path)
    records = tmp_path / rootfs.RECORDS
    assert (records / "packages").read_text() == "adduser\t3.134\ngcc\t4:12.2.0-3\n"
    assert rootfs.parse_releases((records / "releases").read_text()) == {
        "m_debian_dists_bookworm_Release": {"Origin": "Debian", "Suite": "stable",
                                            "Codename": "bookworm",
                                            "Date": "Sat, 10 May 2025"}}
    # dpkg reads the options at the second stage, in the guest.
    options = (tmp_path / "etc/dpkg/dpkg.cfg.d/revive-nodoc").read_text().splitlines()
    assert options == rootfs.DPKG_OPTIONS
