"""Content-addressed objects: published once to a store every host reads,
fetched by sha256 into each worker's own cache, verified, reused.

Store layout (any fsspec URL: file://, sftp://, s3://…)::

    ROOT/objects/ab/abcdef…   one object per sha256, written complete
    ROOT/tmp/…                uploads in progress, renamed into objects/

A *bundle* is everything a revive needs, as a small JSON manifest
(artifacts-relative path → sha256, size, mode), itself an object. A reader
never sees a partial object: uploads go to a temporary name and are renamed,
and the upload's bytes are hashed on the way, so a file that no longer
matches the hash its meta.json claims is refused instead of published.

The worker cache keeps verified objects in ``objects/`` with a ``.ok``
stamp beside each (size, mtime, inode at verification; its mtime is the
last use, for LRU eviction). Downloads land in ``tmp/`` and are renamed only
after their hash matched. An object a running build has laid out (hard
link, so its link count is above one) is never evicted.
"""

import contextlib
import fcntl
import functools
import gzip
import hashlib
import io
import json
import os
import random
import re
import shutil
import stat
import tarfile
import threading
import time
import uuid
from pathlib import Path

from ..core.errors import UserError, quiet_paramiko

CHUNK = 1 << 20
_ZERO = bytes(CHUNK)
_SHA = re.compile(r"^[0-9a-f]{64}$")
MANIFEST_KIND = "revive-bundle/1"


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _check_sha(sha: str) -> str:
    if not _SHA.match(sha or ""):
        raise UserError(f"not a sha256: {sha!r}")
    return sha


# sshd turns away unauthenticated connections beyond MaxStartups (10 by
# default, then at random): `doit -n 8` and two workers connecting at once
# can meet it. Those are tried again, with jittered backoff, this long.
CONNECT_PATIENCE = 20
# An sftp server that does not answer for this long (to connect, or to any
# request of a transfer) fails the publish or the fetch in one line.
SFTP_TIMEOUT = 30


def _turned_away(err: Exception) -> bool:
    """A connection the server closed before its banner: MaxStartups."""
    return isinstance(err, (EOFError, ConnectionResetError)) or \
        "protocol banner" in str(err)


@functools.lru_cache(maxsize=None)
def _known_hosts_policy():
    """One policy object: fsspec keeps a filesystem per (URL, options,
    thread), and a new object per Store would open, and keep, a new SSH
    connection for every build a worker runs.

    sftp:// connects like ssh does: the server's key must be the one in
    ~/.ssh/known_hosts (fsspec's default accepts any key, and so any host
    that answers in the server's place). The client loads no host keys, so
    paramiko asks this policy about every key it is shown."""
    import paramiko

    class KnownHosts(paramiko.MissingHostKeyPolicy):
        def missing_host_key(self, client, hostname, key):
            known = paramiko.HostKeys()
            path = Path(os.path.expanduser("~/.ssh/known_hosts"))
            if path.is_file():
                known.load(str(path))
            entry = known.lookup(hostname)    # "[host]:port" when not port 22
            if entry is None:
                raise paramiko.SSHException(
                    f"{hostname} is not in {path}; connect once with ssh to "
                    "check its key and add it")
            if entry.get(key.get_name()) != key:
                raise paramiko.SSHException(
                    f"{hostname} offers a {key.get_name()} key that {path} does "
                    "not list for it (a changed host, or another one in its place)")

    return KnownHosts()


def _connect(url: str, sftp: bool):
    """fsspec's filesystem for ``url``; for sftp, fsspec's cached connection
    if it is still alive, the host key checked, and every wait bounded."""
    import fsspec
    if not sftp:
        return fsspec.core.url_to_fs(url)
    options = {"host_key_policy": _known_hosts_policy(), "timeout": SFTP_TIMEOUT,
               "banner_timeout": SFTP_TIMEOUT, "auth_timeout": SFTP_TIMEOUT}
    fs, root = fsspec.core.url_to_fs(url, **options)
    transport = fs.client.get_transport()
    if not (transport and transport.is_active()):
        # The cached connection died (e.g. the server restarted): anew.
        type(fs).clear_instance_cache()
        fs, root = fsspec.core.url_to_fs(url, **options)
    fs.ftp.get_channel().settimeout(SFTP_TIMEOUT)
    return fs, root


def _connect_error(url: str, err: Exception) -> UserError:
    reason = str(err) or type(err).__name__
    if "authentication" in reason.lower():
        reason += ("; this user needs a key the server accepts in ~/.ssh "
                   "(id_ed25519, id_rsa, …) or in ssh-agent")
    elif _turned_away(err):
        reason += (f" (turned away for {CONNECT_PATIENCE} s: raise the server's "
                   "sshd MaxStartups, or run fewer doit -n processes)")
    return UserError(f"config.toml: [cluster] store: cannot connect to {url}: {reason}")


class Store:
    """The shared store. ``url`` is an fsspec URL; paramiko backs sftp://
    (keys from ~/.ssh or ssh-agent, the host in ~/.ssh/known_hosts)."""

    def __init__(self, url: str):
        self.url = url
        protocol = url.split("://", 1)[0] if "://" in url else "file"
        sftp = protocol in ("sftp", "ssh")
        if sftp:
            quiet_paramiko()
        deadline = time.monotonic() + CONNECT_PATIENCE
        delay = 0.1
        while True:
            try:
                self.fs, self.root = _connect(url, sftp)
                break
            except (ImportError, ValueError) as err:
                raise UserError(f"config.toml: [cluster] store: {url!r} cannot be opened: "
                                f"{err}") from None
            except Exception as err:            # paramiko's and the socket's errors
                if not (_turned_away(err) and time.monotonic() + delay < deadline):
                    raise _connect_error(url, err) from None
                time.sleep(delay * random.uniform(0.5, 1.5))
                delay = min(delay * 2, 2.0)
        self.root = self.root.rstrip("/")
        self._local = type(self.fs).__name__ == "LocalFileSystem"

    def path(self, sha: str) -> str:
        sha = _check_sha(sha)
        return f"{self.root}/objects/{sha[:2]}/{sha}"

    def has(self, sha: str, size: "int | None" = None) -> bool:
        try:
            info = self.fs.info(self.path(sha))
        except FileNotFoundError:
            return False
        return size is None or info.get("size") == size

    def put_file(self, path: Path, sha: str, size: "int | None" = None) -> bool:
        """Publish ``path`` as object ``sha`` unless the store has it; return
        whether bytes were uploaded. Refuses a file whose bytes do not hash to
        ``sha`` (it changed after its meta.json was written)."""
        size = Path(path).stat().st_size if size is None else size
        if self.has(sha, size):
            return False
        with open(path, "rb") as src:
            self._upload(src, sha, what=str(path))
        return True

    def put_bytes(self, data: bytes) -> str:
        sha = sha256_bytes(data)
        if not self.has(sha, len(data)):
            self._upload(io.BytesIO(data), sha, what=f"object {sha[:12]}")
        return sha

    def _upload(self, src, sha: str, what: str) -> None:
        final = self.path(sha)
        tmp = f"{self.root}/tmp/{sha}.{uuid.uuid4().hex}"
        self.fs.makedirs(f"{self.root}/tmp", exist_ok=True)
        self.fs.makedirs(final.rsplit("/", 1)[0], exist_ok=True)
        h = hashlib.sha256()
        try:
            with self.fs.open(tmp, "wb") as dst:
                if hasattr(dst, "set_pipelined"):       # paramiko's SFTPFile
                    dst.set_pipelined(True)
                _copy(src, dst, h, sparse=self._local)
            if h.hexdigest() != sha:
                raise UserError(f"{what}: its content does not match the sha256 its "
                                "metadata records (changed after it was made); rerun "
                                "the stage that made it")
            self.fs.mv(tmp, final)
        finally:
            with contextlib.suppress(FileNotFoundError, OSError):
                if self.fs.exists(tmp):
                    self.fs.rm(tmp)

    def open(self, sha: str):
        try:
            fh = self.fs.open(self.path(sha), "rb")
        except FileNotFoundError:
            raise UserError(f"store {self.url}: object {sha} is missing; rerun the "
                            "build from the submitting host so it is published") from None
        if hasattr(fh, "prefetch"):                     # paramiko's SFTPFile
            # paramiko waits for each 32 KiB request unless told otherwise:
            # 256 MiB took 59 s to fetch over loopback, 3.4 s prefetched
            # (uploads: 358 s against 3.7 s pipelined). The prefetch is the
            # default one, as paramiko's get() does: a bounded window
            # (max_concurrent_requests) lets the reader drain the requests in
            # flight, paramiko then takes it as finished and falls back to a
            # round trip per request (paramiko PR #2519; two workers fetching
            # at once took 63-78 s instead of 6.5 s). Memory stays bounded:
            # responses leave the channel only as they are read, and SSH's
            # channel window holds back the rest.
            fh.prefetch()
        return fh


def _copy(src, dst, h, sparse: bool) -> int:
    """Copy in chunks, hashing; all-zero chunks become holes when ``sparse``
    (a snapshot's RAM file is mostly zeros and must stay small on disk)."""
    total = 0
    hole = False
    while chunk := src.read(CHUNK):
        h.update(chunk)
        total += len(chunk)
        if sparse and chunk == _ZERO[:len(chunk)]:
            dst.seek(len(chunk), os.SEEK_CUR)
            hole = True
            continue
        dst.write(chunk)
        hole = False
    if hole:
        dst.truncate(total)
    return total


# -- bundles -------------------------------------------------------------

def bundle_files(artifacts: Path, wanted: "dict[str, str | None]") -> "dict[str, dict]":
    """The manifest entries of ``wanted`` (artifacts-relative path → the
    sha256 a stage already recorded, or None: only those small files are
    hashed here). What a revive needs is not this module's business:
    ``revive.machine.revive_files`` says."""
    files = {}
    for rel, sha in wanted.items():
        path = artifacts / rel
        st = path.stat()
        files[rel] = {"sha256": sha or _hash_small(path), "size": st.st_size,
                      "mode": st.st_mode & 0o777}
    return files


def _hash_small(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def manifest_bytes(files: "dict[str, dict]") -> bytes:
    return json.dumps({"kind": MANIFEST_KIND, "files": files}, sort_keys=True,
                      indent=1).encode() + b"\n"


def publish_bundle(store: Store, artifacts: Path,
                   wanted: "dict[str, str | None]") -> "tuple[str, int]":
    """Upload what the store lacks of ``wanted`` (as ``bundle_files``
    takes it); return (manifest sha256, bytes uploaded)."""
    files = bundle_files(artifacts, wanted)
    sent = 0
    for rel, f in files.items():
        if store.put_file(artifacts / rel, f["sha256"], f["size"]):
            sent += f["size"]
    return store.put_bytes(manifest_bytes(files)), sent


def read_manifest(data: bytes) -> "dict[str, dict]":
    try:
        doc = json.loads(data)
        files = doc["files"]
        assert doc["kind"] == MANIFEST_KIND
    except (ValueError, KeyError, TypeError, AssertionError):
        raise UserError("the bundle manifest in the store is not one revive wrote") from None
    for rel, f in files.items():
        parts = Path(rel).parts
        if rel.startswith("/") or ".." in parts or not parts:
            raise UserError(f"the bundle manifest names an unsafe path {rel!r}")
        _check_sha(f["sha256"])
    return files


# -- sources -------------------------------------------------------------

def pack_sources(folders: "dict[str, Path]", dest: Path) -> str:
    """One gzip tarball of the build's input folders (``NAME/…`` per share),
    byte-identical for identical inputs; returns its sha256."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}")
    with open(tmp, "wb") as raw, \
            gzip.GzipFile(filename="", fileobj=raw, mode="wb", mtime=0, compresslevel=6) as gz, \
            tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for share in sorted(folders):
            _add_tree(tar, Path(folders[share]), share)
    os.replace(tmp, dest)
    return _hash_small(dest)


def _add_tree(tar: tarfile.TarFile, root: Path, arcroot: str) -> None:
    def entry(path: Path, arcname: str) -> None:
        info = tar.gettarinfo(str(path), arcname)
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        info.mode &= 0o777
        info.pax_headers = {}
        if info.isreg():
            with open(path, "rb") as fh:
                tar.addfile(info, fh)
        elif info.isdir() or info.issym():
            tar.addfile(info)
        # sockets, fifos, devices: not build inputs; left out

    entry(root, arcroot)
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        rel = Path(dirpath).relative_to(root)
        for name in sorted(dirnames + filenames):
            entry(Path(dirpath) / name, str(Path(arcroot) / rel / name))


def unpack(tarball: "Path | bytes", dest: Path, what: str) -> None:
    """Unpack a tarball from another host: tarfile's ``data`` filter refuses
    absolute names, ``..``, links out of ``dest`` and device files, and
    clears setuid/setgid bits and group/other write."""
    dest.mkdir(parents=True, exist_ok=True)
    src = io.BytesIO(tarball) if isinstance(tarball, bytes) else open(tarball, "rb")
    try:
        with tarfile.open(fileobj=src, mode="r:*") as tar:
            tar.extractall(dest, filter="data")
    except (tarfile.TarError, OSError, EOFError) as err:
        raise UserError(f"{what}: refused: {err}") from None
    finally:
        src.close()


# -- what a build sends back ----------------------------------------------

def publish_tree(store: Store, folder: Path) -> "list[dict]":
    """Put every file under ``folder`` (a build's outputs and logs, made by
    collect_outputs and revive: files and folders only) into the store by
    sha256, streamed; return the entries (path, type, mode, sha256, size)
    that travel back through Dask instead of the bytes."""
    entries = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames.sort()
        here = Path(dirpath).relative_to(folder)
        for name in sorted(dirnames + filenames):
            path = Path(dirpath) / name
            info = os.lstat(path)
            rel = (here / name).as_posix()
            if stat.S_ISDIR(info.st_mode):
                entries.append({"path": rel, "type": "dir", "mode": info.st_mode & 0o777})
            elif stat.S_ISREG(info.st_mode):
                sha = _hash_small(path)
                store.put_file(path, sha, info.st_size)
                entries.append({"path": rel, "type": "file", "mode": info.st_mode & 0o777,
                                "sha256": sha, "size": info.st_size})
    return entries


def fetch_tree(store: Store, entries: "list[dict]", dest: Path, what: str) -> None:
    """Lay out ``entries`` (from ``publish_tree`` on another host) under
    ``dest``, each file fetched from the store and checked against its
    sha256 and size, with the checks of a local collection
    (core/collect.py): relative names without '..', files and folders only
    (no links of any kind, no devices), no setuid/setgid/sticky or
    group/other write, the owner can read, and the total must fit."""
    from ..core.collect import FILE_MASK, OWNER_DIR, OWNER_FILE, check_output_name
    from ..core.space import describe_filesystem
    if not isinstance(entries, list):
        raise UserError(f"{what}: refused: not a list of files")
    plan = []
    for e in entries:
        try:
            rel, kind, mode = e["path"], e["type"], int(e["mode"])
            why = check_output_name(rel) if isinstance(rel, str) else "not a name"
            if not why and Path(rel).as_posix() != rel:
                why = "not a plain relative name"
            if not why and kind not in ("dir", "file"):
                why = f"a {kind} (revive copies only files and folders)"
            if not why and kind == "file":
                _check_sha(e["sha256"])
                if not isinstance(e["size"], int) or e["size"] < 0:
                    why = "no valid size"
        except (KeyError, TypeError, ValueError, UserError):
            why = "a malformed entry"
            rel = str(e)[:80]
        if why:
            raise UserError(f"{what}: refused {rel!r}: {why}")
        plan.append((rel, kind, (mode & FILE_MASK) | (OWNER_DIR if kind == "dir" else OWNER_FILE),
                     e.get("sha256"), e.get("size", 0)))
    dest.mkdir(parents=True, exist_ok=True)
    vfs = os.statvfs(dest)
    need, free = sum(p[4] for p in plan), vfs.f_bavail * vfs.f_frsize
    if need + (1 << 20) > free:
        raise UserError(f"{what}: needs {need >> 20} MiB but only {free >> 20} MiB is free on "
                        f"{describe_filesystem(dest)}; free space there and rerun")
    try:
        for rel, kind, mode, sha, size in plan:
            target = dest / rel
            if kind == "dir":
                target.mkdir(mode=OWNER_DIR, parents=True, exist_ok=True)
                continue
            target.parent.mkdir(mode=OWNER_DIR, parents=True, exist_ok=True)
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            h = hashlib.sha256()
            with os.fdopen(fd, "wb") as dst, store.open(sha) as src:
                got = _copy(src, dst, h, sparse=True)
                os.fchmod(dst.fileno(), mode)
            if h.hexdigest() != sha or got != size:
                raise UserError(f"{what}: {rel} from store {store.url} does not match its "
                                "sha256; run the build again")
        for rel, kind, mode, _, _ in reversed(plan):
            if kind == "dir":
                os.chmod(dest / rel, mode)
    except OSError as err:
        raise UserError(f"{what}: cannot lay it out in {dest}: {err}") from None


# -- the worker's cache ----------------------------------------------------

class Cache:
    """Objects fetched by hash, verified, kept up to ``limit`` bytes on disk."""

    def __init__(self, folder: Path, limit: int):
        self.folder = Path(folder)
        self.limit = limit
        self.objects = self.folder / "objects"
        self.tmp = self.folder / "tmp"
        self.objects.mkdir(parents=True, exist_ok=True)
        self.tmp.mkdir(parents=True, exist_ok=True)
        self._guard = threading.Lock()
        self._locks: "dict[str, threading.Lock]" = {}

    def path(self, sha: str) -> Path:
        return self.objects / _check_sha(sha)

    @contextlib.contextmanager
    def _locked(self, name: str):
        """One fetcher per object and one evictor, across threads and processes."""
        with self._guard:
            lock = self._locks.setdefault(name, threading.Lock())
        with lock, open(self.folder / f".lock-{name}", "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def get(self, store: Store, sha: str, size: "int | None" = None) -> Path:
        """The verified local copy of object ``sha``, fetched if needed."""
        path = self.path(sha)
        with self._locked(sha[:16]):
            if self._valid(path, sha, size):
                self._touch(path)
                return path
            for attempt in (1, 2):
                self._fetch(store, sha, size, path)
                if self._valid(path, sha, size):
                    self._touch(path)
                    return path
        raise UserError(f"store {store.url}: object {sha} does not match its sha256 "
                        "after two fetches; publish it again from the submitting host")

    def get_bytes(self, store: Store, sha: str) -> bytes:
        return self.get(store, sha).read_bytes()

    def _stamp_path(self, path: Path) -> Path:
        return path.with_name(path.name + ".ok")

    def _valid(self, path: Path, sha: str, size: "int | None") -> bool:
        """True for a complete, verified object. The hash is checked again
        whenever the file is not exactly the one verified (size, mtime,
        inode); a mismatch removes it so the caller fetches it again."""
        try:
            st = path.stat()
        except FileNotFoundError:
            return False
        if size is not None and st.st_size != size:
            self._drop(path)
            return False
        stamp = [st.st_size, st.st_mtime_ns, st.st_ino]
        try:
            if json.loads(self._stamp_path(path).read_text()) == stamp:
                return True
        except (OSError, ValueError):
            pass
        if _hash_small(path) != sha:
            self._drop(path)
            return False
        self._stamp_path(path).write_text(json.dumps(stamp))
        return True

    def _drop(self, path: Path) -> None:
        for p in (path, self._stamp_path(path)):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()

    def _touch(self, path: Path) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.utime(self._stamp_path(path))

    def _fetch(self, store: Store, sha: str, size: "int | None", path: Path) -> None:
        self.evict(need=size or 0)
        tmp = self.tmp / f"{sha}.{os.getpid()}.{threading.get_ident()}"
        h = hashlib.sha256()
        try:
            try:
                with store.open(sha) as src, open(tmp, "wb") as dst:
                    _copy(src, dst, h, sparse=True)
            except TimeoutError:
                raise UserError(f"store {store.url}: no answer for {SFTP_TIMEOUT} s while "
                                f"fetching object {sha[:12]}; check the store's server") from None
            if h.hexdigest() != sha:
                return     # a damaged transfer: nothing is kept, the caller retries
            os.chmod(tmp, 0o644)
            st = tmp.stat()
            os.replace(tmp, path)
            self._stamp_path(path).write_text(json.dumps([st.st_size, st.st_mtime_ns, st.st_ino]))
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()

    def usage(self) -> int:
        return sum(p.stat().st_blocks * 512 for p in self.objects.iterdir()
                   if _SHA.match(p.name))

    def evict(self, need: int = 0) -> "list[str]":
        """Remove least recently used objects until ``need`` more bytes fit
        under the limit; objects in use (laid out by a build) stay."""
        removed = []
        with self._locked("evict"):
            entries = []
            for p in self.objects.iterdir():
                if not _SHA.match(p.name):
                    continue
                try:
                    st = p.stat()
                    used = self._stamp_path(p).stat().st_mtime
                except FileNotFoundError:
                    used = 0.0
                    st = p.stat()
                entries.append((used, p, st))
            total = sum(st.st_blocks * 512 for _, _, st in entries)
            for used, p, st in sorted(entries, key=lambda e: e[0]):
                if total + need <= self.limit:
                    break
                if st.st_nlink > 1:
                    continue
                self._drop(p)
                total -= st.st_blocks * 512
                removed.append(p.name)
        return removed

    def layout(self, store: Store, files: "dict[str, dict]", dest: Path) -> Path:
        """An artifacts folder of hard links to verified objects (copies for
        private files such as the SSH key, which keep their mode)."""
        for rel, f in sorted(files.items()):
            obj = self.get(store, f["sha256"], f["size"])
            target = dest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            if f["mode"] & 0o077 == 0:
                shutil.copyfile(obj, target)
                os.chmod(target, f["mode"])
            else:
                os.link(obj, target)
        return dest


def parse_size(text: str) -> int:
    m = re.match(r"^(\d+(?:\.\d+)?)\s*([KMGT]?)i?B?$", str(text).strip(), re.I)
    if not m:
        raise ValueError(f"{text!r} is not a size like 20G")
    return int(float(m.group(1)) * 1024 ** " KMGT".index(m.group(2).upper() or " "))

