"""Guest kinds. ``KINDS`` is the one list of them; each is a subclass of
``base.GuestKind`` (the contract) in its own module, imported on first use.
"""

import importlib

from ..core.errors import UserError

KINDS = {
    "tiny": "revive.guests.tiny:TinyKind",
    "debian": "revive.guests.debian:DebianKind",
    "windows": "revive.guests.windows.kind:WindowsKind",
}


def kind_class(name: str):
    try:
        module, cls = KINDS[name].split(":")
    except KeyError:
        raise UserError(f"config.toml: [guest] kind = {name!r} is not a guest kind; use "
                        + " or ".join(f'"{k}"' for k in KINDS)) from None
    return getattr(importlib.import_module(module), cls)


def kind_for(cfg):
    """The kind object of a loaded config."""
    return kind_class(cfg.guest_kind)(cfg.guest_settings)


def kind_from_meta(meta: dict):
    """The kind of the guest a snapshot holds, from its meta.json (which
    keeps the settings the snapshot stage saw, as plain data)."""
    cls = kind_class(meta["guest"])
    saved = meta.get("guest_settings")
    return cls(None if saved is None else cls.Settings(**saved))
