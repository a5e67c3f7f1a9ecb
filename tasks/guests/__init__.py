"""Guest kinds. Each provides the install media, its device model, how it
reaches SSH, how it mounts shares and a readiness check; everything else
(stages, waits, snapshots, collection) is shared.

``kind_for(cfg)`` returns an object with the methods the stages call; see
``linux.LinuxKind`` for the full list.
"""

from ..core.errors import UserError


def kind_for(cfg):
    if cfg.guest_kind == "tiny":
        from . import tiny
        from .linux import LinuxKind
        return LinuxKind(cfg, tiny)
    if cfg.guest_kind == "debian":
        from .debian import DebianKind
        return DebianKind(cfg)
    if cfg.guest_kind == "windows":
        from .windows.kind import WindowsKind
        return WindowsKind(cfg)
    raise UserError(f"config.toml: [guest] kind = {cfg.guest_kind!r} is not available "
                    "in this version of revive; use kind = \"tiny\", \"debian\" or \"windows\"")
