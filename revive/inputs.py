"""Stage inputs: one frozen record per stage of everything its action reads.

The record feeds both doit's up-to-date check (``plain()``, hashed and
diffed by ``common.config_slice``) and the action, which gets the record and
not the config: a setting the action reads is in the record, so it is hashed
by construction. A missing key is a ``KeyError``, never a silent default.

What goes in:
- ``guest``: the guest kind's settings, as the stage may see them
  (``GuestKind.settings_for``: the ``[guest]`` keys whose rows name it);
- ``values``: config keys (``"answers.disk_size"``, ``"shares"``,
  ``"builds.NAME"``) whose rows in the table of settings
  (``revive.config.settings``) name the stage, for this guest kind;
- ``host``: facts of the host that shape the output (the QEMU version, the
  host's apt sources).

``limits`` are read but not hashed: deadlines and the accelerator choice of
a stage whose output does not depend on them. Changing one reruns nothing.
"""

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from . import guests
from . import qemu
from .channel import agent
from .config import settings
from .fetch import lock

# Stages in pipeline order; each reads what the kind declares for it.
STAGES = ("payload", "iso", "floppy", "install", "snapshot")


@dataclass(frozen=True)
class StageInputs:
    stage: str
    kind: "str | None"
    guest: Any                  # None: the stage reads no [guest] setting
    values: "Mapping[str, Any]" = field(default_factory=dict)
    host: "Mapping[str, Any]" = field(default_factory=dict)
    limits: "Mapping[str, Any]" = field(default_factory=dict)

    def __getitem__(self, key: str):
        return self.values[key]

    def guest_kind(self):
        """The kind's object, made from the settings this stage may see."""
        return guests.kind_class(self.kind)(self.guest)

    def plain(self) -> dict:
        """Everything hashed, as plain JSON data keyed by config key."""
        data = {"guest.kind": self.kind} if self.kind else {}
        if self.guest is not None:
            data.update({f"guest.{k}": v for k, v in plain(self.guest).items()})
        data.update({k: plain(v) for k, v in self.values.items()})
        data.update({f"host.{k}": plain(v) for k, v in self.host.items()})
        return data


def plain(value):
    """JSON-able data: dataclasses as dicts, tuples as lists, paths as text."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def reads(kind: str, stage: str) -> "list[str]":
    """The config keys a stage reads and hashes for a guest kind, from the
    table: ``[answers]`` and ``[vm]`` keys by name, and all of ``shares`` as
    one value when any share key is read."""
    keys = []
    for row in settings.CORE:
        if stage in row.stages_for(kind) and row.section in ("answers", "vm"):
            keys.append(row.key)
        elif stage in row.stages_for(kind) and row.section == "shares.NAME" \
                and "shares" not in keys:
            keys.append("shares")
    return keys


def limits(cfg, stage: str) -> dict:
    """The keys whose rows say the stage reads them without hashing them."""
    return {row.key: cfg.value(row.key) for row in settings.CORE if stage in row.limits}


def for_stage(cfg, stage: str) -> StageInputs:
    """The record of ``stage`` (one of ``STAGES``) for this config."""
    kind = guests.kind_for(cfg)
    values = {key: cfg.value(key) for key in reads(cfg.guest_kind, stage)}
    host = {}
    if stage == "payload":
        host = kind.host_facts()
    elif stage == "snapshot":
        # A snapshot only loads into the QEMU that made it. Over the agent
        # the saved guest holds the resident runner, started from this text.
        host = {"qemu": qemu.version(kind.arch().qemu)}
        if cfg.value("vm.channel") == "agent":
            host["runner"] = agent.runner_script()
    return StageInputs(stage, cfg.guest_kind, kind.settings_for(stage), values, host,
                       limits(cfg, stage))


def for_sources(cfg, name: str) -> StageInputs:
    """A ``[sources.NAME]``'s record: its table and, for a Debian source
    package, the suite and mirror it is fetched from (a Debian guest's;
    Debian's defaults for other kinds: the rows of ``guest.suite`` and
    ``guest.mirror`` name this stage) and the apt sources they resolve to on
    this host, which is what apt-get source reads."""
    source = cfg.sources[name]
    values, host = {f"sources.{name}": source}, {}
    if source.kind == "debian":
        from .guests.debian import DebianSettings, from_table
        debian = cfg.guest_settings if isinstance(cfg.guest_settings, DebianSettings) \
            else from_table({})
        values.update({"guest.suite": debian.suite, "guest.mirror": debian.mirror})
        host = {"apt_sources": debian.sources()}
    # Not hashed: where the fetched .dsc's sha256 is recorded and checked.
    return StageInputs(f"sources.{name}", None, None, values, host,
                       limits={"lock": lock.path_for(cfg.path)})


def for_build(cfg, name: str) -> StageInputs:
    """A build's record: its own table; the rest comes from the snapshot."""
    return StageInputs(f"builds.{name}", None, None,
                       {f"builds.{name}": cfg.builds[name]},
                       limits={**limits(cfg, "build:NAME"),
                               # Where a build runs does not change its result.
                               "cluster": cfg.cluster,
                               # Not hashed: keeping a failed copy changes no output.
                               "keep_failed": name in cfg.keep_failed})
