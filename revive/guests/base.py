"""The guest-kind contract: what a kind of guest provides to the stages.

A kind is a subclass of ``GuestKind`` listed once in ``revive.guests.KINDS``.
Required hooks raise ``NotImplementedError``; optional ones have defaults
that suit a Linux guest reached over SSH. Nothing outside a kind branches on
its name: stages, config validation and revive ask the kind.

A kind's ``[guest]`` keys are rows of the table of settings
(``revive.core.rows.Setting``) in ``keys``; ``Settings.from_table`` reads the
``[guest]`` table through them into a frozen dataclass. A kind is made from
its settings alone; whatever else a hook reads comes in the stage's input
record (``revive.inputs``), which holds what the table's rows say the stage
reads, so that what a stage reads is exactly what it hashes.
"""

from dataclasses import dataclass, replace
from pathlib import Path

from ..core.rows import read
from ..qemu import accel as accel_mod
from ..qemu.devices import ARCHES, Arch, DeviceModel


@dataclass(frozen=True)
class NoSettings:
    """A kind with no ``[guest]`` keys besides ``kind``."""

    @classmethod
    def from_table(cls, table: dict, root: Path) -> "NoSettings":
        read((), table, "config.toml", "guest", allowed=("kind",))
        return cls()


class GuestKind:
    name = ""
    Settings = NoSettings
    iso_volume = "REVIVE_INSTALL"
    iso_boot = None                  # El Torito boot of the payload ISO, or None
    transports = ("9p", "smb")       # how shares may reach it; the first is the default
    drive_letters = False            # may a share's guest path be "S:"?
    channels = ("agent", "ssh")      # [vm] channel values it offers
    channel_note = ""                # why a channel is missing, for the error
    keys = ()                        # its [guest] keys: rows of the table of settings

    def __init__(self, settings):
        self.settings = settings

    @classmethod
    def defaults(cls, settings) -> dict:
        """Defaults of config keys that differ for this kind, by key as users
        write it (``{"vm.memory": "4G", "vm.channel": "ssh"}``), as written
        in config.toml. ``settings`` is the kind's validated ``[guest]``
        settings, or None when the docs are made (then: the usual values)."""
        return {"vm.channel": cls.channels[0], "shares.NAME.transport": cls.transports[0]}

    @classmethod
    def minimums(cls, settings) -> dict:
        """The least value of keys, as ``defaults``; less is refused at load
        in one line naming the key and the minimum."""
        return {"vm.memory": "128M", "answers.disk_size": "512M"}

    def settings_for(self, stage: str):
        """The settings a stage sees: the fields whose rows in ``keys`` name
        the stage, the others blanked; None when it sees none. What a stage
        sees is what it hashes."""
        seen = {r.attr for r in self.keys if stage in r.stages_for(self.name)}
        if self.settings is None or not seen:
            return None
        return self.hidden(self.settings, *(r.attr for r in self.keys if r.attr not in seen))

    @classmethod
    def check_shares(cls, settings, shares) -> None:
        """Refuse, at config load, shares this kind cannot mount (UserError)."""

    @classmethod
    def hidden(cls, settings, *names: str):
        """``settings`` with ``names`` blanked, so a stage cannot read them."""
        return replace(settings, **{n: None for n in names})

    # -- media -------------------------------------------------------------
    def source_files(self) -> "list[Path]":
        """Repository files that shape the payload (its file_dep)."""
        raise NotImplementedError

    def payload_needs_key(self) -> bool:
        return False

    def host_facts(self) -> dict:
        """Facts of the host that shape the payload (hashed with it)."""
        return {}

    def build_payload(self, inputs, paths, out: Path, log: Path) -> None:
        raise NotImplementedError

    def floppy_files(self, inputs, public_key: str) -> "dict[str, bytes]":
        raise NotImplementedError

    # -- install -----------------------------------------------------------
    def probe_kernel(self, paths) -> Path:
        """A Linux kernel the KVM probe boots."""
        raise NotImplementedError

    def check_install_inputs(self, inputs, paths, log: Path) -> None:
        pass

    def install_files(self, paths) -> "list[Path]":
        return [paths.iso, paths.floppy, paths.payload_manifest]

    def install_devices(self, inputs, paths, disk: Path) -> DeviceModel:
        raise NotImplementedError

    def install_report(self, console: str) -> dict:
        """{done, failed, host_key, step} read from the serial console, and
        optionally ``facts``: more keys for base.json (e.g. ``expires``, when
        an evaluation licence runs out; revive then refuses later copies)."""
        raise NotImplementedError

    def during_install(self, vm, elapsed: float) -> None:
        pass

    def after_install(self, paths, disk: Path) -> None:
        pass

    # -- snapshot and builds -----------------------------------------------
    def arch(self) -> Arch:
        """The guest's architecture: its row of ``devices.ARCHES``."""
        return ARCHES["amd64"]

    def machine_alias(self) -> str:
        return self.arch().machine

    def cpu_model(self, accel: str) -> str:
        return accel_mod.default_cpu(accel, self.arch())

    def installed_devices(self, inputs) -> DeviceModel:
        """The installed system's device model with ``@token@`` placeholders
        (``@disk@``, ``@port@``, ``@smb@``, ``@artifacts@``, ``@share.NAME@``)
        for what differs between the snapshot run and each revive."""
        raise NotImplementedError

    def vm_values(self, artifacts: Path, work: Path, shares=()) -> "dict[str, str]":
        """Token values a kind adds for one VM (e.g. its firmware variables,
        its own SMB server's configuration for ``shares``)."""
        return {}

    def revive_files(self) -> "tuple[str, ...]":
        """The files a revive reads besides the snapshot and base.qcow2,
        relative to artifacts/ (those ``installed_devices`` names through
        ``@artifacts@``, and those ``vm_values`` copies): a cluster worker
        is sent exactly these."""
        return ()

    def ssh_user(self) -> str:
        return "root"

    def build_user(self, inputs) -> str:
        return inputs["answers.user"]

    def prepare_shares(self, shares) -> str:
        """Shell command run at the snapshot: check every share mounts, then
        leave none mounted (migration is refused while 9p is mounted)."""
        raise NotImplementedError

    def after_revive(self, shares, now: float, trees: "dict[str, int] | None" = None) -> str:
        """Shell command run after each revive: the clock, the shares.
        ``trees``: the shares whose folder is an image in a CD drive of
        the device model's ``tree_drives`` (share name → drive number), to
        be mounted from there instead."""
        raise NotImplementedError

    def program(self, name: str) -> str:
        """How the steps revive runs around a command (``after_revive``,
        the guest agent's own mount of its output share) call the program
        ``name`` (mount, date): by default by its name on the guest's
        PATH."""
        return name

    def before_keep(self, shares) -> str:
        """Shell command run before a failed copy is saved to be reopened
        later: leave no share mounted (QEMU refuses to migrate with 9p
        mounted, and an SMB session does not survive the revive: the mount
        would answer "Stale file handle"). It fails when one stays."""
        return "true"

    def command_line(self, command: str, env: "dict[str, str]", user: str, shares=()) -> str:
        raise NotImplementedError
