"""`doit shell` and `doit shell:NAME`: a login shell in a throwaway copy of
the snapshot (with build NAME's shares mounted), in the current terminal,
as the build user. Leaving the shell kills the copy; nothing is kept.

``--kept STATE`` opens a failed build's kept state instead (see
revive/machine/keep.py): the guest resumes as the command left it.
"""

import os
from pathlib import Path

from .build import input_files
from .common import Paths, action, say, settings
from revive.channel import terminal
from revive.core.files import remove
from revive.machine import keep, revived
from revive.qemu import saved

KEPT_PARAM = {"name": "kept", "long": "kept", "type": str, "default": "",
              "help": "a kept state of a failed build to resume (a folder name "
                      "under artifacts/kept/ or its path)"}


def shell_request(cfg, build) -> dict:
    """What the shell reads of the config, as plain values (not the config):
    the build's shares and env, or the shares' default folders."""
    shares = build.shares if build else {n: s.host for n, s in cfg.shares.items()
                                         if s.mode == "ro" and s.host is not None}
    return {"build": build.name if build else None, "shares": dict(shares),
            "env": dict(build.env) if build else {},
            "builds": {n: {"shares": dict(b.shares), "env": dict(b.env)}
                       for n, b in cfg.builds.items()},
            "ro_shares": [n for n, s in cfg.shares.items() if s.mode == "ro"],
            "revive_timeout": cfg.timeouts.revive}


@action
def open_shell(request: dict, paths: Paths, kept: str = "") -> None:
    state = None
    name, shares, env = request["build"], dict(request["shares"]), request["env"]
    if kept:
        state = keep.resolve(paths.artifacts, kept, saved.read_meta(paths.snapshot))
        owner = saved.read_meta(state)["kept"]["build"]
        if name is None and owner in request["builds"]:
            name = owner
            shares, env = dict(request["builds"][owner]["shares"]), request["builds"][owner]["env"]
    work = paths.work / f"shell-{os.getpid()}"
    remove(work)
    work.mkdir(parents=True)
    try:
        for share in request["ro_shares"]:
            # A share with no folder for this shell shows an empty one.
            shares.setdefault(share, work / "empty" / share)
            Path(shares[share]).mkdir(parents=True, exist_ok=True)
        with revived(state or paths.snapshot, artifacts=paths.artifacts, name="shell",
                     shares=shares, key=paths.key, work=work, logs=paths.logs,
                     timeout=request["revive_timeout"]) as copy:
            user = copy.meta.get("user", "root")
            what = f"kept state {state.name}" if state else "a copy of the snapshot"
            say(f"shell as {user} in {what}"
                + (f" with build {name}'s shares" if name else "")
                + "; leave with exit: the copy is then thrown away")
            command = copy.kind.command_line(terminal.login_command(), env, user, copy.shares)
            session = copy.ssh()
            try:
                terminal.interactive(session.client.get_transport(), command)
            finally:
                if session is not copy.channel:
                    session.close()
    finally:
        remove(work)
    say("shell ended; the copy is gone")


def task_shell():
    """A login shell in a throwaway copy of the snapshot (shell:NAME: with build NAME's shares)."""
    cfg = settings()
    paths = Paths(cfg)
    common = {"params": [KEPT_PARAM], "uptodate": [False], "verbosity": 2}
    yield {"basename": "shell", "actions": [(open_shell, [shell_request(cfg, None), paths])],
           "file_dep": [paths.snapshot_meta], "doc": task_shell.__doc__, **common}
    for build in cfg.builds.values():
        yield {"basename": f"shell:{build.name}",
               "actions": [(open_shell, [shell_request(cfg, build), paths])],
               "file_dep": [paths.snapshot_meta, *input_files(paths, build)],
               "doc": f"a login shell in a copy with build {build.name}'s shares", **common}
