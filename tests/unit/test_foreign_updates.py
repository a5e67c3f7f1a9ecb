"""A foreign root (debootstrap --foreign) gets the newer packages of its
suite's -updates and -security companions: against a real, signed archive
on disk (packages built by dpkg-deb, indexes signed by a key made here),
read by the real apt."""

import email.utils
import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from revive.core.errors import UserError
from revive.guests.debian import apt, rootfs

pytestmark = pytest.mark.skipif(
    not all(shutil.which(c) for c in ("gpg", "gpgconf", "dpkg-deb", "apt-get")),
    reason="needs gpg, dpkg-deb and apt-get")

ARCH = "arm64"


@pytest.fixture
def key(tmp_path):
    """A signing key of its own (GNUPGHOME in tmp_path); its agent is
    stopped afterwards."""
    home = tmp_path / "gnupg"
    home.mkdir(mode=0o700)
    env = {**os.environ, "GNUPGHOME": str(home)}
    subprocess.run(["gpg", "--batch", "--pinentry-mode", "loopback", "--passphrase", "",
                    "--quick-gen-key", "revive test <test@example.invalid>", "ed25519",
                    "sign", "never"], env=env, check=True, capture_output=True, timeout=120)
    keyring = tmp_path / "archive-key.gpg"
    keyring.write_bytes(subprocess.run(["gpg", "--export"], env=env, check=True,
                                       capture_output=True, timeout=60).stdout)
    yield env, keyring
    subprocess.run(["gpgconf", "--kill", "all"], env=env, capture_output=True, timeout=60)


def deb(folder: Path, name: str, version: str, depends: str = "") -> Path:
    """A real .deb of ``name`` at ``version`` for ARCH."""
    tree = folder / f"build-{name}-{version}"
    (tree / "DEBIAN").mkdir(parents=True)
    (tree / "usr/share" / name).mkdir(parents=True)
    (tree / "usr/share" / name / "version").write_text(version + "\n")
    control = [f"Package: {name}", f"Version: {version}", f"Architecture: {ARCH}",
               "Maintainer: revive <test@example.invalid>", f"Description: {name} for tests"]
    if depends:
        control.insert(3, f"Depends: {depends}")
    (tree / "DEBIAN/control").write_text("\n".join(control) + "\n")
    out = folder / f"{name}_{version.replace(':', '%3a')}_{ARCH}.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "-Zgzip", "-b", tree, out],
                   check=True, capture_output=True, timeout=60)
    shutil.rmtree(tree)
    return out


def suite(archive: Path, name: str, packages: "list[tuple]", env: dict) -> None:
    """dists/NAME of ``archive``: a Packages index of the packages
    ((name, version[, depends])) and an InRelease signed by ``env``'s key."""
    pool = archive / "pool" / name
    pool.mkdir(parents=True)
    stanzas = []
    for spec in packages:
        path = deb(pool, *spec)
        control = subprocess.run(["dpkg-deb", "-f", path], check=True, capture_output=True,
                                 text=True, timeout=60).stdout.rstrip("\n")
        data = path.read_bytes()
        stanzas.append(f"{control}\nFilename: {path.relative_to(archive)}\n"
                       f"Size: {len(data)}\nSHA256: {hashlib.sha256(data).hexdigest()}\n")
    binary = archive / "dists" / name / "main" / f"binary-{ARCH}"
    binary.mkdir(parents=True)
    index = "\n".join(stanzas).encode()
    (binary / "Packages").write_bytes(index)
    release = (f"Origin: Test\nSuite: {name}\nCodename: {name}\n"
               f"Date: {email.utils.formatdate(usegmt=True)}\n"
               f"Architectures: {ARCH}\nComponents: main\nSHA256:\n"
               f" {hashlib.sha256(index).hexdigest()} {len(index)} "
               f"main/binary-{ARCH}/Packages\n")
    (archive / "dists" / name / "Release").write_text(release)
    subprocess.run(["gpg", "--batch", "--yes", "--clearsign", "-o",
                    archive / "dists" / name / "InRelease", archive / "dists" / name / "Release"],
                   env=env, check=True, capture_output=True, timeout=60)


@pytest.fixture
def archive(tmp_path, key):
    """The suite "test" (a 1, b 1), "test-updates" (b older than the
    suite's) and "test-security" (a 1+sec1, which newly depends on c)."""
    env, keyring = key
    root = tmp_path / "archive"
    suite(root, "test", [("a", "1"), ("b", "1")], env)
    suite(root, "test-updates", [("b", "1~old")], env)
    suite(root, "test-security", [("a", "1+sec1", "c (>= 1)"), ("c", "1")], env)
    sources = [apt.Source(f"file://{root}", s, ("main",), str(keyring))
               for s in ("test", "test-updates", "test-security")]
    return root, sources


def fetched(tmp_path: Path, archive: Path) -> Path:
    """A tree as debootstrap --foreign leaves it: the suite's a and b in
    var/cache/apt/archives, named in debootstrap/debpaths."""
    target = tmp_path / "target"
    archives = target / "var/cache/apt/archives"
    archives.mkdir(parents=True)
    lists = target / "var/lib/apt/lists"
    lists.mkdir(parents=True)
    shutil.copyfile(archive / f"dists/test/main/binary-{ARCH}/Packages",
                    lists / f"m_dists_test_main_binary-{ARCH}_Packages")
    (target / "debootstrap").mkdir()
    lines = []
    for name in ("a", "b"):
        deb_ = archive / "pool/test" / f"{name}_1_{ARCH}.deb"
        shutil.copyfile(deb_, archives / deb_.name)
        lines.append(f"{name} /var/cache/apt/archives/{deb_.name}\n")
    (target / "debootstrap/debpaths").write_text("".join(lines))
    (target / "debootstrap/required").write_text("a\n")
    (target / "debootstrap/base").write_text("b\n")
    return target


def test_a_newer_security_version_replaces_the_suites_and_brings_its_dependency(
        tmp_path, archive):
    root, sources = archive
    target = fetched(tmp_path, root)
    updated = rootfs._foreign_updates(target, sources, "test", ARCH, tmp_path / "apt",
                                      tmp_path / "log")
    assert updated == {"a": ["1", "1+sec1"], "c": [None, "1"]}
    # What the second stage installs: the security a, the new c, the suite's b
    # (test-updates' b is older).
    debpaths = dict(rootfs._debpaths(target))
    assert debpaths == {"a": f"/var/cache/apt/archives/a_1+sec1_{ARCH}.deb",
                        "b": f"/var/cache/apt/archives/b_1_{ARCH}.deb",
                        "c": f"/var/cache/apt/archives/c_1_{ARCH}.deb"}
    for path in debpaths.values():
        assert (target / path.lstrip("/")).is_file()
    assert not (target / f"var/cache/apt/archives/a_1_{ARCH}.deb").exists()
    assert (target / "debootstrap/base").read_text().split() == ["b", "c"]
    # The suite's index the second stage reads control fields from (dpkg's
    # available file: Pre-Depends) has the new versions' stanzas.
    index = (target / f"var/lib/apt/lists/m_dists_test_main_binary-{ARCH}_Packages").read_text()
    fields = {}
    for stanza in index.strip().split("\n\n"):
        lines = dict(l.split(": ", 1) for l in stanza.splitlines() if ": " in l)
        fields[lines["Package"]] = (lines["Version"], lines.get("Depends"))
    assert fields == {"a": ("1+sec1", "c (>= 1)"), "b": ("1", None), "c": ("1", None)}
    # The records name what is installed, and the companions' Release files.
    rootfs._foreign_records(target)
    records = target / rootfs.RECORDS
    assert (records / "packages").read_text() == "a\t1+sec1\nb\t1\nc\t1\n"
    suites = {f["Suite"] for f in
              rootfs.parse_releases((records / "releases").read_text()).values()}
    assert suites == {"test-updates", "test-security"}


def test_the_suite_alone_changes_nothing(tmp_path, archive):
    root, sources = archive
    target = fetched(tmp_path, root)
    before = (target / "debootstrap/debpaths").read_text()
    assert rootfs._foreign_updates(target, sources[:1], "test", ARCH, tmp_path / "apt",
                                   tmp_path / "log") == {}
    assert (target / "debootstrap/debpaths").read_text() == before


def test_a_deb_whose_checksum_differs_from_the_signed_index_is_refused_in_one_line(
        tmp_path, archive):
    root, sources = archive
    target = fetched(tmp_path, root)
    bad = root / "pool/test-security" / f"a_1+sec1_{ARCH}.deb"
    data = bytearray(bad.read_bytes())
    data[-1] ^= 0xFF                    # same size, other bytes
    bad.write_bytes(bytes(data))
    with pytest.raises(UserError) as err:
        rootfs._foreign_updates(target, sources, "test", ARCH, tmp_path / "apt",
                                tmp_path / "log")
    assert "apt-get download" in str(err.value) and "Hash Sum mismatch" in str(err.value)
    assert "\n" not in str(err.value)
    # Nothing of the update reached the tree.
    assert dict(rootfs._debpaths(target))["a"].endswith(f"a_1_{ARCH}.deb")


def test_an_index_whose_signature_fails_is_refused_in_one_line(tmp_path, archive):
    root, sources = archive
    target = fetched(tmp_path, root)
    inrelease = root / "dists/test-security/InRelease"
    inrelease.write_text(inrelease.read_text().replace("Origin: Test", "Origin: Tast"))
    with pytest.raises(UserError) as err:
        rootfs._foreign_updates(target, sources, "test", ARCH, tmp_path / "apt",
                                tmp_path / "log")
    assert "apt-get update" in str(err.value) and "is not signed" in str(err.value)
    assert "\n" not in str(err.value)


def test_the_foreign_recipe_names_the_companions_it_takes_updates_from():
    src = [apt.Source("http://m.example/debian", s, ("main",))
           for s in ("bookworm", "bookworm-updates", "bookworm-security")]
    spec = rootfs.recipe("bookworm", src, ["a"], "arm64", rootfs.FOREIGN)
    assert spec["updates_from"] == ["bookworm-security", "bookworm-updates"]
    alone = rootfs.recipe("bookworm", src[:1], ["a"], "arm64", rootfs.FOREIGN)
    assert alone["updates_from"] == []
    assert "updates_from" not in rootfs.recipe("bookworm", src, ["a"])


def test_the_listing_names_what_the_companions_replaced_and_the_guest_apt_reads_them(
        tmp_path):
    info = {"suite": "bookworm", "made_by": "debootstrap 1.0.128", "packages": ["a"],
            "arch": ARCH, "sources": "", "releases": {},
            "updated": {"libssl3": ["3.0.20-1~deb12u2", "3.0.22-1~deb12u2"], "c": [None, "1"]},
            "installed": [["c", "1"], ["libssl3", "3.0.22-1~deb12u2"]]}
    text = rootfs.packages_listing(info)
    assert "# updated: libssl3 3.0.20-1~deb12u2 -> 3.0.22-1~deb12u2\n" in text
    assert "# updated: c (new) -> 1\n" in text
    assert text.endswith("c\t1\nlibssl3\t3.0.22-1~deb12u2\n")
    # The guest's apt: the suite and its companions, not debootstrap's line.
    (tmp_path / "etc/apt").mkdir(parents=True)
    (tmp_path / "etc/apt/sources.list").write_text("deb http://m.example/debian bookworm main\n")
    sources = [apt.Source("http://m.example/debian", s, ("main",))
               for s in ("bookworm", "bookworm-security")]
    rootfs._foreign_sources(tmp_path, apt.deb822(sources))
    assert not (tmp_path / "etc/apt/sources.list").exists()
    found = apt.parse_deb822((tmp_path / "etc/apt/sources.list.d/0000sources.sources")
                             .read_text())
    assert found == sources
