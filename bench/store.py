#!/usr/bin/env python3
"""Publishing and fetching one snapshot-sized object through the cluster's
store: a shared folder (file://) against sftp:// to OpenSSH's sshd on
loopback (the one tests/integration/sshd.py runs, from Debian's packages).

For sftp it prints, per direction: revive's store (streamed with its sha256
computed on the way, uploads pipelined, downloads prefetched with at most
64 requests in flight), the same stream without pipelining and prefetch (how
an fsspec file object behaves unless told: each 32 KiB request waits for
its answer), and paramiko's own bulk put/get (fsspec's put_file/get_file,
which hash nothing) as the reference a user could reach for instead.

    .venv/bin/python bench/store.py [--mib 256] [--used 25] [--no-plain]

Then two worker processes fetch the object at once into caches of their
own (a bounded prefetch window stalled one of them for a minute).

The object is like a RAM file: --used percent random bytes, the rest zeros.
On loopback the round trips are short; across a network the unpipelined
stream is slower still (one round trip per 32 KiB).
"""

import argparse
import hashlib
import multiprocessing
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from revive.cluster import store as st  # noqa: E402
from tests.integration.sshd import Sshd, drop_sftp_connections  # noqa: E402


def timed(fn) -> float:
    start = time.monotonic()
    fn()
    return time.monotonic() - start


def stream_unpipelined(store: st.Store, src: Path, sha: str, dest: Path) -> "tuple[float, float]":
    """The store's copy loop on plain fsspec file objects."""
    remote = f"{store.root}/plain/{sha}"
    store.fs.makedirs(f"{store.root}/plain", exist_ok=True)

    def up():
        with open(src, "rb") as fh, store.fs.open(remote, "wb") as out:
            st._copy(fh, out, hashlib.sha256(), sparse=False)

    def down():
        with store.fs.open(remote, "rb") as fh, open(dest, "wb") as out:
            st._copy(fh, out, hashlib.sha256(), sparse=True)

    return timed(up), timed(down)


def _fetch_into(url: str, sha: str, size: int, cache: str, out) -> None:
    start = time.monotonic()
    st.Cache(Path(cache), limit=1 << 40).get(st.Store(url), sha, size)
    out.put(time.monotonic() - start)


def fetch_at_once(url: str, sha: str, size: int, folder: Path, n: int = 2) -> "list[float]":
    """n worker processes, each with its own cache, fetching one object at
    once (as two workers do for a snapshot both have to revive)."""
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_fetch_into, args=(url, sha, size, str(folder / f"w{i}"), out))
             for i in range(n)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(600)
    return sorted(out.get(timeout=1) for _ in procs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mib", type=int, default=256)
    parser.add_argument("--used", type=int, default=25, help="percent of random bytes")
    parser.add_argument("--no-plain", action="store_true",
                        help="skip the unpipelined stream (minutes for 256 MiB)")
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="revive-bench-store-"))
    os.chmod(folder, 0o755)
    sshd = None
    try:
        obj = folder / "ram"
        used = args.mib * args.used // 100
        with open(obj, "wb") as fh:
            for _ in range(used):
                fh.write(os.urandom(1 << 20))
            fh.truncate(args.mib << 20)
        sha = st._hash_small(obj)

        sshd = Sshd(folder / "sshd").start()
        sshd.client_home(folder / "home")
        os.environ["HOME"] = str(folder / "home")
        os.environ.pop("SSH_AUTH_SOCK", None)
        (folder / "store-file").mkdir()
        stores = {"file": f"file://{folder / 'store-file'}",
                  "sftp": sshd.serve(folder / "store-sftp")}

        rows = []
        for name, url in stores.items():
            store = st.Store(url)
            cache = st.Cache(folder / f"cache-{name}", limit=1 << 40)
            up = timed(lambda: store.put_file(obj, sha))
            down = timed(lambda: cache.get(store, sha, obj.stat().st_size))
            rows.append((f"revive's store, {name}://", up, down))
            if name == "sftp":
                both = fetch_at_once(url, sha, obj.stat().st_size, folder / "at-once")
            if name == "sftp" and not args.no_plain:
                plain_up, plain_down = stream_unpipelined(store, obj, sha, folder / "plain-copy")
                rows.append(("same stream, not pipelined/prefetched", plain_up, plain_down))
                remote = f"{store.root}/bulk"
                bulk_up = timed(lambda: store.fs.put_file(str(obj), remote))
                bulk_down = timed(lambda: store.fs.get_file(remote, str(folder / "bulk-copy")))
                rows.append(("paramiko put/get (no hashing)", bulk_up, bulk_down))

        mib = args.mib
        print(f"one {mib} MiB object ({args.used}% random, the rest zeros), "
              f"sshd on loopback; peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024} MiB")
        print()
        print("| path | publish, s | MiB/s | fetch, s | MiB/s |")
        print("|---|---|---|---|---|")
        for label, up, down in rows:
            print(f"| {label} | {up:.2f} | {mib / up:.0f} | {down:.2f} | {mib / down:.0f} |")
        print()
        print(f"two worker processes fetching it from sftp:// at once: "
              f"{both[0]:.2f} s and {both[1]:.2f} s")
        revive = rows[1]
        if not args.no_plain:
            plain = rows[2]
            print()
            print(f"sftp, pipelined against not: publish {plain[1] / revive[1]:.1f}x, "
                  f"fetch {plain[2] / revive[2]:.1f}x faster")
    finally:
        if sshd:
            drop_sftp_connections()
            sshd.stop()
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
