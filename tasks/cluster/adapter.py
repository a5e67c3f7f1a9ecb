"""The revive library call (tasks.machine.revive.run_build, issue 7) with
its documented signature, over the current build stage's code. Temporary:
once tasks/machine/revive.py exists, ``run_build`` below is that one."""

from dataclasses import dataclass
from pathlib import Path

try:  # the integrator's library module, when it has landed
    from ..machine.revive import BuildRequest, run_build  # noqa: F401
    NATIVE = True
except ImportError:
    NATIVE = False

    @dataclass(frozen=True)
    class BuildRequest:  # type: ignore[no-redef]
        name: str
        command: str
        env: "dict[str, str]"
        outputs: "tuple[str, ...]"
        timeout: float
        shares: "dict[str, Path]"
        revive_timeout: float

    def run_build(artifacts: Path, request: "BuildRequest", *, key: Path, out: Path,
                  work: Path, logs: Path, guest: "dict | None" = None) -> dict:
        """Revive a copy of ``artifacts/snapshot``, run the request, fill
        ``out`` (log, outputs/) and return the result dict. ``guest`` is the
        project's [guest] table (only Windows needs more than the kind)."""
        # The build stage imports doit; this import goes with the adapter.
        from .. import build as stage
        from ..common import Paths, Stopwatch
        from ..config import Build, parse
        from ..machine import qemu
        from ..machine import snapshot as snap
        from ..core.errors import UserError

        meta = snap.read_meta(artifacts / "snapshot")
        if meta.get("qemu") != qemu.version():
            raise UserError(f"the snapshot was made with QEMU {meta.get('qemu')} and this "
                            f"worker has {qemu.version()}")
        raw = {"guest": dict(guest or {"kind": meta["guest"]}),
               "shares": {n: {"guest": s["guest"], "mode": s["mode"],
                              "transport": s["transport"]}
                          for n, s in meta["shares"].items()},
               "timeouts": {"revive": request.revive_timeout}}
        # Config.root is artifacts' parent: Paths(cfg) then names this layout.
        cfg = parse(raw, Path(artifacts).parent / "config.toml")
        paths = Paths(cfg)
        paths.artifacts, paths.snapshot = Path(artifacts), Path(artifacts) / "snapshot"
        paths.key, paths.logs, paths.work = Path(key), Path(logs), Path(work)
        Path(logs).mkdir(parents=True, exist_ok=True)
        build = Build(name=request.name, command=request.command, shares=dict(request.shares),
                      outputs=tuple(request.outputs), timeout=request.timeout,
                      env=dict(request.env))
        work = Path(work)
        work.mkdir(parents=True, exist_ok=True)
        shares = stage.share_folders(cfg, build, work)
        return stage._run_in_copy(cfg, paths, meta, build, work, shares, Path(out), Stopwatch())
