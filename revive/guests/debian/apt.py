"""Where Debian packages come from: the host's apt sources, or a mirror URL.

``mirror = "host"`` (the default) reuses the archive URIs, suites and keys
the host's apt is configured with (``/etc/apt/sources.list``, one-line
format, and ``/etc/apt/sources.list.d/*.list`` / ``*.sources``, the deb822
format), so revive names no archive host itself and works behind the same
mirror or proxy as the host. An explicit URL is used as is, for the suite
alone.

The result is deb822 text, handed to mmdebstrap (the guest's packages) and
to a private apt configuration (source packages for builds).
"""

import re
from dataclasses import dataclass
from pathlib import Path

from revive.core.errors import UserError

SOURCES_LIST = "etc/apt/sources.list"
SOURCES_PARTS = "etc/apt/sources.list.d"


@dataclass(frozen=True)
class Source:
    """One archive URI and suite, as an apt sources entry."""

    uri: str
    suite: str
    components: "tuple[str, ...]"
    signed_by: "str | None" = None

    def stanza(self, types: str = "deb") -> str:
        lines = [f"Types: {types}", f"URIs: {self.uri}", f"Suites: {self.suite}",
                 f"Components: {' '.join(self.components)}"]
        if self.signed_by:
            lines.append(f"Signed-By: {_field_value(self.signed_by)}")
        return "\n".join(lines) + "\n"


def deb822(sources: "list[Source]", types: str = "deb") -> str:
    """The sources as a deb822 ``.sources`` file."""
    return "\n".join(s.stanza(types) for s in sources)


def _field_value(value: str) -> str:
    # A multi-line value (an inline key) continues on lines starting with a
    # space; an empty line inside it is written as " .".
    lines = value.split("\n")
    return "\n".join([lines[0]] + [f" {l}" if l.strip() else " ." for l in lines[1:]])


# --- the host's sources ---------------------------------------------------

def host_sources(root: Path = Path("/")) -> "list[Source]":
    """Every enabled binary (``deb``) source the host's apt reads, in apt's
    order: sources.list first, then sources.list.d sorted by name."""
    found: "list[Source]" = []
    main = Path(root, SOURCES_LIST)
    if main.is_file():
        found += parse_one_line(main.read_text())
    parts = Path(root, SOURCES_PARTS)
    if parts.is_dir():
        for path in sorted(parts.iterdir()):
            if path.suffix == ".list":
                found += parse_one_line(path.read_text())
            elif path.suffix == ".sources":
                found += parse_deb822(path.read_text())
    return found


def parse_one_line(text: str) -> "list[Source]":
    """``deb [opt=value …] URI SUITE COMPONENT…`` lines (sources.list(5))."""
    found = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        m = re.match(r"^(\S+)\s+(?:\[([^\]]*)\]\s+)?(\S+)\s+(\S+)\s*(.*)$", line)
        if not m or m.group(1) != "deb":
            continue
        options = dict(o.split("=", 1) for o in (m.group(2) or "").split() if "=" in o)
        found.append(Source(uri=m.group(3), suite=m.group(4),
                            components=tuple(m.group(5).split()),
                            signed_by=options.get("signed-by")))
    return found


def parse_deb822(text: str) -> "list[Source]":
    """Stanzas of ``Types``, ``URIs``, ``Suites``, ``Components``,
    ``Signed-By`` (a path or an inline key) and ``Enabled``."""
    found = []
    for stanza in _stanzas(text):
        if stanza.get("enabled", "yes").strip().lower() == "no":
            continue
        if "deb" not in stanza.get("types", "").split():
            continue
        for uri in stanza.get("uris", "").split():
            for suite in stanza.get("suites", "").split():
                found.append(Source(uri=uri, suite=suite,
                                    components=tuple(stanza.get("components", "").split()),
                                    signed_by=stanza.get("signed-by") or None))
    return found


def _stanzas(text: str) -> "list[dict[str, str]]":
    stanzas, current, key = [], {}, None
    for line in text.splitlines() + [""]:
        if line.startswith("#"):
            continue
        if not line.strip():
            if current:
                stanzas.append(current)
            current, key = {}, None
        elif line[0] in " \t" and key is not None:
            more = line.strip()
            current[key] += "\n" + ("" if more == "." else more)
        elif ":" in line:
            key, value = line.split(":", 1)
            key = key.strip().lower()
            current[key] = value.strip()
    return stanzas


# --- choosing -------------------------------------------------------------

def release_sources(suite: str, host: "list[Source] | None" = None) -> "list[Source]":
    """The host's Debian archive at ``suite``: its own entries for the suite
    when it has them, else the entries of the release it does carry with
    that release's name replaced (a bookworm host fetching trixie's riscv64
    packages from the same mirror)."""
    return sources_for(suite, "host", host, rebase=True)


def _rebased(suite: str, host: "list[Source]") -> "list[Source]":
    releases = [s.suite for s in host if "-" not in s.suite]
    if not releases:
        return []
    release = releases[0]
    return [Source(s.uri, suite + s.suite[len(release):], s.components, s.signed_by)
            for s in host
            if s.suite in (release, f"{release}-updates", f"{release}-security")]


def sources_for(suite: str, mirror: str, host: "list[Source] | None" = None,
                rebase: bool = False) -> "list[Source]":
    """The sources a ``suite`` is installed from.

    ``mirror = "host"``: the host's entries for the suite and its -updates
    and -security companions. A URL: that archive, the suite, ``main``.
    """
    if mirror != "host":
        return [Source(uri=mirror, suite=suite, components=("main",))]
    host = host_sources() if host is None else host
    wanted = (suite, f"{suite}-updates", f"{suite}-security")
    chosen = []
    for source in host:
        if source.suite in wanted and source not in chosen:
            chosen.append(source)
    if not any(s.suite == suite for s in chosen):
        if rebase:
            chosen = _rebased(suite, host)
            if chosen:
                return chosen
        listed = sorted({s.suite for s in host}) or ["none"]
        raise UserError(f"config.toml: [guest] suite: the host's apt sources carry no "
                        f"{suite!r} (they list {', '.join(listed)}); set [guest] mirror "
                        "to an archive URL that has it, or choose one of those suites")
    return chosen
