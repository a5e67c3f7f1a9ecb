"""The content-addressed store and the worker cache, on a real local store
folder through fsspec: hashes refused and refetched, the LRU bound, objects
in use kept, partial files never used, unsafe tarballs refused."""

import hashlib
import json
import os
import re
from pathlib import Path

import pytest

from revive.cluster import store as st
from revive.config import parse
from revive.core.errors import UserError
from revive.machine import revive_files


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def store(tmp_path) -> st.Store:
    return st.Store(f"file://{tmp_path / 'store'}")


def test_put_uploads_once_and_refuses_a_file_that_is_not_its_hash(store, tmp_path):
    f = tmp_path / "a.bin"
    f.write_bytes(b"hello" * 1000)
    assert store.put_file(f, sha(f.read_bytes())) is True
    assert store.put_file(f, sha(f.read_bytes())) is False      # already there
    wrong = "0" * 64
    with pytest.raises(UserError, match="does not match the sha256"):
        store.put_file(f, wrong)
    assert not store.has(wrong)
    assert list((tmp_path / "store" / "tmp").iterdir()) == []    # no partial left


def test_sparse_zero_chunks_stay_holes(store, tmp_path):
    f = tmp_path / "ram"
    with open(f, "wb") as fh:
        fh.truncate(64 << 20)
    store.put_file(f, st._hash_small(f))
    obj = Path(store.path(st._hash_small(f)))
    assert obj.stat().st_size == 64 << 20
    assert obj.stat().st_blocks * 512 < 1 << 20


def test_fetch_verifies_and_a_damaged_store_object_is_refused(store, tmp_path):
    data = b"x" * 5000
    h = store.put_bytes(data)
    cache = st.Cache(tmp_path / "cache", limit=1 << 30)
    assert cache.get(store, h, len(data)).read_bytes() == data
    # The store's copy is damaged: a fresh cache refuses it (twice) in one line.
    Path(store.path(h)).write_bytes(b"y" * 5000)
    other = st.Cache(tmp_path / "cache2", limit=1 << 30)
    with pytest.raises(UserError, match="does not match its sha256 after two fetches"):
        other.get(store, h, len(data))
    assert not other.path(h).exists()
    assert list(other.tmp.iterdir()) == []


def test_a_damaged_cached_object_is_fetched_again(store, tmp_path):
    data = b"z" * 5000
    h = store.put_bytes(data)
    cache = st.Cache(tmp_path / "cache", limit=1 << 30)
    path = cache.get(store, h)
    os.chmod(path, 0o644)
    path.write_bytes(b"q" * 5000)            # same size, other bytes, new mtime
    again = cache.get(store, h, len(data))
    assert again.read_bytes() == data


def test_a_partial_file_is_never_used(store, tmp_path):
    data = os.urandom(300_000)
    h = store.put_bytes(data)
    cache = st.Cache(tmp_path / "cache", limit=1 << 30)
    # A fetch interrupted mid-way leaves its bytes only under tmp/ …
    (cache.tmp / f"{h}.123.456").write_bytes(data[:1000])
    # … and a truncated object (a crash between rename and stamp, then damage)
    cache.path(h).write_bytes(data[:1000])
    assert cache.get(store, h, len(data)).read_bytes() == data


def test_lru_eviction_keeps_the_bound_and_spares_objects_in_use(store, tmp_path):
    blobs = [os.urandom(100_000) for _ in range(4)]
    hashes = [store.put_bytes(b) for b in blobs]
    cache = st.Cache(tmp_path / "cache", limit=250_000)
    a = cache.get(store, hashes[0])
    os.link(a, tmp_path / "in-use")           # a running build's layout
    for h in hashes[1:]:
        cache.get(store, h)
    present = {p.name for p in cache.objects.iterdir() if not p.name.endswith(".ok")}
    assert hashes[0] in present                # in use: never evicted
    assert hashes[3] in present                # just fetched
    assert hashes[1] not in present            # least recently used went first
    assert cache.usage() <= 250_000 + 110_000  # the bound, plus the pinned one


def test_layout_links_objects_and_copies_the_private_key(store, tmp_path):
    files = {}
    for rel, data, mode in (("snapshot/ram", b"r" * 100, 0o644),
                            ("keys/id_ed25519", b"k" * 10, 0o600)):
        files[rel] = {"sha256": store.put_bytes(data), "size": len(data), "mode": mode}
    manifest = store.put_bytes(st.manifest_bytes(files))
    cache = st.Cache(tmp_path / "cache", limit=1 << 30)
    got = st.read_manifest(cache.get_bytes(store, manifest))
    dest = cache.layout(store, got, tmp_path / "artifacts")
    assert (dest / "snapshot/ram").stat().st_ino == cache.path(files["snapshot/ram"]["sha256"]).stat().st_ino
    assert (dest / "keys/id_ed25519").stat().st_mode & 0o777 == 0o600
    assert (dest / "keys/id_ed25519").stat().st_nlink == 1


def test_manifest_with_unsafe_paths_is_refused():
    bad = json.dumps({"kind": st.MANIFEST_KIND, "files": {
        "../etc/passwd": {"sha256": "a" * 64, "size": 1, "mode": 0o644}}}).encode()
    with pytest.raises(UserError, match="unsafe path"):
        st.read_manifest(bad)


def test_sources_tarball_is_deterministic_and_unpacks(tmp_path):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "f.txt").write_text("hi\n")
    (src / "run.sh").write_text("echo\n")
    os.chmod(src / "run.sh", 0o4755)
    os.symlink("sub/f.txt", src / "link")
    one = st.pack_sources({"src": src}, tmp_path / "one.tar.gz")
    two = st.pack_sources({"src": src}, tmp_path / "two.tar.gz")
    assert one == two
    st.unpack(tmp_path / "one.tar.gz", tmp_path / "out", "sources")
    assert (tmp_path / "out/src/sub/f.txt").read_text() == "hi\n"
    assert os.readlink(tmp_path / "out/src/link") == "sub/f.txt"
    assert (tmp_path / "out/src/run.sh").stat().st_mode & 0o7777 == 0o755   # no setuid


def test_results_travel_through_the_store_and_come_back_as_collected(store, tmp_path):
    src = tmp_path / "result"
    (src / "outputs" / "sub").mkdir(parents=True)
    (src / "log").write_text("the log\n")
    (src / "outputs" / "sub" / "tool").write_bytes(b"\0" * (3 << 20) + b"x")
    os.chmod(src / "outputs" / "sub" / "tool", 0o4777)
    (src / "outputs" / "empty").write_bytes(b"")
    os.symlink("/etc/passwd", src / "outputs" / "link")     # not produced by collect: left out
    entries = st.publish_tree(store, src)
    assert [e["path"] for e in entries] == ["log", "outputs", "outputs/empty", "outputs/sub",
                                            "outputs/sub/tool"]
    assert all(store.has(e["sha256"], e["size"]) for e in entries if e["type"] == "file")
    st.fetch_tree(store, entries, tmp_path / "back", "results")
    back = tmp_path / "back"
    assert (back / "log").read_text() == "the log\n"
    assert (back / "outputs/sub/tool").read_bytes() == b"\0" * (3 << 20) + b"x"
    assert (back / "outputs/sub/tool").stat().st_mode & 0o7777 == 0o755   # as collect does
    assert (back / "outputs/empty").read_bytes() == b""
    assert not (back / "outputs/link").exists()


@pytest.mark.parametrize("entry, why", [
    ({"path": "../evil", "type": "file"}, "without '..'"),
    ({"path": "/etc/evil", "type": "file"}, "relative"),
    ({"path": "a//b", "type": "file"}, "not a plain relative name"),
    ({"path": "link", "type": "symlink"}, "a symlink (revive copies only files and folders)"),
    ({"path": "dev", "type": "chr"}, "a chr"),
    ({"path": "f", "type": "file", "sha256": "nope"}, "malformed"),
])
def test_results_with_unsafe_entries_are_refused(store, tmp_path, entry, why):
    data = b"payload"
    full = {"mode": 0o644, "sha256": store.put_bytes(data), "size": len(data), **entry}
    with pytest.raises(UserError, match=f"^results: refused .*{re.escape(why)}"):
        st.fetch_tree(store, [full], tmp_path / "back", "results")
    assert not (tmp_path / "evil").exists()


def test_a_result_object_that_does_not_match_is_refused(store, tmp_path):
    data = b"payload"
    sha256 = store.put_bytes(data)
    Path(store.path(sha256)).write_bytes(b"tampered")
    with pytest.raises(UserError, match="does not match its sha256"):
        st.fetch_tree(store, [{"path": "f", "type": "file", "mode": 0o644, "sha256": sha256,
                               "size": len(data)}], tmp_path / "back", "results")


def test_bundle_lists_what_a_revive_needs_with_recorded_hashes(tmp_path):
    a = tmp_path / "artifacts"
    for rel, data in (("snapshot/disk.qcow2", b"d"), ("snapshot/ram", b"r"),
                      ("snapshot/state", b"s"), ("base.qcow2", b"b"),
                      ("payload/boot/vmlinuz", b"k"), ("payload/boot/initrd.img", b"i"),
                      ("keys/id_ed25519", b"key")):
        (a / rel).parent.mkdir(parents=True, exist_ok=True)
        (a / rel).write_bytes(data)
    (a / "base.json").write_text(json.dumps({"sha256": "b" * 64}))
    meta = {"files": {n: {"sha256": n[0] * 64, "size": 1} for n in ("disk.qcow2", "ram", "state")},
            "guest": "tiny"}
    (a / "snapshot/meta.json").write_text(json.dumps(meta))
    files = st.bundle_files(a, revive_files(a, meta))
    assert set(files) == {"snapshot/disk.qcow2", "snapshot/ram", "snapshot/state",
                          "snapshot/meta.json", "base.qcow2", "payload/boot/vmlinuz",
                          "payload/boot/initrd.img", "keys/id_ed25519"}
    # The big files carry the hashes their metadata recorded; not re-hashed.
    assert files["snapshot/ram"]["sha256"] == "r" * 64
    assert files["base.qcow2"]["sha256"] == "b" * 64


BASE = {"shares": {"x": {"guest": "/x", "mode": "rw"}}}


def test_cluster_config_and_the_scheduler_override(monkeypatch):
    raw = dict(BASE, cluster={"scheduler": "tcp://h:8786", "store": "file:///srv/s",
                              "insecure": True})
    assert parse(raw, Path("/p/config.toml")).cluster.scheduler == "tcp://h:8786"
    monkeypatch.setenv("REVIVE_SCHEDULER", "tcp://other:9000")
    assert parse(raw, Path("/p/config.toml")).cluster.scheduler == "tcp://other:9000"
    monkeypatch.setenv("REVIVE_SCHEDULER", "local")
    assert parse(raw, Path("/p/config.toml")).cluster is None
    assert parse(BASE, Path("/p/config.toml")).cluster is None


@pytest.mark.parametrize("table, message", [
    ({"scheduler": "h:8786", "store": "file:///s"}, r"\[cluster\] scheduler: 'h:8786'"),
    ({"scheduler": "tcp://h:1", "store": "/srv/s"}, r"\[cluster\] store: '/srv/s' must be a URL"),
    ({"store": "file:///s"}, r"\[cluster\] scheduler: missing"),
    ({"scheduler": "tcp://h:1", "store": "file:///s", "x": 1}, r"\[cluster\] x: unknown key"),
])
def test_cluster_config_mistakes_are_one_line(table, message, monkeypatch):
    monkeypatch.delenv("REVIVE_SCHEDULER", raising=False)
    with pytest.raises(UserError, match=message) as err:
        parse(dict(BASE, cluster=table), Path("/p/config.toml"))
    assert "\n" not in str(err.value)


def test_scheduler_override_without_a_cluster_table(monkeypatch):
    monkeypatch.setenv("REVIVE_SCHEDULER", "tcp://h:1")
    with pytest.raises(UserError, match="has no \\[cluster\\] table"):
        parse(BASE, Path("/p/config.toml"))
