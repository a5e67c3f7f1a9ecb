"""Guest kinds. Each provides the install media, its device model, how it
reaches SSH, how it mounts shares and a readiness check; everything else
(stages, waits, snapshots, collection) is shared."""

from ..core.errors import UserError


def module_for(kind: str):
    if kind == "tiny":
        from . import tiny
        return tiny
    raise UserError(f"config.toml: [guest] kind = {kind!r} is not available in this "
                    "version of revive; use kind = \"tiny\"")
