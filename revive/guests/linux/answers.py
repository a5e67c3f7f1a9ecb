"""The answer floppy of the Linux guests (tiny, debian): ``REVIVE.CFG``,
sourced by the installer, and the project's public key."""

from revive.core.errors import UserError


def answer_files(answers: dict) -> "dict[str, bytes]":
    """The answer floppy's files (8.3 upper-case names).

    REVIVE.CFG holds ``KEY='value'`` lines that the installer sources: every
    value is single-quoted (a quote inside becomes ``'\\''``), so no value
    can run a command. The installer still checks each value before use.
    """
    key = answers["ssh_public_key"].strip()
    if "\n" in key or not key.startswith("ssh-"):
        raise UserError("answers: ssh_public_key must be one OpenSSH public "
                        "key line (ssh-ed25519 AAAA…)")
    settings = {
        "REVIVE_HOSTNAME": answers["hostname"],
        "REVIVE_USER": answers["user"],
        "REVIVE_DISK": answers["disk"]["device"],
        "REVIVE_FILESYSTEM": answers["disk"]["filesystem"],
    }
    return {
        "REVIVE.CFG": config_file(settings),
        "AUTHKEYS": (key + "\n").encode(),
        "SHARES": "".join(_share_line(s) for s in answers.get("shares", [])).encode(),
    }


def config_file(settings: "dict[str, str]") -> bytes:
    lines = ["# revive answers, sourced by the tiny guest's installer\n"]
    for name, value in settings.items():
        value = str(value)
        if "\0" in value:
            raise UserError(f"answers: {name} contains a NUL character")
        lines.append(f"{name}={shell_quote(value)}\n")
    return "".join(lines).encode()


def shell_quote(value: str) -> str:
    """Always single-quoted (unlike shlex.quote, which leaves safe words
    bare), so every line of the file has the same shape."""
    return "'" + value.replace("'", "'\\''") + "'"


def _share_line(share: dict) -> str:
    fields = [share["name"], share["guest"], share["mode"], share["transport"]]
    if any(not f or any(c.isspace() for c in f) for f in fields):
        raise UserError(f"answers: share {share['name']!r}: name and guest "
                        "path must be non-empty and contain no spaces")
    if share["mode"] not in ("ro", "rw") or share["transport"] not in ("9p", "smb"):
        raise UserError(f"answers: share {share['name']!r}: mode must be ro|rw "
                        "and transport 9p|smb")
    return " ".join(fields) + "\n"
