"""config.toml → one frozen, validated ``Config``.

Each key is read through its row of the table of settings (``settings``):
parsed, checked, defaulted. What is left here is what spans keys: one
exchange folder, mount points apart, a source's one origin. Every problem is
a ``UserError`` of one line naming the key and what to do.
"""

import os
import posixpath
import re
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .. import guests
from ..core.collect import check_output_name
from ..core.errors import UserError
from . import settings

_DRIVE = re.compile(r"^[A-Za-z]:\\?$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
SOURCES_PREFIX = "sources:"


@dataclass(frozen=True)
class Share:
    name: str
    guest: str
    mode: str
    transport: str
    host: "Path | None"  # default host folder; None for the exchange folder


@dataclass(frozen=True)
class Build:
    name: str
    command: str
    shares: "dict[str, Path]"   # share name → host folder, defaults applied
    outputs: "tuple[str, ...]"
    timeout: float
    env: "dict[str, str]"
    sources: "tuple[str, ...]" = ()   # the [sources.NAME] its shares name
    max_output_mb: int = 4096         # what its outputs may take on the host's disk
    keep_free_mb: int = 256           # free space its outputs must leave there


@dataclass(frozen=True)
class BuildSource:
    """One [sources.NAME] table: exactly one of a Debian source package, a
    tarball URL with its sha256, or a local folder."""
    name: str
    kind: str                    # "debian" | "url" | "path"
    debian: "str | None" = None
    url: "str | None" = None
    sha256: "str | None" = None
    path: "Path | None" = None

    def slice(self) -> dict:
        return {"kind": self.kind, "debian": self.debian, "url": self.url,
                "sha256": self.sha256, "path": str(self.path) if self.path else None}


@dataclass(frozen=True)
class Answers:
    hostname: str
    user: str
    disk_size_mb: int


@dataclass(frozen=True)
class VM:
    memory_mb: int
    cpus: int
    accel: str
    save: str
    channel: str = "ssh"        # how builds talk to the guest: agent | ssh


@dataclass(frozen=True)
class Timeouts:
    install: float
    boot: float
    revive: float


@dataclass(frozen=True)
class Cluster:
    scheduler: str          # tls://HOST:8786; REVIVE_SCHEDULER overrides it
    store: str              # fsspec URL every host reads, the submitter writes
    wait_for_worker: float = 300.0   # seconds a build waits for a worker that can take it
    certs: "Path | None" = None      # ca.pem and client.pem (revive cluster certs DIR)
    insecure: bool = False           # plain tcp:// allowed: anyone reaching it runs code


@dataclass(frozen=True)
class Config:
    root: Path
    path: Path
    guest_kind: str
    guest: "dict[str, Any]"     # the [guest] table as written (kept in the snapshot)
    guest_settings: Any         # the same, validated by its kind's Settings class
    answers: Answers
    vm: VM
    timeouts: Timeouts
    shares: "dict[str, Share]"
    builds: "dict[str, Build]"
    cluster: "Cluster | None" = None     # None: builds run on this host
    sources: "dict[str, BuildSource]" = field(default_factory=dict)
    keep_failed: "frozenset[str]" = frozenset()   # builds whose failed copy is kept

    @property
    def artifacts(self) -> Path:
        return self.root / "artifacts"

    def value(self, key: str):
        """The parsed value of a config key such as ``"answers.disk_size"``
        (sizes in MiB, durations in seconds). ``"shares"`` is every share as
        the guest sees it; the default host folders are the builds' to read."""
        if key == "shares":
            return {n: replace(s, host=None) for n, s in self.shares.items()}
        if key.startswith("builds."):
            return self.builds[key.split(".", 1)[1]]
        row = settings.by_key()[key]
        return getattr(getattr(self, row.section), row.attr)

    @property
    def exchange(self) -> Share:
        return next(s for s in self.shares.values() if s.mode == "rw")


def load(path: "Path | str") -> Config:
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise UserError(f"{path}: no such file; copy config.toml from the "
                        "revive repository or an examples/*.toml") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise UserError(f"{path.name}: not valid TOML: {err}") from None
    cfg = parse(raw, path)
    _check_share_folders(cfg, path.name)
    return cfg


def _check_share_folders(cfg: "Config", file: str) -> None:
    """Each build's read-only share folders exist (a sources: share is
    filled by its task later): found at load, not when the build runs."""
    for build in cfg.builds.values():
        fetched = {cfg.artifacts / "sources" / name for name in build.sources}
        for share, folder in build.shares.items():
            if folder not in fetched and not Path(folder).is_dir():
                raise UserError(f"{file}: [builds.{build.name}] shares.{share} (or "
                                f"[shares.{share}] host): host folder {folder} does not "
                                "exist; create it or name another")


def parse(raw: dict, path: Path) -> Config:
    root = path.parent.resolve()
    file = path.name
    top = _Section(raw, file, "")
    top.only(*dict.fromkeys(r.key.split(".")[0] for r in settings.CORE))
    guest = top.table("guest")
    # [guest] kind here; the kind's own keys are its Settings' to read.
    kind = guests.kind_class(settings.read(settings.section(settings.CORE, "guest"), guest,
                                           file, "guest", allowed=tuple(guest))["kind"])
    guest_settings = kind.Settings.from_table(dict(guest), root)
    core = {name: settings.read(settings.section(settings.CORE, name), top.table(name),
                                file, name, kind, guest_settings)
            for name in ("answers", "vm", "timeouts")}
    shares = _shares(top, kind, guest_settings, root)
    kind.check_shares(guest_settings, shares.values())
    sources = _sources(top, root)
    builds = _builds(top, shares, root, sources)
    return Config(root=root, path=path.resolve(), guest_kind=kind.name,
                  guest=dict(guest), guest_settings=guest_settings,
                  answers=_record(Answers, "answers", core), vm=_record(VM, "vm", core),
                  timeouts=_record(Timeouts, "timeouts", core), shares=shares,
                  builds={n: b for n, (b, _) in builds.items()}, sources=sources,
                  keep_failed=frozenset(n for n, (_, keep) in builds.items() if keep),
                  cluster=_cluster(top, os.environ.get("REVIVE_SCHEDULER"), root))


def _record(cls, name: str, read: dict):
    """The section's dataclass from its values, each in its row's field."""
    return cls(**{r.attr: read[name][r.name]
                  for r in settings.section(settings.CORE, name)})


class _Section:
    """A table of config.toml and the named tables in it."""

    def __init__(self, data, file: str, where: str):
        self.data, self.file, self.where = data, file, where

    def error(self, key, problem: str) -> UserError:
        return settings.error(self.file, self.where, key, problem)

    def only(self, *known: str) -> None:
        for key in self.data:
            if key not in known:
                raise self.error(key, f"unknown key; expected one of {', '.join(known)}")

    def table(self, key: str, named: bool = False) -> dict:
        value = self.data.get(key, {})
        if not isinstance(value, dict):
            raise self.error(key, "must be a table")
        if named and not _NAME.match(key):
            raise self.error(key, "names are letters, digits, '-' and '_', up to 32")
        return value

    def named(self, section: str, kind=None, guest_settings=None):
        """(name, its table, its values) for each [section.NAME], read by the
        table's rows (with the kind's defaults, if given)."""
        tables = _Section(self.table(section), self.file, section)
        rows = settings.section(settings.CORE, f"{section}.NAME")
        for name in tables.data:
            data = tables.table(name, named=True)
            yield name, data, settings.read(rows, data, self.file, f"{section}.{name}",
                                             kind, guest_settings)


def _same_or_nested(a: str, b: str) -> bool:
    def norm(p: str) -> str:
        p = p.replace("\\", "/")
        if _DRIVE.match(p.replace("/", "\\")):
            p = p[0].upper() + ":"
        return posixpath.normpath(p).rstrip("/") or "/"
    a, b = norm(a), norm(b)
    return a == b or a.startswith(b.rstrip("/") + "/") or b.startswith(a.rstrip("/") + "/")


def _shares(top: _Section, kind, guest_settings, root: Path) -> "dict[str, Share]":
    shares = {}
    for name, data, v in top.named("shares", kind, guest_settings):
        where = _Section(data, top.file, f"shares.{name}")
        if v["mode"] == "rw" and v["host"] is not None:
            raise where.error("host", "the rw share is the exchange folder, made "
                              "fresh for every build; remove 'host'")
        drive = kind.drive_letters and _DRIVE.match(v["guest"])
        if not v["guest"].startswith("/") and not drive:
            raise where.error("guest", f"{v['guest']!r} must be an absolute path in the guest"
                              + (" or a drive letter like \"S:\"" if kind.drive_letters else ""))
        shares[name] = Share(name=name, guest=v["guest"], mode=v["mode"],
                             transport=v["transport"],
                             host=(root / v["host"]) if v["host"] is not None else None)
    seen = list(shares.values())
    t = _Section(top.table("shares"), top.file, "shares")
    for i, one in enumerate(seen):
        for other in seen[:i]:
            if _same_or_nested(one.guest, other.guest):
                raise t.error(f"{one.name}.guest", f"{one.guest!r} is the mount point of "
                              f"[shares.{other.name}] or nested with it; give each "
                              "share its own folder")
    exchanges = [s.name for s in shares.values() if s.mode == "rw"]
    if len(exchanges) != 1:
        raise t.error(None, "exactly one share must have mode = \"rw\" (the exchange "
                      f"folder the outputs are collected from); found {len(exchanges)}")
    return shares


def _sources(top: _Section, root: Path) -> "dict[str, BuildSource]":
    found = {}
    for name, data, v in top.named("sources"):
        where = _Section(data, top.file, f"sources.{name}")
        kinds = [k for k in ("debian", "url", "path") if k in data]
        if len(kinds) != 1:
            raise where.error(None, "set exactly one of debian (a source package), url "
                              f"(with sha256) or path (a folder); found {len(kinds)}")
        kind = kinds[0]
        if kind != "url" and "sha256" in data:
            raise where.error("sha256", "only a url source has a sha256")
        if kind == "url" and v["sha256"] is None:
            raise where.error("sha256", "missing; it must be a string")
        found[name] = BuildSource(name, kind, debian=v["debian"], url=v["url"],
                                  sha256=v["sha256"],
                                  path=root / v["path"] if kind == "path" else None)
    return found


def _builds(top: _Section, shares: "dict[str, Share]", root: Path,
            sources: "dict[str, BuildSource]") -> "dict[str, tuple[Build, bool]]":
    """Each build, with its keep_failed apart: the Build is hashed, and
    keeping a failed copy or not changes nothing a build makes."""
    builds = {}
    for name, data, v in top.named("builds"):
        where = _Section(data, top.file, f"builds.{name}")
        given = _Section(v["shares"], top.file, f"builds.{name}.shares")
        mapped = {}
        used = []
        for share in shares.values():
            if share.mode == "rw":
                if share.name in given.data:
                    raise given.error(share.name, "the exchange folder cannot be "
                                      "mapped; it is fresh for every build")
                continue
            folder = given.data.get(share.name)
            if folder is not None:
                try:
                    folder = settings.STRING(folder)
                except settings.Invalid as why:
                    raise given.error(share.name, str(why)) from None
            if folder is not None and folder.startswith(SOURCES_PREFIX):
                source = folder[len(SOURCES_PREFIX):]
                if source not in sources:
                    raise given.error(share.name, f"no [sources.{source}] table; "
                                      f"define it or name a folder")
                used.append(source)
                # Filled by the sources:NAME task before the build runs.
                folder = f"artifacts/sources/{source}"
            path = (root / folder) if folder is not None else share.host
            if path is None:
                raise given.error(share.name, "no host folder: set it here or "
                                  f"as [shares.{share.name}] host")
            mapped[share.name] = path
        for extra in given.data:
            if extra not in shares:
                raise given.error(extra, f"no share named {extra!r}; define "
                                  f"[shares.{extra}] first")
        env = _Section(v["env"], top.file, f"builds.{name}.env")
        for key, value in env.data.items():
            if not _ENV_NAME.match(key):
                raise env.error(key, "an environment variable name is letters, digits "
                                "and '_', not starting with a digit")
            if not isinstance(value, str) or not value.strip():
                raise env.error(key, f"{value!r} must be a non-empty string")
        for out in v["outputs"]:
            why = check_output_name(out)
            if why:
                raise where.error("outputs", f"{out!r} {why}")
        builds[name] = (Build(name=name, command=v["command"], shares=mapped,
                              outputs=tuple(v["outputs"]), timeout=v["timeout"],
                              env=dict(env.data), sources=tuple(used),
                              max_output_mb=v["max_output_size"], keep_free_mb=v["keep_free"]),
                        v["keep_failed"])
    return builds


def _cluster(top: _Section, override: "str | None", root: Path) -> "Cluster | None":
    """[cluster]: where builds run. ``REVIVE_SCHEDULER`` overrides the
    scheduler for one run; ``local`` runs them on this host."""
    if "cluster" not in top.data:
        if override and override != "local":
            raise UserError(f"REVIVE_SCHEDULER={override} but {top.file} has no [cluster] "
                            "table; add one with scheduler and store")
        return None
    data = dict(top.table("cluster"))
    if override == "local":
        return None
    if override:
        data["scheduler"] = override
    try:
        v = settings.read(settings.section(settings.CORE, "cluster"), data, top.file,
                          "cluster")
    except UserError as err:
        if override and "[cluster] scheduler" in str(err):
            raise UserError(f"{err} (from REVIVE_SCHEDULER)") from None
        raise
    scheduler, certs = v["scheduler"], v["certs"]
    # Dask runs whatever a client submits: only holders of the cluster's
    # certificates may talk to it, unless the config says otherwise.
    if scheduler.startswith(("tcp://", "ws://")) and not v["insecure"]:
        raise settings.error(top.file, "cluster", "scheduler", (
            f"{scheduler!r} is unencrypted and lets anyone who reaches it run code on the "
            "workers; use tls:// with [cluster] certs (revive cluster certs DIR), or set "
            "insecure = true on a network you trust"
            + (" (from REVIVE_SCHEDULER)" if override else "")))
    if scheduler.startswith(("tls://", "wss://")) and certs is None:
        raise settings.error(top.file, "cluster", "certs", (
            "missing: a tls:// scheduler needs the folder holding ca.pem and client.pem "
            "(make them with `revive cluster certs DIR`)"))
    return Cluster(scheduler=scheduler, store=v["store"], wait_for_worker=v["wait_for_worker"],
                   certs=None if certs is None else root / certs, insecure=v["insecure"])
