"""Stage inputs: one frozen record per stage of everything its action reads.

The record feeds both doit's up-to-date check (``plain()``, hashed and
diffed by ``common.config_slice``) and the action, which gets the record and
not the config: a setting the action reads is in the record, so it is hashed
by construction. A missing key is a ``KeyError``, never a silent default.

What goes in:
- ``guest``: the guest kind's settings, as the stage may see them
  (``GuestKind.settings_for``);
- ``values``: config keys (``"answers.disk_size"``, ``"shares"``,
  ``"builds.NAME"``) the kind declares the stage reads (``GuestKind.reads``);
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
from .machine import qemu

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


def for_stage(cfg, stage: str) -> StageInputs:
    """The record of ``stage`` (one of ``STAGES``) for this config."""
    kind = guests.kind_for(cfg)
    values = {key: cfg.value(key) for key in kind.reads.get(stage, ())}
    host, limits = {}, {}
    if stage == "payload":
        host = kind.host_facts()
    elif stage == "install":
        limits = {"vm.accel": cfg.vm.accel, "timeouts.install": cfg.timeouts.install}
    elif stage == "snapshot":
        # A snapshot only loads into the QEMU that made it.
        host = {"qemu": qemu.version(kind.arch().qemu)}
        limits = {"timeouts.boot": cfg.timeouts.boot}
    return StageInputs(stage, cfg.guest_kind, kind.settings_for(stage), values, host, limits)


def for_build(cfg, name: str) -> StageInputs:
    """A build's record: its own table; the rest comes from the snapshot."""
    return StageInputs(f"builds.{name}", None, None,
                       {f"builds.{name}": cfg.builds[name]},
                       limits={"timeouts.revive": cfg.timeouts.revive,
                               # Where a build runs does not change its result.
                               "cluster": cfg.cluster,
                               # Not hashed: keeping a failed copy changes no output.
                               "keep_failed": name in cfg.keep_failed})
