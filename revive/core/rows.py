"""Setting rows and how a table of config.toml is read by them: the
machinery of the one table of settings (``revive.config.settings`` holds
the core rows, each guest kind its ``[guest]`` rows). A row gives a key, its
parser and checks, its default, one line of documentation and the stages
that read it; ``read`` parses and checks one section, each problem one line
naming the key. Below the guest kinds and the config, which both use it.
"""


import re
from dataclasses import dataclass
from typing import Any, Callable

from .errors import UserError


class Invalid(ValueError):
    """What is wrong with a value, in words; ``read`` adds where it is."""


class Required:
    """The default of a key that must be set."""

    def __repr__(self) -> str:
        return "required"


REQUIRED = Required()


@dataclass(frozen=True)
class Parser:
    """Checks a value's TOML type, then ``convert``s it (raising ``Invalid``)."""
    what: str                          # "a whole number": the messages say it
    types: tuple
    convert: Callable = lambda value: value

    def __call__(self, value, seen=None):
        if not isinstance(value, self.types) or (isinstance(value, bool)
                                                 and bool not in self.types):
            raise Invalid(f"{value!r} must be {self.what}")
        return self.convert(value)


@dataclass(frozen=True)
class Setting:
    key: str                # as users write it: section.name
    parse: Callable         # (value as written, values read so far) -> parsed value
    doc: str                # one line, for the reference and revive init
    default: Any = None     # as written in config.toml; None: unset; REQUIRED;
                            # or a function of the values read so far
    stages: Any = ()        # the stages that read it; {kind or "*": stages} where kinds differ
    limits: tuple = ()      # the stages that read it without hashing it: it changes
                            # how long a stage may take, not what it makes
    field: str = ""         # the attribute the parsed value is kept in (default: the name)
    check: "Callable | None" = None   # (parsed, kind class) -> problem or None

    @property
    def section(self) -> str:
        return self.key.rsplit(".", 1)[0]

    @property
    def name(self) -> str:
        return self.key.rsplit(".", 1)[1]

    @property
    def attr(self) -> str:
        return self.field or self.name

    def stages_for(self, kind: str) -> "tuple[str, ...]":
        if isinstance(self.stages, dict):
            return tuple(self.stages.get(kind, self.stages.get("*", ())))
        return tuple(self.stages)


def shown(text: str):
    """Names, for the docs, a default computed from the values before it."""
    def mark(default):
        default.shown = text
        return default
    return mark


# --- parsers ----------------------------------------------------------------

def _text(value: str) -> str:
    if not value.strip():
        raise Invalid("must not be empty")
    return value


STRING = Parser("a string", (str,), _text)
BOOLEAN = Parser("true or false", (bool,))
TABLE = Parser("a table", (dict,))


def choice(*options: str) -> Parser:
    def convert(value):
        if value not in options:
            raise Invalid(f"{value!r} must be one of: {', '.join(options)}")
        return value
    return Parser("a string", (str,), convert)


def match(pattern: "re.Pattern", shape: str, says: str = "is not valid:") -> Parser:
    def convert(value):
        if not pattern.match(value):
            raise Invalid(f"{value!r} {says} {shape}")
        return value
    return Parser("a string", (str,), convert)


def integer(low: int, high: int) -> Parser:
    def convert(value):
        if not low <= value <= high:
            raise Invalid(f"{value} must be between {low} and {high}")
        return value
    return Parser("a whole number", (int,), convert)


def string_list(value: list) -> list:
    if not all(isinstance(v, str) and v for v in value):
        raise Invalid("must be a list of non-empty strings")
    return value


STRINGS = Parser("a list of strings", (list,), string_list)
_SIZE = re.compile(r"^(\d+)\s*([KMGT]?)i?B?$", re.I)
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*(s|m|h)?$")
SIZE_SHAPE = "a size like \"512M\" or \"2G\""
DURATION_SHAPE = "a duration like \"30s\", \"10m\" or \"1h\""


def size_mb(value) -> int:
    m = _SIZE.match(str(value).strip())
    if not m:
        raise Invalid(f"{value!r} must be {SIZE_SHAPE}")
    scale = {"": 1 / (1 << 20), "K": 1 / 1024, "M": 1, "G": 1024, "T": 1 << 20}
    return int(int(m.group(1)) * scale[m.group(2).upper()])


def seconds(value) -> float:
    m = _DURATION.match(str(value).strip())
    if not m or float(m.group(1)) <= 0:
        raise Invalid(f"{value!r} must be {DURATION_SHAPE}")
    return float(m.group(1)) * {"s": 1, None: 1, "m": 60, "h": 3600}[m.group(2)]


SIZE = Parser(SIZE_SHAPE, (str, int), size_mb)
DURATION = Parser(DURATION_SHAPE, (str, int, float), seconds)


# --- reading a table of config.toml -------------------------------------------

def error(file: str, section: str, key: "str | None", problem: str) -> UserError:
    place = f"[{section}]" if section else ""
    if key is not None:
        place = f"{place} {key}".strip()
    return UserError(f"{file}: {place}: {problem}")


def read(rows, data: dict, file: str, section: str, kind=None, settings=None,
         allowed: "tuple[str, ...]" = (), start: "dict | None" = None) -> dict:
    """The values of ``rows`` (one section's) from ``data``, the TOML table as
    written, by name: parsed and checked, defaults applied (the kind's where
    it has one), each problem one line naming the key. Keys in ``allowed``
    are let through unread (another part reads them); ``start`` is what the
    parsers may see besides the values before theirs (e.g. the root)."""
    known = [r.name for r in rows] + list(allowed)
    for name in data:
        if name not in known:
            raise error(file, section, name, f"unknown key; expected one of {', '.join(known)}")
    defaults = kind.defaults(settings) if kind else {}
    minimums = kind.minimums(settings) if kind else {}
    values = dict(start or {})
    for row in rows:
        try:
            value = data.get(row.name)
            if value is None:
                value = defaults.get(row.key, row.default)
                if callable(value):
                    value = value(values)
            if value is REQUIRED:
                what = getattr(row.parse, "what", None)
                raise Invalid("missing" + (f"; it must be {what}" if what else ""))
            values[row.name] = parsed = None if value is None else row.parse(value, values)
            if parsed is None:
                continue                 # unset, and no default
            problem = row.check(parsed, kind) if row.check else None
            if problem:
                raise Invalid(problem)
            least = minimums.get(row.key)
            if least is not None and parsed < row.parse(least, values):
                raise Invalid(f"{value!r} is too small for a {kind.name} guest; at least {least}")
        except Invalid as why:
            raise error(file, section, row.name, str(why)) from None
    return {r.name: values[r.name] for r in rows}
