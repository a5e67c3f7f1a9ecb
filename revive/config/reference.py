"""What the table of settings writes: the configuration reference, the two
"what reruns" tables, each kind's ``[guest]`` reference and ``revive init``'s
commented config.toml.

The docs hold the tables between ``<!-- BEGIN name -->`` and ``<!-- END name -->``
markers; ``tests/unit/test_reference.py`` fails when a committed copy is stale.
Regenerate them (and the clone's config.toml) with::

    .venv/bin/python -m revive.config.reference
"""

import json
import re
import sys
import textwrap
import tomllib
from pathlib import Path

from .. import guests
from .settings import CORE, REQUIRED, Setting

REPO = Path(__file__).resolve().parents[2]
COMMAND = ".venv/bin/python -m revive.config.reference"
# The stage graph's file_deps: what a stage's new output makes stale next.
NEXT = {"payload": ("iso",), "iso": ("install",), "floppy": ("install",),
        "install": ("snapshot",), "snapshot": ("every build",),
        "sources:NAME": ("build:NAME",)}
ORDER = ("payload", "iso", "floppy", "install", "snapshot", "sources:NAME", "build:NAME",
         "every build")
WORDS = {"iso": "ISO", "build:NAME": "the builds reading it", "sources:NAME": "`sources:NAME`"}
# What else reruns stages: facts of the host and revive's own files.
FACTS = (
    ("the QEMU version", {"*": ("snapshot",)}),
    ("a kind's files in `revive/guests/…`", {"*": ("payload",)}),
    ("the host's apt sources", {"*": ("sources:NAME",), "debian": ("payload", "sources:NAME")}),
    ("a file in a build's sources", {"*": ("build:NAME",)}),
)


def kinds():
    return [guests.kind_class(k) for k in guests.KINDS]


def toml(value) -> str:
    """A value as config.toml writes it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        if "\n" in value:
            return '"""\n' + value.replace("\\", "\\\\").replace('"""', '\\"""') + '"""'
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{_key(k)} = {toml(v)}" for k, v in value.items()) + " }" \
            if value else "{}"
    raise TypeError(f"no TOML for {value!r}")


def _key(name: str) -> str:
    return name if re.fullmatch(r"[A-Za-z0-9_-]+", name) else json.dumps(name)


def shown_default(row: Setting, kind=None) -> str:
    default = kind.defaults(None).get(row.key, row.default) if kind else row.default
    if default is REQUIRED:
        return "required"
    if default is None:
        return "none"
    if callable(default):
        return getattr(default, "shown", "see meaning")
    return f"`{toml(default)}`"


def _place(row: Setting) -> str:
    return f"`[{row.section}] {row.name}`"


# --- the reference ------------------------------------------------------------

def reference(rows) -> str:
    lines = ["| key | default | meaning |", "|---|---|---|"]
    for row in rows:
        default = shown_default(row)
        others = {k.name: shown_default(row, k) for k in kinds()}
        differ = {n: d for n, d in others.items() if d != default}
        if differ:
            default += " (" + ", ".join(f"{n}: {d}" for n, d in differ.items()) + ")"
        least = {k.name: k.minimums(None).get(row.key) for k in kinds()}
        doc = row.doc
        if all(least.values()):
            doc += "; at least " + _by_kind(least, str)
        elif any(least.values()):
            doc += "; at least " + ", ".join(f"{v} ({k})" for k, v in least.items() if v)
        lines.append(f"| {_place(row)} | {default} | {doc} |")
    return "\n".join(lines)


# --- what reruns --------------------------------------------------------------

def _closure(direct) -> "list[str]":
    found, todo = [], list(direct)
    while todo:
        stage = todo.pop(0)
        if stage not in found:
            found.append(stage)
            todo.extend(NEXT.get(stage, ()))
    if "every build" in found and "build:NAME" in found:
        found.remove("build:NAME")
    return sorted(found, key=ORDER.index)


def _words(stages) -> str:
    return ", ".join(WORDS.get(s, s) for s in stages) or "nothing"


def _groups():
    """(label, {kind: direct stages}) for rows that rerun the same stages."""
    groups: "dict[tuple, list[Setting]]" = {}
    for row in CORE + tuple(r for k in kinds() for r in k.keys):
        owners = [k for k in kinds() if row in k.keys] or kinds()
        signature = tuple((k.name, row.stages_for(k.name)) for k in owners)
        groups.setdefault(signature, []).append(row)
    for signature, rows in groups.items():
        yield _label(rows), dict(signature)
    for label, stages in FACTS:
        yield label, {k.name: stages.get(k.name, stages["*"]) for k in kinds()}


def _label(rows) -> str:
    by_section: "dict[str, list[str]]" = {}
    for row in rows:
        by_section.setdefault(row.section, []).append(row.name)
    parts = []
    for section, names in by_section.items():
        owner = next((k.name for k in kinds() if rows[0] in k.keys), None)
        first = f"`[{section}] {names[0]}`"
        parts.append(" ".join(filter(None, [owner, first]))
                     + "".join(f", `{n}`" for n in names[1:]))
    return "; ".join(parts)


def _by_kind(per_kind: dict, show) -> str:
    """``show`` of the most common value, and the kinds that differ."""
    values = list(per_kind.values())
    usual = max(values, key=values.count)
    text = show(usual)
    differ = [f"{k}: {show(v)}" for k, v in per_kind.items() if v != usual]
    return text + (f" ({'; '.join(differ)})" if differ else "")


def reruns_for_users() -> str:
    lines = ["| you change | reruns |", "|---|---|", "| nothing | nothing |"]
    for label, per_kind in _groups():
        lines.append(f"| {label} | "
                     f"{_by_kind(per_kind, lambda d: _words(_closure(d)))} |")
    return "\n".join(lines)


def reruns_by_stage() -> str:
    lines = ["| change | directly stale | then, through file_deps |", "|---|---|---|"]
    for label, per_kind in _groups():
        then = {k: tuple(s for s in _closure(d) if s not in d) for k, d in per_kind.items()}
        lines.append(f"| {label} | {_by_kind(per_kind, _words)} | "
                     f"{_by_kind(then, lambda d: _words(d) if d else '–')} |")
    return "\n".join(lines)


# --- revive init's config.toml --------------------------------------------------

SECTIONS = tuple(dict.fromkeys(r.key.split(".")[0] for r in CORE))


def _comment(text: str, indent: str = "# ") -> "list[str]":
    return textwrap.wrap(text, 79 - len(indent), initial_indent=indent,
                         subsequent_indent=indent, break_on_hyphens=False)


def _rows_of(kind, section: str) -> "list[Setting]":
    rows = [r for r in CORE if r.section == section]
    return rows + [r for r in kind.keys if r.section == section]


def _key_lines(row: Setting, data: dict, kind) -> "list[str]":
    lines = _comment(row.doc)
    if row.name in data:
        return lines + [f"{row.name} = {toml(data[row.name])}"]
    default = kind.defaults(None).get(row.key, row.default)
    if default is None:
        return lines + [f"# {row.name} = …"]
    if default is REQUIRED or callable(default):
        return lines + [f"# {row.name} = …  ({shown_default(row, kind).strip('`')})"]
    return lines + [f"# {row.name} = {toml(default)}"]


def starter(kind_name: str, example: dict, header: str = "") -> str:
    """config.toml for a ``kind_name`` guest: the ``example``'s values set,
    every other key commented out with its default, each with its doc."""
    kind = guests.kind_class(kind_name)
    out = [header.rstrip("\n"), "#"] + _comment(
        "Written from revive's table of settings (in a clone: " + COMMAND + "); keys "
        "commented out take the default shown.") + [""]
    for section in SECTIONS:
        data = example.get(section)
        rows = _rows_of(kind, section)
        if rows:
            block = [f"[{section}]"]
            for row in rows:
                block += _key_lines(row, data or {}, kind)
            if data is None and any(r.default is REQUIRED for r in rows):
                # A table with keys it cannot do without (e.g. [cluster]): shown, not set.
                block = [line if line.startswith("#") else f"# {line}" for line in block]
            out += block + [""]
            continue
        rows = _rows_of(kind, f"{section}.NAME")
        for n, (name, table) in enumerate((data or {}).items()):
            # The first table shows every key with its doc; the rest, theirs.
            out.append(f"[{section}.{name}]")
            for row in rows:
                if n == 0:
                    out += _key_lines(row, table, kind)
                elif row.name in table:
                    out.append(f"{row.name} = {toml(table[row.name])}")
            out.append("")
    return "\n".join(out).rstrip("\n") + "\n"


def examples() -> Path:
    """revive's examples: installed inside the package (pyproject maps them
    to revive/examples); in a clone, examples/ beside revive/."""
    here = Path(__file__).resolve().parents[1]
    installed = here / "examples"
    return installed if installed.is_dir() else here.parent / "examples"


def example(kind_name: str, demo: "str | None" = None) -> "tuple[dict, str]":
    """An examples/KIND.toml as data and its leading comment; ``demo``
    replaces the demo's path examples/hello."""
    text = (examples() / f"{kind_name}.toml").read_text()
    if demo is not None:
        text = text.replace('"examples/hello"', json.dumps(demo)).replace(
            "examples/hello", demo)
    header = "".join(line + "\n" for line in
                     re.match(r"(?:#[^\n]*\n)*", text).group(0).splitlines())
    return tomllib.loads(text), header


# --- the files -------------------------------------------------------------------

def generated() -> "dict[Path, dict[str, str]]":
    """Each file and the text of each of its marked parts."""
    by_kind = {k.name: k for k in kinds()}
    return {
        REPO / "README.md": {"config-reference": reference(CORE),
                             "what-reruns": reruns_for_users()},
        REPO / "docs/architecture.md": {"what-reruns": reruns_by_stage()},
        REPO / "docs/debian.md": {"guest-keys": reference(by_kind["debian"].keys)},
        REPO / "docs/windows.md": {"guest-keys": reference(by_kind["windows"].keys)},
    }


def fill(text: str, parts: "dict[str, str]", path: Path) -> str:
    for name, body in parts.items():
        begin = f"<!-- BEGIN {name}: generated by {COMMAND} -->"
        pattern = re.compile(re.escape(begin) + r"\n.*?<!-- END " + re.escape(name) + " -->",
                             re.S)
        if not pattern.search(text):
            raise SystemExit(f"{path}: no {begin} ... <!-- END {name} --> markers")
        text = pattern.sub(lambda m: f"{begin}\n{body}\n<!-- END {name} -->", text)
    return text


def clone_config() -> str:
    """The clone's config.toml: what ``revive init`` writes, with the demo
    in examples/hello."""
    return starter("tiny", *example("tiny"))


def stale() -> "list[Path]":
    """The files whose generated parts differ from the table."""
    found = [path for path, parts in generated().items()
             if fill(path.read_text(), parts, path) != path.read_text()]
    if (REPO / "config.toml").read_text() != clone_config():
        found.append(REPO / "config.toml")
    return found


def main() -> None:
    for path, parts in generated().items():
        path.write_text(fill(path.read_text(), parts, path))
    (REPO / "config.toml").write_text(clone_config())
    print("revive: wrote the generated parts of README.md, docs/architecture.md, "
          "docs/debian.md, docs/windows.md and config.toml", file=sys.stderr)


if __name__ == "__main__":
    main()
