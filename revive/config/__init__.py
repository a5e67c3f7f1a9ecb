"""config.toml → one frozen, validated ``Config``.

Every problem is a ``UserError`` of one line naming the key and what to do.
Each stage hashes only its own slice (``stage_slice``), as plain data.
"""

import os
import posixpath
import re
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..core.collect import check_output_name
from ..core.errors import UserError

ACCELS = ("auto", "kvm", "tcg")
SAVE_METHODS = ("auto", "file", "zstd")
CHANNELS = ("agent", "ssh")
SHARE_MODES = ("ro", "rw")
TRANSPORTS = ("9p", "smb")
_DRIVE = re.compile(r"^[A-Za-z]:\\?$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$")
_HOSTNAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")
_USER = re.compile(r"^[a-z_][a-z0-9_-]{0,30}$")
_SIZE = re.compile(r"^(\d+)\s*([KMGT]?)i?B?$", re.I)
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*(s|m|h)?$")
_PACKAGE = re.compile(r"^[a-z0-9][a-z0-9+.-]+$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_FETCH_URL = re.compile(r"^(https?|file)://[^\s\"']+$")
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


# Config keys (as users write them) → where the parsed value lives.
_VALUES = {
    "answers.hostname": ("answers", "hostname"),
    "answers.user": ("answers", "user"),
    "answers.disk_size": ("answers", "disk_size_mb"),
    "vm.memory": ("vm", "memory_mb"),
    "vm.cpus": ("vm", "cpus"),
    "vm.accel": ("vm", "accel"),
    "vm.save": ("vm", "save"),
    "vm.channel": ("vm", "channel"),
    "timeouts.install": ("timeouts", "install"),
    "timeouts.boot": ("timeouts", "boot"),
    "timeouts.revive": ("timeouts", "revive"),
}


@dataclass(frozen=True)
class Cluster:
    scheduler: str          # tcp://HOST:8786; REVIVE_SCHEDULER overrides it
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
        section, attr = _VALUES[key]
        return getattr(getattr(self, section), attr)

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
    return parse(raw, path)


def parse(raw: dict, path: Path) -> Config:
    root = path.parent.resolve()
    t = _Table(raw, "", path.name)
    t.only("guest", "answers", "vm", "timeouts", "shares", "builds", "sources", "cluster")
    from .. import guests
    guest = t.table("guest")
    kind = guest.choice("kind", tuple(guests.KINDS), "tiny")
    kind_class = guests.kind_class(kind)
    answers = t.table("answers")
    vm = t.table("vm")
    timeouts = t.table("timeouts")
    answers.only("hostname", "user", "disk_size")
    vm.only("memory", "cpus", "accel", "save", "channel")
    timeouts.only("install", "boot", "revive")
    answers_ = Answers(
        hostname=answers.match("hostname", _HOSTNAME, "revive",
                               "letters, digits and '-', up to 63"),
        user=answers.match("user", _USER, "root",
                           "a lower-case login name such as 'root' or 'builder'"),
        disk_size_mb=answers.size_mb("disk_size", "2G"))
    vm_ = VM(memory_mb=vm.size_mb("memory", "512M"),
             cpus=vm.integer("cpus", 1, 1, 64),
             accel=vm.choice("accel", ACCELS, "auto"),
             save=vm.choice("save", SAVE_METHODS, "auto"),
             channel=vm.choice("channel", CHANNELS, kind_class.channels[0]))
    if vm_.channel not in kind_class.channels:
        raise UserError(f"{path.name}: [vm] channel: \"{vm_.channel}\" is not available for "
                        f"a {kind} guest ({kind_class.channel_note}); use channel = "
                        f"\"{kind_class.channels[0]}\"")
    timeouts_ = Timeouts(install=timeouts.duration("install", "20m"),
                         boot=timeouts.duration("boot", "5m"),
                         revive=timeouts.duration("revive", "2m"))
    shares = _shares(t.table("shares"), root, kind_class)
    guest_settings = kind_class.Settings.from_table(dict(guest.data), root)
    kind_class.check_shares(guest_settings, shares.values())
    sources = _sources(t.table("sources"), root)
    builds_table = t.table("builds")
    cfg = Config(root=root, path=path.resolve(), guest_kind=kind,
                 guest=dict(guest.data), guest_settings=guest_settings,
                 answers=answers_, vm=vm_, timeouts=timeouts_, shares=shares,
                 builds=_builds(builds_table, shares, root, sources), sources=sources,
                 keep_failed=_keep_failed(builds_table),
                 cluster=_cluster(t, os.environ.get("REVIVE_SCHEDULER"), root))
    if cfg.vm.memory_mb < 128:
        raise UserError(f"{path.name}: [vm] memory: at least 128M is needed")
    _check_sizes(cfg, path.name, kind_class.min_disk_mb)
    return cfg


MAX_MEMORY_MB = 1 << 20     # 1T: beyond any host this runs on


def host_memory_mb() -> "int | None":
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) // 1024
    except OSError:
        pass
    return None


def _check_sizes(cfg: "Config", file: str, least: int) -> None:
    """Sizes that would only fail late (QEMU refusing to start, an install
    running out of disk) are refused now, naming the key."""
    host = host_memory_mb()
    if cfg.vm.memory_mb > MAX_MEMORY_MB or (host and cfg.vm.memory_mb > host):
        raise UserError(f"{file}: [vm] memory: {cfg.vm.memory_mb} MB is more than this "
                        f"host's RAM ({host} MB); choose less, e.g. \"512M\"")
    if cfg.answers.disk_size_mb < least:
        raise UserError(f"{file}: [answers] disk_size: {cfg.answers.disk_size_mb} MB is too "
                        f"small for a {cfg.guest_kind} guest; at least {least}M")


def _same_or_nested(a: str, b: str) -> bool:
    def norm(p: str) -> str:
        p = p.replace("\\", "/")
        if _DRIVE.match(p.replace("/", "\\")):
            p = p[0].upper() + ":"
        return posixpath.normpath(p).rstrip("/") or "/"
    a, b = norm(a), norm(b)
    return a == b or a.startswith(b.rstrip("/") + "/") or b.startswith(a.rstrip("/") + "/")


def _shares(t: "_Table", root: Path, kind) -> "dict[str, Share]":
    shares = {}
    for name in t.data:
        s = t.table(name, named=True)
        s.only("guest", "mode", "host", "transport")
        mode = s.choice("mode", SHARE_MODES, "ro")
        host = s.optional_str("host")
        if mode == "rw" and host is not None:
            raise s.error("host", "the rw share is the exchange folder, made "
                          "fresh for every build; remove 'host'")
        guest_path = s.string("guest")
        drive = kind.drive_letters and _DRIVE.match(guest_path)
        if not guest_path.startswith("/") and not drive:
            raise s.error("guest", f"{guest_path!r} must be an absolute path in the guest"
                          + (" or a drive letter like \"S:\"" if kind.drive_letters else ""))
        transport = s.choice("transport", TRANSPORTS, kind.default_transport)
        if transport not in kind.transports:
            raise s.error("transport", f"a {kind.name} guest reaches shares over "
                          f"{' or '.join(kind.transports)} only; set transport = "
                          f"\"{kind.default_transport}\"")
        shares[name] = Share(name=name, guest=guest_path, mode=mode, transport=transport,
                             host=(root / host) if host is not None else None)
    seen = list(shares.values())
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


def _sources(t: "_Table", root: Path) -> "dict[str, BuildSource]":
    found = {}
    for name in t.data:
        s = t.table(name, named=True)
        s.only("debian", "url", "sha256", "path")
        kinds = [k for k in ("debian", "url", "path") if k in s.data]
        if len(kinds) != 1:
            raise s.error(None, "set exactly one of debian (a source package), url "
                          f"(with sha256) or path (a folder); found {len(kinds)}")
        kind = kinds[0]
        if kind != "url" and "sha256" in s.data:
            raise s.error("sha256", "only a url source has a sha256")
        if kind == "debian":
            found[name] = BuildSource(name, kind, debian=s.match(
                "debian", _PACKAGE, None, "a Debian source package name such as \"hello\""))
        elif kind == "url":
            found[name] = BuildSource(
                name, kind, url=s.match("url", _FETCH_URL, None,
                                        "an http(s):// or file:// URL of a tarball"),
                sha256=s.match("sha256", _SHA256, None, "the tarball's sha256, 64 "
                               "lower-case hex digits (sha256sum FILE)").lower())
        else:
            found[name] = BuildSource(name, kind, path=root / s.string("path"))
    return found


def _keep_failed(t: "_Table") -> "frozenset[str]":
    """[builds.NAME] keep_failed: kept apart from the Build, which is hashed:
    keeping a failed copy or not changes nothing a build makes."""
    return frozenset(name for name in t.data
                     if t.table(name, named=True)._get("keep_failed", False, bool,
                                                       "true or false"))


def _builds(t: "_Table", shares: "dict[str, Share]", root: Path,
            sources: "dict[str, BuildSource]") -> "dict[str, Build]":
    builds = {}
    for name in t.data:
        b = t.table(name, named=True)
        b.only("command", "shares", "outputs", "timeout", "env", "keep_failed")
        given = b.table("shares")
        mapped = {}
        used = []
        for share in shares.values():
            if share.mode == "rw":
                if share.name in given.data:
                    raise given.error(share.name, "the exchange folder cannot be "
                                      "mapped; it is fresh for every build")
                continue
            folder = given.optional_str(share.name)
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
        env = b.table("env")
        builds[name] = Build(
            name=name, command=b.string("command"), shares=mapped,
            outputs=tuple(b.string_list("outputs", [])),
            timeout=b.duration("timeout", "30m"),
            env={k: env.string(k) for k in env.data}, sources=tuple(used))
        for out in builds[name].outputs:
            why = check_output_name(out)
            if why:
                raise b.error("outputs", f"{out!r} {why}")
        for key in builds[name].env:
            if not _ENV_NAME.match(key):
                raise env.error(key, "an environment variable name is letters, digits "
                                "and '_', not starting with a digit")
    return builds


_SCHEDULER = re.compile(r"^(tcp|tls|ws|wss|inproc)://[^\s/]+$")
_STORE = re.compile(r"^[a-z][a-z0-9+.-]*://\S+$")


def _cluster(t: "_Table", override: "str | None", root: Path) -> "Cluster | None":
    """[cluster]: where builds run. ``REVIVE_SCHEDULER`` overrides the
    scheduler for one run; ``local`` runs them on this host."""
    if "cluster" not in t.data:
        if override and override != "local":
            raise UserError(f"REVIVE_SCHEDULER={override} but {t.file} has no [cluster] "
                            "table; add one with scheduler and store")
        return None
    c = t.table("cluster")
    c.only("scheduler", "store", "wait_for_worker", "certs", "insecure")
    scheduler = c.string("scheduler")
    store = c.string("store")
    wait = c.duration("wait_for_worker", "5m")
    certs = c.optional_str("certs")
    insecure = c._get("insecure", False, bool, "true or false")
    if override == "local":
        return None
    if override:
        scheduler = override
    if not _SCHEDULER.match(scheduler):
        raise c.error("scheduler", f"{scheduler!r} must be an address like "
                      "\"tcp://HOST:8786\"" + (" (from REVIVE_SCHEDULER)" if override else ""))
    if not _STORE.match(store):
        raise c.error("store", f"{store!r} must be a URL every host can read, like "
                      "\"file:///srv/revive-store\", \"sftp://host/srv/revive-store\" or "
                      "\"s3://bucket/revive\"")
    # Dask runs whatever a client submits: only holders of the cluster's
    # certificates may talk to it, unless the config says otherwise.
    if scheduler.startswith(("tcp://", "ws://")) and not insecure:
        raise c.error("scheduler", f"{scheduler!r} is unencrypted and lets anyone who reaches "
                      "it run code on the workers; use tls:// with [cluster] certs (revive "
                      "cluster certs DIR), or set insecure = true on a network you trust"
                      + (" (from REVIVE_SCHEDULER)" if override else ""))
    if scheduler.startswith(("tls://", "wss://")) and certs is None:
        raise c.error("certs", "missing: a tls:// scheduler needs the folder holding ca.pem "
                      "and client.pem (make them with `revive cluster certs DIR`)")
    return Cluster(scheduler=scheduler, store=store, wait_for_worker=wait,
                   certs=None if certs is None else root / certs, insecure=insecure)


class _Table:
    """A TOML table with typed getters whose errors name the full key."""

    def __init__(self, data, where: str, file: str):
        self.data = data
        self.where = where
        self.file = file

    def error(self, key, problem: str) -> UserError:
        place = f"[{self.where}]" if self.where else ""
        if key is not None:
            place = f"{place} {key}".strip()
        return UserError(f"{self.file}: {place}: {problem}")

    def only(self, *known: str) -> None:
        for key in self.data:
            if key not in known:
                raise self.error(key, f"unknown key; expected one of {', '.join(known)}")

    def table(self, key: str, named: bool = False) -> "_Table":
        value = self.data.get(key, {})
        where = f"{self.where}.{key}" if self.where else key
        if not isinstance(value, dict):
            raise self.error(key, "must be a table")
        if named and not _NAME.match(key):
            raise self.error(key, "names are letters, digits, '-' and '_', up to 32")
        return _Table(value, where, self.file)

    def _get(self, key, default, kind, kind_name):
        value = self.data.get(key, default)
        if value is None:
            raise self.error(key, f"missing; it must be {kind_name}")
        if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
            raise self.error(key, f"{value!r} must be {kind_name}")
        return value

    def string(self, key: str, default=None) -> str:
        value = self._get(key, default, str, "a string")
        if not value.strip():
            raise self.error(key, "must not be empty")
        return value

    def optional_str(self, key: str) -> "str | None":
        return None if key not in self.data else self.string(key)

    def string_list(self, key: str, default) -> "list[str]":
        value = self._get(key, default, list, "a list of strings")
        if not all(isinstance(v, str) and v for v in value):
            raise self.error(key, "must be a list of non-empty strings")
        return value

    def integer(self, key: str, default: int, low: int, high: int) -> int:
        value = self._get(key, default, int, "a whole number")
        if not low <= value <= high:
            raise self.error(key, f"{value} must be between {low} and {high}")
        return value

    def choice(self, key: str, choices, default: str) -> str:
        value = self._get(key, default, str, "a string")
        if value not in choices:
            raise self.error(key, f"{value!r} must be one of: {', '.join(choices)}")
        return value

    def match(self, key: str, pattern, default: str, shape: str) -> str:
        value = self._get(key, default, str, "a string")
        if not pattern.match(value):
            raise self.error(key, f"{value!r} is not valid: {shape}")
        return value

    def size_mb(self, key: str, default: str) -> int:
        value = self._get(key, default, (str, int), "a size like \"512M\" or \"2G\"")
        m = _SIZE.match(str(value).strip())
        if not m:
            raise self.error(key, f"{value!r} must be a size like \"512M\" or \"2G\"")
        scale = {"": 1 / (1 << 20), "K": 1 / 1024, "M": 1, "G": 1024, "T": 1 << 20}
        return int(int(m.group(1)) * scale[m.group(2).upper()])

    def duration(self, key: str, default: str) -> float:
        value = self._get(key, default, (str, int, float), "a duration like \"30s\", \"10m\" or \"1h\"")
        m = _DURATION.match(str(value).strip())
        if not m or float(m.group(1)) <= 0:
            raise self.error(key, f"{value!r} must be a duration like \"30s\", \"10m\" or \"1h\"")
        return float(m.group(1)) * {"s": 1, None: 1, "m": 60, "h": 3600}[m.group(2)]
