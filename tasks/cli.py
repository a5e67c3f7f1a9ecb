"""The ``revive`` command: doit with revive's tasks, in the folder that holds
your ``config.toml``.

    revive init [tiny|debian|windows]   a commented config.toml to start from
    revive build | build:NAME | snapshot | shell[:NAME] | list | info TASK
           | forget | clean | -n N …      what ``doit …`` does in a clone

The config is ``./config.toml`` (or the one ``REVIVE_CONFIG`` names, or the
one ``-c PATH`` names); ``artifacts/`` sits beside it and relative paths in it
are read against its folder, so the command works from any folder a project
keeps its config in. A clone's ``.venv/bin/doit`` runs the same tasks
(``tasks/dodo.py``). It lives with the tasks, not in the mechanism
(``revive/``, which never imports doit), and is installed as revive.tasks.cli.
"""

import os
import signal
import sys
from pathlib import Path

from revive.core.errors import UserError, for_people

USAGE = """usage: revive [-c CONFIG] COMMAND [ARGS…]

  init [tiny|debian|windows]    write a commented config.toml here (never over one)
  cluster certs DIR             a CA and TLS certificates for a Dask cluster (docs/cluster.md)
  build                         every build (installs and snapshots first as needed)
  build:NAME                    one build
  snapshot                      install and snapshot the guest, no build
  shell | shell:NAME            a login in a throwaway copy (--kept: a kept failed one)
  list | info TASK | forget | clean | help
                                doit's own commands on revive's tasks
  -n N                          N builds at once, as doit's -n

The config is ./config.toml, or -c PATH, or $REVIVE_CONFIG.
docs: README.md, docs/ in revive's source"""


def main(argv: "list[str] | None" = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv[:1] in (["-h"], ["--help"]):
            print(USAGE)
            return 0
        config = None
        if argv[:1] == ["-c"] and len(argv) > 1:
            config, argv = argv[1], argv[2:]
        if argv[:1] == ["init"]:
            return _init(argv[1:])
        if argv[:1] == ["cluster"]:
            return _cluster(argv[1:])
        return _doit(argv, config)
    except UserError as err:
        print(for_people(err), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(for_people("interrupted"), file=sys.stderr)
        return 130


def _doit(argv: "list[str]", config: "str | None") -> int:
    path = Path(config or os.environ.get("REVIVE_CONFIG") or "config.toml").resolve()
    if not path.is_file():
        if argv[:1] in (["help"], ["--version"]) and len(argv) == 1:
            print(USAGE)        # nothing of a project's to show
            return 0
        raise UserError(f"no config at {path}: run 'revive init' here to write one, "
                        "or name yours with -c PATH")
    # doit keeps its state in artifacts/ beside the config, and the stages
    # read relative paths against the config's folder.
    os.environ["REVIVE_CONFIG"] = str(path)
    os.chdir(path.parent)
    from doit.cmd_base import ModuleTaskLoader
    from doit.doit_cmd import DoitMain
    from . import dodo
    if argv[:1] in (["list"], ["info"], ["help"]):
        # `revive list | head`: a reader that leaves ends these quietly, as it
        # ends ls (doit would print a traceback); builds keep their handlers.
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    if argv[:1] not in (["help"], ["--version"]):
        _check_system(path)
        dodo.start()       # the project lock, the sweep, the signal handlers
    return DoitMain(ModuleTaskLoader(dodo), extra_config={"GLOBAL": {}}).run(argv)


def _check_system(path: Path) -> None:
    """The system packages this project's stages call (revive/system.py), in
    one line when any is missing, before doit loads the tasks (which ask
    QEMU its version already)."""
    from revive import system
    from revive.config import load
    cfg = load(path)
    # The emulator of the guest's architecture too ([guest] arch).
    system.require({"all", cfg.guest_kind, getattr(cfg.guest_settings, "arch", "amd64")})


def _cluster(argv: "list[str]") -> int:
    if len(argv) != 2 or argv[0] != "certs":
        raise UserError("usage: revive cluster certs DIR")
    from .cluster import certs
    for path in certs.make(Path(argv[1])):
        print(f"revive: wrote {path}")
    print("revive: copy ca.pem and scheduler.pem to the scheduler's host, ca.pem and "
          "worker.pem to each worker, keep ca.pem and client.pem where doit runs "
          "([cluster] certs); see docs/cluster.md")
    return 0


def _init(argv: "list[str]") -> int:
    from revive import starter
    kind = argv[0] if argv else "tiny"
    written = starter.write(Path.cwd(), kind)
    for path in written:
        print(f"revive: wrote {path}")
    print("revive: next, 'revive build' (the first run installs the guest and takes its snapshot)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
