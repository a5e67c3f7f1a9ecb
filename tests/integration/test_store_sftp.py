"""The cluster's store over sftp://, against OpenSSH's real sshd and
sftp-server on loopback (tests/integration/sshd.py): objects published and
fetched by hash as through a shared folder, a damaged object refused, the
server's key checked against ~/.ssh/known_hosts as ssh does (fsspec alone
accepts any key), every failure to connect one line, and a connection that
died replaced by a new one, and connections the server turns away
(MaxStartups) tried again without a traceback."""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from revive.cluster import store as st
from revive.core.errors import UserError

from .conftest import REPO, processes_mentioning
from .sshd import Sshd, drop_sftp_connections

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def server():
    # Not under pytest's temporary folder: its parents are private to us,
    # and sshd runs as another user when the tests run as root.
    folder = Path(tempfile.mkdtemp(prefix="revive-sftp-"))
    os.chmod(folder, 0o755)
    sshd = Sshd(folder / "sshd").start()
    sshd.store = folder / "store"
    sshd.url = sshd.serve(sshd.store)
    try:
        yield sshd
    finally:
        drop_sftp_connections()
        sshd.stop()
        left = processes_mentioning(str(folder))
        shutil.rmtree(folder, ignore_errors=True)
    assert left == [], left


@pytest.fixture
def home(server, tmp_path, monkeypatch):
    """A user's ~/.ssh: the key that logs in, the server in known_hosts."""
    drop_sftp_connections()
    ssh = server.client_home(tmp_path / "home")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    yield ssh
    drop_sftp_connections()


def test_objects_go_up_once_and_come_back_verified(server, home, tmp_path):
    store = st.Store(server.url)
    assert type(store.fs).__name__ == "SFTPFileSystem"
    big = tmp_path / "ram"
    big.write_bytes(os.urandom(6 << 20) + bytes(8 << 20) + os.urandom(3 << 20))
    h = st._hash_small(big)
    assert store.put_file(big, h) is True
    assert store.put_file(big, h) is False                 # already there
    on_server = server.store / "objects" / h[:2] / h
    assert on_server.read_bytes() == big.read_bytes()
    assert list((server.store / "tmp").iterdir()) == []     # renamed, none partial
    # A worker's cache: fetched through sftp, checked, laid out.
    files = {"snapshot/ram": {"sha256": h, "size": big.stat().st_size, "mode": 0o644},
             "keys/id_ed25519": {"sha256": store.put_bytes(b"k" * 10), "size": 10,
                                 "mode": 0o600}}
    manifest = store.put_bytes(st.manifest_bytes(files))
    cache = st.Cache(tmp_path / "cache", limit=1 << 30)
    got = st.read_manifest(cache.get_bytes(st.Store(server.url), manifest))
    dest = cache.layout(store, got, tmp_path / "artifacts")
    assert (dest / "snapshot/ram").read_bytes() == big.read_bytes()
    # The zero run came back as a hole, as from a shared folder.
    assert (dest / "snapshot/ram").stat().st_blocks * 512 < 12 << 20
    assert (dest / "keys/id_ed25519").stat().st_mode & 0o777 == 0o600


def test_a_file_that_is_not_its_hash_is_not_published(server, home, tmp_path):
    store = st.Store(server.url)
    f = tmp_path / "changed"
    f.write_bytes(b"changed after its meta.json was written")
    with pytest.raises(UserError, match="does not match the sha256"):
        store.put_file(f, "1" * 64)
    assert not store.has("1" * 64)
    assert list((server.store / "tmp").iterdir()) == []


def test_a_damaged_object_in_the_store_is_refused(server, home, tmp_path):
    store = st.Store(server.url)
    data = os.urandom(200_000)
    h = store.put_bytes(data)
    obj = server.store / "objects" / h[:2] / h
    obj.write_bytes(os.urandom(200_000))                    # same size, other bytes
    cache = st.Cache(tmp_path / "cache", limit=1 << 30)
    with pytest.raises(UserError, match="does not match its sha256 after two fetches"):
        cache.get(store, h, len(data))
    assert not cache.path(h).exists() and list(cache.tmp.iterdir()) == []


def test_an_unknown_host_is_refused_in_one_line(server, home):
    (home / "known_hosts").write_text("")
    with pytest.raises(UserError) as err:
        st.Store(server.url)
    message = str(err.value)
    assert message.startswith("config.toml: [cluster] store: cannot connect to sftp://")
    assert f"[127.0.0.1]:{server.port} is not in {home / 'known_hosts'}" in message
    assert "\n" not in message


def test_another_key_for_the_host_is_refused(server, home, tmp_path):
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f",
                    str(tmp_path / "impostor")], check=True)
    kind, blob = (tmp_path / "impostor.pub").read_text().split()[:2]
    (home / "known_hosts").write_text(f"[127.0.0.1]:{server.port} {kind} {blob}\n")
    with pytest.raises(UserError, match="offers a ssh-ed25519 key that .* does not list"):
        st.Store(server.url)


def test_no_key_that_logs_in_is_one_line(server, home):
    (home / "id_ed25519").unlink()
    with pytest.raises(UserError, match=r"^config.toml: \[cluster\] store: cannot connect "
                                        r"to sftp://.*: .*a key the server accepts in ~/.ssh"):
        st.Store(server.url)


def test_a_connection_that_died_is_replaced(server, home):
    first = st.Store(server.url)
    h = first.put_bytes(b"before")
    first.fs.client.get_transport().close()                  # e.g. the server restarted
    again = st.Store(server.url)
    assert again.fs is not first.fs
    assert again.has(h) and again.put_bytes(b"after")


CONNECT_AT_ONCE = """
import json, sys, threading
from revive.cluster import store as st
from revive.core.errors import UserError
results = []
def connect():
    try:
        results.append(st.Store(sys.argv[1]).has("2" * 64))
    except UserError as err:
        results.append(str(err))
threads = [threading.Thread(target=connect) for _ in range(8)]
for t in threads:
    t.start()
for t in threads:
    t.join(60)
print(json.dumps(results))
"""


def test_connections_turned_away_are_tried_again_quietly(server, home):
    """sshd closes unauthenticated connections beyond MaxStartups before its
    banner; `doit -n 8` and the workers connect at once. Without trying
    again, 7 of 8 failed against MaxStartups 1, and paramiko's thread
    printed a traceback for each. In a process of its own, as in doit (under
    pytest, log records go to pytest's handler instead of stderr)."""
    busy = Sshd(server.folder.parent / "busy", extra=("MaxStartups 2",)).start()
    url = server.url.replace(f":{server.port}/", f":{busy.port}/")
    (busy.folder / "authorized_keys").write_text((server.folder / "client_key.pub").read_text())
    (home / "known_hosts").write_text(busy.host_key_line())
    try:
        proc = subprocess.run([sys.executable, "-c", CONNECT_AT_ONCE, url], cwd=REPO,
                              capture_output=True, text=True, timeout=120)
    finally:
        busy.stop()
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == [False] * 8, proc.stdout
    assert proc.stderr == ""
    log = (busy.folder / "sshd.log").read_text()
    assert "exceeded MaxStartups" in log or "drop connection" in log, log[-2000:]


def test_a_server_that_stops_answering_fails_the_fetch_in_one_line(server, home, tmp_path,
                                                                   monkeypatch):
    """Every wait on the store has a deadline: a server whose session
    processes are stopped mid-way (a hung host) ends the fetch in one line
    after SFTP_TIMEOUT, nothing partial left in the cache."""
    monkeypatch.setattr(st, "SFTP_TIMEOUT", 2)
    store = st.Store(server.url)
    data = os.urandom(3 << 20)
    h = store.put_bytes(data)
    stopped = server.sessions()
    assert stopped
    cache = st.Cache(tmp_path / "cache", limit=1 << 30)
    for pid in stopped:
        os.kill(pid, signal.SIGSTOP)
    try:
        start = time.monotonic()
        with pytest.raises(UserError, match=r"^store sftp://.*: no answer for 2 s while "
                                            r"fetching object [0-9a-f]{12}; check"):
            cache.get(store, h, len(data))
        assert time.monotonic() - start < 15
    finally:
        for pid in stopped:
            os.kill(pid, signal.SIGCONT)
    assert not cache.path(h).exists() and list(cache.tmp.iterdir()) == []
