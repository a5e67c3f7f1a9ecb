"""OpenSSH's sshd on loopback, for stores reached over sftp://.

The host need not have openssh-server installed (and setup.sh does not
install it: that would start a server on port 22 on the user's machine).
Debian's own packages are fetched with `apt-get download` into the
download cache once, unpacked with dpkg-deb, and sshd runs from there as
a user who is not root: sshd then needs no privilege-separation user, and
it can only log in that user, with one key.
"""

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from .conftest import REPO

PACKAGES = ("openssh-server", "openssh-sftp-server")
# Linked by bookworm's sshd, not installed on a host without openssh-server;
# later releases dropped it.
OPTIONAL = ("libwrap0",)
USER = "revive-sftp"


def unpacked(cache: Path = REPO / "artifacts" / "cache") -> Path:
    """The unpacked packages' root folder (usr/sbin/sshd inside)."""
    root = cache / "host-openssh"
    if (root / "usr" / "sbin" / "sshd").is_file():
        return root
    cache.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".host-openssh.", dir=cache))
    try:
        subprocess.run(["apt-get", "download", *PACKAGES], cwd=work, check=True,
                       capture_output=True)
        for name in OPTIONAL:
            subprocess.run(["apt-get", "download", name], cwd=work, capture_output=True)
        for deb in sorted(work.glob("*.deb")):
            subprocess.run(["dpkg-deb", "-x", str(deb), str(work / "root")], check=True)
        os.chmod(work, 0o755)
        try:
            os.rename(work / "root", root)
        except OSError:          # another process unpacked it meanwhile
            pass
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return root


def login_user() -> pwd.struct_passwd:
    """Who sshd runs as and logs in: a throwaway user under root (not the
    unprivileged test's user, whose processes that test kills), else us."""
    if os.geteuid() != 0:
        return pwd.getpwuid(os.geteuid())
    try:
        return pwd.getpwnam(USER)
    except KeyError:
        subprocess.run(["useradd", "--create-home", "--shell", "/bin/sh", USER], check=True)
        return pwd.getpwnam(USER)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Sshd:
    """sshd -D on 127.0.0.1:port serving sftp, its files in ``folder``
    (which the login user owns); ``client_key`` logs in; ``extra`` lines
    go to its sshd_config. ``address`` and ``wrap`` (an argv prefix, e.g.
    to run it in a network namespace: netns.Net.argv) place it elsewhere."""

    def __init__(self, folder: Path, extra: "tuple[str, ...]" = (), address: str = "127.0.0.1",
                 wrap=None):
        self.address = address
        self.wrap = wrap
        self.root = unpacked()
        self.user = login_user()
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        os.chmod(folder, 0o755)
        self.host_key = folder / "host_key"
        self.client_key = folder / "client_key"
        for key in (self.host_key, self.client_key):
            if not key.exists():
                subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "",
                                "-f", str(key)], check=True)
        (folder / "authorized_keys").write_text(
            (folder / "client_key.pub").read_text())
        self.port = free_port() if wrap is None else 2222
        libexec = self.root / "usr" / "lib" / "openssh"
        lines = [f"Port {self.port}", f"ListenAddress {address}",
                 f"HostKey {self.host_key}",
                 f"AuthorizedKeysFile {folder / 'authorized_keys'}",
                 f"PidFile {folder / 'sshd.pid'}",
                 "StrictModes no", "UsePAM no", "PasswordAuthentication no",
                 "KbdInteractiveAuthentication no",
                 f"Subsystem sftp {libexec / 'sftp-server'}"]
        # OpenSSH 9.8 and later run helpers found at a built-in path.
        for option, helper in (("SshdSessionPath", "sshd-session"),
                               ("SshdAuthPath", "sshd-auth")):
            if (libexec / helper).exists():
                lines.append(f"{option} {libexec / helper}")
        lines += extra
        (folder / "sshd_config").write_text("\n".join(lines) + "\n")
        subprocess.run(["chown", "-R", f"{self.user.pw_uid}:{self.user.pw_gid}", folder],
                       check=True)
        os.chmod(self.host_key, 0o600)
        self.proc = None

    def host_key_line(self) -> str:
        """This server's line for a known_hosts file."""
        kind, blob = (self.folder / "host_key.pub").read_text().split()[:2]
        return f"[{self.address}]:{self.port} {kind} {blob}\n"

    def client_home(self, home: Path) -> Path:
        """A user's ~/.ssh under ``home``: the key that logs in, this server
        in known_hosts. Returns the .ssh folder."""
        ssh = home / ".ssh"
        ssh.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self.client_key, ssh / "id_ed25519")
        os.chmod(ssh / "id_ed25519", 0o600)
        (ssh / "known_hosts").write_text(self.host_key_line())
        return ssh

    def serve(self, folder: Path) -> str:
        """Make ``folder`` (the login user's) and return its sftp:// URL."""
        folder.mkdir(parents=True, exist_ok=True)
        subprocess.run(["chown", f"{self.user.pw_uid}:{self.user.pw_gid}", folder], check=True)
        return f"sftp://{self.user.pw_name}@{self.address}:{self.port}{folder}"

    def sessions(self) -> "list[int]":
        """The processes serving connections now (the listener's
        descendants: sshd per connection, sftp-server)."""
        children: "dict[int, list[int]]" = {}
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(stat.parent.name))
        found, todo = [], list(children.get(int((self.folder / "sshd.pid").read_text()), []))
        while todo:
            pid = todo.pop()
            found.append(pid)
            todo += children.get(pid, [])
        return found

    def start(self) -> "Sshd":
        libs = ":".join(str(p) for p in self.root.glob("usr/lib/*-linux-gnu"))
        argv = [str(self.root / "usr" / "sbin" / "sshd"), "-D", "-e",
                "-f", str(self.folder / "sshd_config")]
        env = {"PATH": os.environ["PATH"], "LD_LIBRARY_PATH": libs}
        if os.geteuid() == 0:
            argv = ["runuser", "-u", self.user.pw_name, "--",
                    "env", *(f"{k}={v}" for k, v in env.items()), *argv]
        if self.wrap is not None:
            argv = self.wrap(argv)
        self.log = open(self.folder / "sshd.log", "ab")
        self.proc = subprocess.Popen(argv, env=dict(os.environ, **env),
                                     stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("sshd ended: " + (self.folder / "sshd.log").read_text())
            if self.wrap is not None:
                # Out of this namespace's reach: its own word.
                if b"Server listening on" in (self.folder / "sshd.log").read_bytes():
                    return self
                time.sleep(0.1)
                continue
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("sshd did not listen within 15 s: "
                           + (self.folder / "sshd.log").read_text())

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            # runuser waits for sshd; sshd's own pid file names the daemon.
            pidfile = self.folder / "sshd.pid"
            if pidfile.exists():
                try:
                    os.kill(int(pidfile.read_text()), 15)
                except (ProcessLookupError, ValueError):
                    pass
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc:
            self.log.close()
        self.proc = None


def drop_sftp_connections() -> None:
    """Close the connections fsspec keeps (one per URL, options and
    thread), so that the next Store really connects (and checks the host
    key) and no session outlives its server."""
    from fsspec.implementations.sftp import SFTPFileSystem
    for fs in list(SFTPFileSystem._cache.values()):
        fs.client.close()
    SFTPFileSystem.clear_instance_cache()
