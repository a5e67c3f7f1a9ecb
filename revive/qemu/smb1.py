"""SMB1 shares for Windows XP and Server 2003: our own smbd, per VM.

XP and 2003 speak only SMB1 (NT1). QEMU's ``smb=`` writes its own smb.conf,
which Samba 4.11 and later answer with SMB2 at least, so those guests could
not map a share. QEMU's ``smb=`` itself is only a slirp exec forward
(QEMU's net/slirp.c, ``slirp_smb``): for each TCP connection the guest
opens to 10.0.2.4:139 or :445, libslirp starts ``smbd -l DIR -s smb.conf``
with the connection's socket on its standard input, output and error
(``fork_exec``: the command line split as a shell would, no shell, a new
session). ``-netdev user,guestfwd=tcp:ADDR:PORT-cmd:COMMAND`` does the same
with any command line, so revive starts smbd that way with a configuration
of its own: ``server min protocol = NT1`` (as dockur/windows writes for
XP), one Samba share per configured share, read-only where the share is
``ro``. Nothing else opens: the user network keeps ``restrict=on``, and
guest forwards are the one thing restrict lets through.

smbd runs as the user who runs QEMU, with every state file under the VM's
own folder; guests log on as Samba's guest (``map to guest = Bad User``) and
act on files as that user (``force user``), as with QEMU's ``smb=``.
"""

import getpass
import shutil
from pathlib import Path

from ..core.errors import UserError

SERVER = "10.0.2.4"          # where QEMU's smb= serves too: \\10.0.2.4\NAME
PORTS = (139, 445)           # NetBIOS session service and direct SMB, as smb= does
CONF = "smb.conf"
RESERVED = {"global", "homes", "printers", "ipc$"}
MAX_RULE = 1024


def smbd_binary() -> str:
    """smbd's path (Debian keeps it in /usr/sbin, outside a user's PATH)."""
    found = shutil.which("smbd") or shutil.which("smbd", path="/usr/sbin:/sbin")
    if not found:
        raise UserError("smbd not found: Windows XP and Server 2003 shares are served by "
                        "Samba's smbd; install it (apt install samba, or ./setup.sh)")
    return found


def command(smbd: str, state: str) -> str:
    """The command line slirp runs per connection (split like a shell would,
    so neither path may hold a space or a quote). ``-l`` and ``log file``
    keep smbd's messages away from stderr, which is the guest's socket."""
    for path in (smbd, state):
        if any(c in path for c in " \t\n'\"\\"):
            raise UserError(f"SMB1 share: the path {path!r} holds a space or quote, which "
                            "QEMU's guest forward cannot pass to smbd; move the project")
    line = f"{smbd} -l {state} -s {state}/{CONF}"
    # QEMU keeps each guestfwd rule in 1024 bytes (net/slirp.c); longer is cut.
    if len(f"tcp:{SERVER}:445-cmd:{line}".encode()) >= MAX_RULE:
        raise UserError(f"SMB1 share: the VM's folder {state} makes smbd's command line "
                        f"longer than QEMU's guest forward takes ({MAX_RULE} bytes); "
                        "move the project to a shorter path")
    return line


def config(state: Path, shares: "dict[str, tuple[Path, bool]]", user: "str | None" = None) -> str:
    """smb.conf for one VM: ``shares`` maps a share name to (host folder,
    read only). All state lives in ``state``."""
    user = user or getpass.getuser()
    for name in shares:
        if name.lower() in RESERVED:
            raise UserError(f"config.toml: [shares.{name}]: Samba reserves the name "
                            f"{name!r}; rename the share")
    lines = ["[global]",
             f"private dir = {state}", f"pid directory = {state}",
             f"lock directory = {state}", f"state directory = {state}",
             f"cache directory = {state}", f"ncalrpc dir = {state}/ncalrpc",
             f"log file = {state}/log.smbd", f"smb passwd file = {state}/smbpasswd",
             # inetd style: smbd never listens; keep it off every interface anyway
             "interfaces = 127.0.0.1", "bind interfaces only = yes",
             "security = user", "map to guest = Bad User",
             # what XP and Server 2003 speak
             "server min protocol = NT1",
             # Samba 4.16+ would start samba-dcerpcd and its rpcd_* helpers
             # for RPC (a share list), daemons that outlive the VM. Without
             # them mapping a share works, and SMB1 lists shares over RAP.
             "rpc start on demand helpers = no",
             "load printers = no", "printing = bsd", "printcap name = /dev/null",
             "disable spoolss = yes", "usershare max shares = 0"]
    for name, (path, read_only) in shares.items():
        lines += ["", f"[{name}]", f"path = {path}",
                  f"read only = {'yes' if read_only else 'no'}",
                  "guest ok = yes", f"force user = {user}"]
    return "\n".join(lines) + "\n"


def write_config(state: Path, shares: "dict[str, tuple[Path, bool]]") -> Path:
    """Make ``state`` and write its smb.conf; returns the folder."""
    state.mkdir(parents=True, exist_ok=True)
    (state / "ncalrpc").mkdir(exist_ok=True)
    (state / CONF).write_text(config(state, shares))
    return state
