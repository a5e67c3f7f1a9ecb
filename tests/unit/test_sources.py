"""[sources.NAME]: config checks, tarballs checked and unpacked without
trusting them, revive.lock, and the sources:NAME task under real doit."""

import hashlib
import http.server
import io
import json
import subprocess
import sys
import tarfile
import threading
import tomllib
from pathlib import Path

import pytest

from revive.config import parse
from revive.core.errors import UserError
from revive.fetch import lock, tarball
from tests import configs

REPO = Path(__file__).resolve().parents[2]


def cfg(text: str):
    return parse(tomllib.loads(configs.SHARES + text), Path("/project/config.toml"))


def error(text: str) -> str:
    with pytest.raises(UserError) as err:
        cfg(text)
    assert "\n" not in str(err.value)
    return str(err.value)


# --- config -------------------------------------------------------------

def test_a_build_names_a_source_and_shares_its_folder():
    c = cfg('[sources.hello]\ndebian = "hello"\n'
            '[sources.up]\nurl = "https://example.org/a.tar.gz"\nsha256 = "' + "a" * 64 + '"\n'
            '[sources.local]\npath = "here"\n'
            '[builds.b]\ncommand = "true"\nshares = { src = "sources:hello" }\n')
    assert c.sources["hello"].kind == "debian" and c.sources["hello"].debian == "hello"
    assert c.sources["up"].kind == "url" and c.sources["up"].sha256 == "a" * 64
    assert c.sources["local"].path == Path("/project/here")
    assert c.builds["b"].shares["src"] == Path("/project/artifacts/sources/hello")
    assert c.builds["b"].sources == ("hello",)


@pytest.mark.parametrize("text, names", [
    ('[sources.s]\n', "[sources.s]: set exactly one of"),
    ('[sources.s]\ndebian = "hello"\npath = "x"\n', "[sources.s]: set exactly one of"),
    ('[sources.s]\ndebian = "Hello World"\n', "[sources.s] debian"),
    ('[sources.s]\nurl = "ftp://x/a.tgz"\nsha256 = "' + "a" * 64 + '"\n', "[sources.s] url"),
    ('[sources.s]\nurl = "https://x/a.tgz"\n', "[sources.s] sha256: missing"),
    ('[sources.s]\nurl = "https://x/a.tgz"\nsha256 = "abc"\n', "[sources.s] sha256"),
    ('[sources.s]\npath = "x"\nsha256 = "' + "a" * 64 + '"\n', "[sources.s] sha256"),
    ('[sources.s]\ngit = "x"\n', "[sources.s] git: unknown key"),
    ('[builds.b]\ncommand = "x"\nshares = { src = "sources:nope" }\n',
     "[builds.b.shares] src: no [sources.nope] table"),
])
def test_mistakes_name_the_key(text, names):
    assert names in error(text)


# --- tarballs -----------------------------------------------------------

def make_tar(path: Path, members) -> str:
    """members: (TarInfo fields, data) pairs; returns the sha256."""
    with tarfile.open(path, "w:gz") as tar:
        for fields, data in members:
            fields = dict(fields)
            info = tarfile.TarInfo(fields.pop("name"))
            for k, v in fields.items():
                setattr(info, k, v)
            info.size = len(data) if data is not None else 0
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_tarball_is_fetched_checked_and_unpacked(tmp_path):
    src = tmp_path / "hello-1.0.tar.gz"
    digest = make_tar(src, [({"name": "hello-1.0/README", "mode": 0o4755}, b"hi\n"),
                            ({"name": "hello-1.0/link", "type": tarfile.SYMTYPE,
                              "linkname": "README"}, None)])
    cached = tarball.fetch(src.as_uri(), digest, tmp_path / "cache", key="[sources.s]")
    assert cached == tmp_path / "cache" / "sources" / f"{digest}.tar"
    files = tarball.unpack(cached, tmp_path / "out", key="[sources.s]")
    assert files == ["hello-1.0/README"]
    assert (tmp_path / "out" / "hello-1.0" / "link").read_text() == "hi\n"
    # The set-uid bit from the archive is dropped.
    assert (tmp_path / "out" / "hello-1.0" / "README").stat().st_mode & 0o4000 == 0


def test_a_tarball_over_http_with_another_hash_is_refused(tmp_path):
    make_tar(tmp_path / "a.tar.gz", [({"name": "a"}, b"a")])
    handler = lambda *a: http.server.SimpleHTTPRequestHandler(*a, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}/a.tar.gz"
    try:
        with pytest.raises(UserError) as err:
            tarball.fetch(url, "0" * 64, tmp_path / "cache", key="[sources.s]")
        assert str(err.value).startswith(f"[sources.s] sha256: {url} has sha256 ")
        assert not list((tmp_path / "cache" / "sources").iterdir())
        with pytest.raises(UserError, match=r"\[sources.s\] url: cannot download"):
            tarball.fetch(url + ".missing", "0" * 64, tmp_path / "cache", key="[sources.s]")
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("member, why", [
    ({"name": "/etc/evil"}, "absolute"),
    ({"name": "../evil"}, "outside the destination"),
    ({"name": "a/../../evil"}, "outside the destination"),
    ({"name": "out", "type": tarfile.SYMTYPE, "linkname": "/etc/passwd"}, "absolute"),
    ({"name": "out", "type": tarfile.SYMTYPE, "linkname": "../../x"}, "outside the destination"),
    ({"name": "hard", "type": tarfile.LNKTYPE, "linkname": "../x"}, "outside the destination"),
    ({"name": "dev", "type": tarfile.CHRTYPE, "devmajor": 1, "devminor": 3}, "special file"),
])
def test_a_hostile_tarball_is_refused_in_one_line(tmp_path, member, why):
    archive = tmp_path / "bad.tar.gz"
    make_tar(archive, [({"name": "ok"}, b"ok"),
                       (member, b"x" if member.get("type") is None else None)])
    with pytest.raises(UserError) as err:
        tarball.unpack(archive, tmp_path / "out", key="[sources.s]")
    message = str(err.value)
    assert message.startswith("[sources.s]: the tarball is refused: ") and why in message
    assert "\n" not in message
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    assert not (tmp_path / "evil").exists()


# --- revive.lock --------------------------------------------------------

def test_the_lock_records_then_refuses_a_different_dsc(tmp_path):
    path = tmp_path / "revive.lock"
    entry = {"debian": "hello", "suite": "bookworm", "dsc": "hello_2.10-3.dsc",
             "dsc_sha256": "a" * 64}
    lock.check_and_record(path, "hello", entry, compare=("dsc", "dsc_sha256"))
    assert json.loads(path.read_text())["sources"]["hello"] == entry
    lock.check_and_record(path, "hello", dict(entry), compare=("dsc", "dsc_sha256"))
    with pytest.raises(UserError) as err:
        lock.check_and_record(path, "hello", {**entry, "dsc_sha256": "b" * 64},
                              compare=("dsc", "dsc_sha256"))
    assert str(err.value) == (
        f"revive.lock: [sources.hello] fetched dsc hello_2.10-3.dsc, dsc_sha256 {'b' * 64}, "
        f"but revive.lock records dsc hello_2.10-3.dsc, dsc_sha256 {'a' * 64}; if the new "
        f"version is wanted, remove \"hello\" from {path}")
    # Another request (a new suite) is recorded in place of the old one.
    lock.check_and_record(path, "hello", {**entry, "suite": "trixie", "dsc_sha256": "c" * 64},
                          compare=("dsc", "dsc_sha256"))
    assert json.loads(path.read_text())["sources"]["hello"]["dsc_sha256"] == "c" * 64


# --- the task under doit --------------------------------------------------

def doit(project: Path, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "doit", "-f", str(REPO / "dodo.py"),
                           "-d", str(project), *args], capture_output=True, text=True,
                          timeout=120, env={"PATH": "/usr/bin:/bin",
                                            "REVIVE_CACHE": str(project / "cache")})


def test_url_and_path_sources_become_tasks_that_builds_depend_on(tmp_path):
    archive = tmp_path / "up.tar.gz"
    digest = make_tar(archive, [({"name": "up/main.c"}, b"int main(){}\n")])
    (tmp_path / "local").mkdir()
    (tmp_path / "local" / "data.txt").write_text("one\n")
    (tmp_path / "config.toml").write_text(configs.SHARES + f"""
[sources.up]
url = "{archive.as_uri()}"
sha256 = "{digest}"
[sources.local]
path = "local"
[builds.b]
command = "true"
shares = {{ src = "sources:up" }}
""")
    proc = doit(tmp_path, "sources")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = tmp_path / "artifacts" / "sources"
    assert (out / "up" / "up" / "main.c").read_text() == "int main(){}\n"
    assert (out / "local" / "data.txt").read_text() == "one\n"
    record = json.loads((out / "up.json").read_text())
    assert record["files"] == {"up/main.c": hashlib.sha256(b"int main(){}\n").hexdigest()}
    info = doit(tmp_path, "info", "build:b").stdout
    assert str(out / "up.json") in info
    # Nothing changed: nothing runs; a changed local file reruns its task only.
    assert "-- sources:up" in doit(tmp_path, "sources").stdout
    (tmp_path / "local" / "data.txt").write_text("two\n")
    proc = doit(tmp_path, "sources")
    assert ".  sources:local" in proc.stdout and "-- sources:up" in proc.stdout
    assert (out / "local" / "data.txt").read_text() == "two\n"
    # A changed key of its table: doit names it, and only that task reruns.
    (tmp_path / "local").rename(tmp_path / "moved")
    config = tmp_path / "config.toml"
    config.write_text(config.read_text().replace('path = "local"', 'path = "moved"'))
    info = doit(tmp_path, "info", "sources:local").stdout
    assert "config.toml (sources.local) changed: sources.local.path: " in info, info
    proc = doit(tmp_path, "sources")
    assert ".  sources:local" in proc.stdout and "-- sources:up" in proc.stdout


def test_a_wrong_sha256_fails_the_task_in_one_line_and_leaves_no_target(tmp_path):
    archive = tmp_path / "up.tar.gz"
    make_tar(archive, [({"name": "a"}, b"a")])
    (tmp_path / "config.toml").write_text(configs.SHARES + f"""
[sources.up]
url = "{archive.as_uri()}"
sha256 = "{'0' * 64}"
""")
    proc = doit(tmp_path, "sources:up")
    assert proc.returncode != 0
    assert "Traceback" not in proc.stdout + proc.stderr
    assert f"revive: config.toml: [sources.up] sha256: {archive.as_uri()} has sha256" \
        in proc.stdout
    assert not (tmp_path / "artifacts" / "sources" / "up.json").exists()
    assert not (tmp_path / "artifacts" / "sources" / "up").exists()


def test_the_sources_record_hashes_the_apt_sources_a_debian_source_is_fetched_from(
        monkeypatch):
    from revive import inputs
    from revive.guests.debian import apt

    def record(guest: str = "", source: str = 'debian = "hello"'):
        text = guest + "\n[sources.s]\n" + source + "\n"
        return inputs.for_sources(cfg(text), "s").plain()

    def host(uri: str):
        monkeypatch.setattr(apt, "host_sources", lambda: [
            apt.Source(uri=uri, suite="bookworm", components=("main",))])

    # mirror = "host" (the default, also for a tiny guest): what is hashed
    # is what the host's apt sources resolve to, not the word "host".
    host("http://one.example/debian")
    one = record()
    assert (one["guest.suite"], one["guest.mirror"]) == ("bookworm", "host")
    assert [s["uri"] for s in one["host.apt_sources"]] == ["http://one.example/debian"]
    host("http://two.example/debian")
    two = record()
    assert two != one and two["sources.s"] == one["sources.s"]
    # A Debian guest's own suite and mirror are the ones fetched from.
    url = record('[guest]\nkind = "debian"\nmirror = "http://archive.example/debian"')
    assert [s["uri"] for s in url["host.apt_sources"]] == ["http://archive.example/debian"]
    # A tarball reads no apt sources, so none are hashed.
    tarball = record("", f'url = "https://example.org/a.tar.gz"\nsha256 = "{"a" * 64}"')
    assert not any(k.startswith(("host.", "guest.")) for k in tarball)
