"""The ``[guest]`` table of a Windows guest, validated once into a frozen object.

Its keys are the rows of ``KEYS`` (their reference: docs/windows.md). Every
problem is one ``UserError`` line naming the key, what is wrong and what to
do. Paths are resolved against the directory of config.toml; whether
the files exist is checked by the stage that reads them (``check_iso`` here,
the Cygwin mirror by ``cygwin.copy_payload``).

The administrator password defaults to ``DEFAULT_PASSWORD``, a fixed,
documented value: the guest has no route out (user networking with
``restrict=on``) and is reached only over SSH with the project's key, so a
secret would protect nothing and would make snapshots differ per machine.
It meets the complexity rule Windows Server enforces on local accounts
(three of upper, lower, digit and symbol; at least 6 characters; not the
account name nor a 3+ character part of the full name, ignoring case), which
``check_password_complexity`` applies to server versions.

Two combinations install a Windows that never reaches SSH, so they are
refused: an account named like the computer (Setup creates it but cannot
add it to Administrators, 0x8007056b in setupact.log, and falls back to
defaultuser0 without auto-logon), and on servers a password the complexity
rule rejects (Setup stops at the password page).
"""

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

from revive.core.rows import Invalid, Setting, read, shown
from revive.core.errors import UserError
from revive.core.files import sha256_file, write_atomic

from . import product_keys
from .cdboot import iso_languages
from .wim import check_edition

DEFAULT_PASSWORD = "Build.Guest.2026"
DEFAULT_COMPUTER_NAME = "REVIVE-VM"
SERVERS = {"2003", "2008", "2008r2", "2012", "2012r2", "2016", "2019", "2022",
           "2025"}

# Windows versions by family: "nt5" (XP, Server 2003: winnt.sif, floppy, IDE,
# no AHCI/e1000 drivers on the media), "nt6.0" (Vista, 2008), "nt6.1" (7,
# 2008 R2), "nt6.2+" (8 and later; the OOBE settings changed).
VERSIONS = {
    "xp": "nt5", "2003": "nt5",
    "vista": "nt6.0", "2008": "nt6.0",
    "7": "nt6.1", "2008r2": "nt6.1",
    "8": "nt6.2+", "8.1": "nt6.2+", "2012": "nt6.2+", "2012r2": "nt6.2+",
    "10": "nt6.2+", "2016": "nt6.2+", "2019": "nt6.2+", "2022": "nt6.2+",
    "11": "nt6.2+", "2025": "nt6.2+",
}
# Released only for x86_64: refuse arch = "x86" for these.
_64BIT_ONLY = {"2008r2", "2012", "2012r2", "2016", "2019", "2022", "11", "2025"}
# Win32-OpenSSH supports Windows 7 / Server 2008 R2 and later.
_NO_OPENSSH = {"xp", "2003", "vista", "2008"}

# Machine sizes per version: (memory, CPUs, disk) given to a config that
# leaves them out, and the least accepted (WindowsKind.defaults/minimums).
# Minimums are Microsoft's system requirements, raised where Setup is known
# to fail above them: Server 2016 and later below 2 GB (0xE0000100;
# dockur/windows), Windows 11's 4 GB, 2 CPUs and 64 GB. Vista and later keep
# at least 20 GB: the install and Cygwin with a build's tools. Disks are
# qcow2: only what is written takes space.
def _sizes(default, least):
    return {"default": dict(zip(("vm.memory", "vm.cpus", "answers.disk_size"), default)),
            "least": dict(zip(("vm.memory", "vm.cpus", "answers.disk_size"), least))}


MACHINE = {
    "xp": _sizes(("512M", 1, "16G"), ("128M", 1, "4G")),
    "2003": _sizes(("512M", 1, "16G"), ("128M", 1, "4G")),
    "vista": _sizes(("1G", 2, "40G"), ("512M", 1, "20G")),
    "2008": _sizes(("1G", 2, "40G"), ("512M", 1, "20G")),
    "7": _sizes(("2G", 2, "40G"), ("1G", 1, "20G")),
    "2008r2": _sizes(("2G", 2, "40G"), ("512M", 1, "32G")),
    "8": _sizes(("2G", 2, "40G"), ("1G", 1, "20G")),
    "8.1": _sizes(("2G", 2, "40G"), ("1G", 1, "20G")),
    "2012": _sizes(("2G", 2, "40G"), ("512M", 1, "32G")),
    "2012r2": _sizes(("2G", 2, "40G"), ("512M", 1, "32G")),
    "10": _sizes(("2G", 2, "40G"), ("1G", 1, "32G")),
    "2016": _sizes(("2G", 2, "40G"), ("2G", 1, "32G")),
    "2019": _sizes(("2G", 2, "40G"), ("2G", 1, "32G")),
    "2022": _sizes(("2G", 2, "40G"), ("2G", 1, "32G")),
    "2025": _sizes(("2G", 2, "40G"), ("2G", 1, "32G")),
    "11": _sizes(("4G", 2, "64G"), ("4G", 2, "64G")),
}

# XP/2003 want the time zone as an index ("Microsoft Time Zone Index Values",
# learn.microsoft.com ms912391). Keys are the names Vista and later use, so
# one config works for both. XP has no "UTC" zone; Greenwich Standard Time is
# UTC+0 without daylight saving.
XP_TIME_ZONES = {
    "Dateline Standard Time": 0, "Samoa Standard Time": 1,
    "Hawaiian Standard Time": 2, "Alaskan Standard Time": 3,
    "Pacific Standard Time": 4, "Mountain Standard Time": 10,
    "US Mountain Standard Time": 15, "Central Standard Time": 20,
    "Canada Central Standard Time": 25, "Mexico Standard Time": 30,
    "Central America Standard Time": 33, "Eastern Standard Time": 35,
    "US Eastern Standard Time": 40, "SA Pacific Standard Time": 45,
    "Atlantic Standard Time": 50, "SA Western Standard Time": 55,
    "Pacific SA Standard Time": 56, "Newfoundland Standard Time": 60,
    "E. South America Standard Time": 65, "GMT Standard Time": 85,
    "Greenwich Standard Time": 90, "UTC": 90,
    "Central Europe Standard Time": 95, "Central European Standard Time": 100,
    "Romance Standard Time": 105, "W. Europe Standard Time": 110,
    "E. Europe Standard Time": 115, "FLE Standard Time": 125,
    "GTB Standard Time": 130, "Russian Standard Time": 145,
    "India Standard Time": 190, "China Standard Time": 210,
    "Singapore Standard Time": 215, "Taipei Standard Time": 220,
    "Tokyo Standard Time": 235, "AUS Eastern Standard Time": 255,
    "New Zealand Standard Time": 290,
}

# XP/2003 [RegionalSettings]: locale name -> (LCID, keyboard layout).
XP_LOCALES = {
    "en-US": ("0409", "00000409"), "en-GB": ("0809", "00000809"),
    "de-DE": ("0407", "00000407"), "fr-FR": ("040c", "0000040c"),
    "es-ES": ("0c0a", "0000040a"), "it-IT": ("0410", "00000410"),
    "nl-NL": ("0413", "00020409"), "pt-BR": ("0416", "00000416"),
    "pl-PL": ("0415", "00000415"), "ru-RU": ("0419", "00000419"),
    "sv-SE": ("041d", "0000041d"), "ja-JP": ("0411", "00000411"),
    "zh-CN": ("0804", "00000804"),
}

_SSH_PACKAGES = ("openssh", "cygrunsrv")


@dataclass(frozen=True)
class WindowsSettings:
    iso: Path
    iso_sha256: str
    windows_version: str
    image: Union[int, str, None] = None
    product_key: Optional[str] = None
    admin_user: str = "revive"
    admin_password: str = DEFAULT_PASSWORD
    computer_name: str = DEFAULT_COMPUTER_NAME
    ui_language: str = "en-US"
    locale: str = "en-US"
    timezone: str = "UTC"
    firmware: str = "bios"
    answer_format: str = "autounattend"
    arch: str = "x86_64"
    cygwin_mirror: Optional[Path] = None
    packages: tuple = _SSH_PACKAGES
    ssh: str = "cygwin"
    openssh_msi: Optional[Path] = None
    rtc: str = "localtime"
    license: str = "retail"

    @property
    def family(self) -> str:
        return VERSIONS[self.windows_version]

    @property
    def server(self) -> bool:
        return self.windows_version in SERVERS

    @property
    def legacy(self) -> bool:
        """XP and Server 2003: winnt.sif, PC machine, IDE, no PowerShell."""
        return self.family == "nt5"

    @property
    def cygwin_packages(self) -> tuple:
        """What Cygwin's setup is asked for: the configured packages plus
        what sshd needs when Cygwin provides SSH. Empty: no Cygwin at all."""
        extra = _SSH_PACKAGES if self.ssh == "cygwin" else ()
        return tuple(dict.fromkeys(self.packages + extra))

    def slice(self) -> dict:
        """Plain data for ``config_changed``: everything but the ISO path
        (its hash stands for it)."""
        data = {r.name: getattr(self, r.name) for r in KEYS if r.name != "iso"}
        return json.loads(json.dumps(data, default=str))


def _fail(key: str, problem: str, todo: str) -> UserError:
    return UserError(f"config.toml: [guest] {key}: {problem}; {todo}")


# Each key's parser takes the value as written and the values read before it
# (the rows are in that order), and raises Invalid("problem; what to do").

def _missing(todo: str):
    """The default of a required key: refused, saying what to set."""
    @shown("required")
    def default(seen):
        raise Invalid(f"missing; {todo}")
    return default


def _choice(key: str, *choices: str):
    def parse(value, seen):
        if value not in choices:
            raise Invalid(f"{value!r} is not one of {', '.join(choices)}; "
                          f"set {key} to one of them")
        return value
    return parse


def _text(pattern: str, todo: str):
    def parse(value, seen):
        if not isinstance(value, str) or not re.fullmatch(pattern, value):
            raise Invalid(f"{value!r} is not valid; {todo}")
        return value
    return parse


def _path(key: str):
    def parse(value, seen):
        if not isinstance(value, str) or not value:
            raise Invalid(f"{value!r} is not a path; set {key} to a file path")
        return (Path(seen["root"]) / os.path.expanduser(value)).resolve()
    return parse


def _version(value, seen) -> str:
    version = str(value).lower() if isinstance(value, (str, int)) else value
    if version not in VERSIONS:
        raise Invalid(f"{value!r} is missing or unknown; set it to one of "
                      f"{', '.join(VERSIONS)}")
    return version


@shown("required")
def _missing_version(seen):
    return _version(None, seen)


@shown("by version")
def _expected_format(seen) -> str:
    return "winnt" if VERSIONS[seen["windows_version"]] == "nt5" else "autounattend"


def _answer_format(value, seen) -> str:
    _choice("answer_format", "autounattend", "winnt")(value, seen)
    if value != _expected_format(seen):
        raise Invalid(f"Windows {seen['windows_version']} does not read {value}; "
                      f"use {_expected_format(seen)!r} or leave it out")
    return value


def _sha256(value, seen) -> str:
    return _text(r"[0-9A-Fa-f]{64}", "set it to the output of sha256sum on the ISO")(
        value, seen).lower()


@shown("required (not XP/2003)")
def _image_default(seen):
    if seen["answer_format"] != "winnt":
        _missing("set it to the index or name of the edition in sources/install.wim "
                 "(wiminfo lists them)")(seen)


def _image(value, seen):
    if seen["answer_format"] == "winnt":
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return value
    if isinstance(value, str) and value.strip() and "\n" not in value:
        return value
    raise Invalid(f"{value!r} is neither an index >= 1 nor a name; "
                  "set it as wiminfo shows the edition")


@shown("by edition")
def _product_key_default(seen):
    if seen["answer_format"] == "winnt":
        _missing("XP and Server 2003 setup stops at the key page without one; "
                 "set your key")(seen)
    # None for an index, an evaluation image or an edition without a
    # published key: the install stage reads install.wim and refuses a
    # non-evaluation image without a key before anything boots.
    return product_keys.default_key(seen["windows_version"], seen["image"],
                                    seen["license"])


@shown('`"retail"` (`"volume"`: Server)')
def _license_default(seen):
    return "volume" if seen["windows_version"] in SERVERS else "retail"


def _product_key(value, seen) -> Optional[str]:
    if value == "" and seen["answer_format"] != "winnt":
        return None         # explicitly none: evaluation images want no key
    return _text(r"[A-Za-z0-9]{5}(-[A-Za-z0-9]{5}){4}",
                 "write it as XXXXX-XXXXX-XXXXX-XXXXX-XXXXX")(value, seen).upper()


def _admin_user(value, seen) -> str:
    user = _text(r"[^\"/\\\[\]:;|=,+*?<>@\s]{1,20}",
                 "use up to 20 letters, digits, '.', '-' or '_'")(value, seen)
    if seen["answer_format"] == "autounattend" and user.lower() == "administrator":
        raise Invalid("the built-in Administrator cannot be created as a new account; "
                      "choose another name")
    return user


def _admin_password(password, seen) -> str:
    if not isinstance(password, str) or not 1 <= len(password) <= 127 \
            or any(ord(c) < 32 or ord(c) == 127 for c in password):
        raise Invalid("must be 1 to 127 printable characters; choose another password")
    # winnt.sif has no escape for '"', and '%' starts an INF string token.
    if seen["answer_format"] == "winnt" and (not password.isascii() or '"' in password
                                             or "%" in password):
        raise Invalid("winnt.sif cannot hold '\"', '%' or non-ASCII characters; "
                      "choose another password")
    return password


_LANGUAGE = r"[a-z]{2,3}(-[A-Za-z]{4})?-[A-Z]{2}"


def _locale(value, seen) -> str:
    locale = _text(_LANGUAGE, "write it like en-US")(value, seen)
    if seen["answer_format"] == "winnt" and locale not in XP_LOCALES:
        raise Invalid(f"{locale!r} has no XP locale id here; use one of {', '.join(XP_LOCALES)}")
    return locale


def _timezone(value, seen) -> str:
    zone = _text(r"[A-Za-z0-9 .()+_-]{1,64}", "use a Windows time zone name such as UTC or "
                 "W. Europe Standard Time (tzutil /l lists them)")(value, seen)
    if seen["answer_format"] == "winnt" and zone not in XP_TIME_ZONES:
        raise Invalid(f"{zone!r} has no XP time zone index here; use one of "
                      + ", ".join(sorted(XP_TIME_ZONES)))
    return zone


def _packages(value, seen) -> tuple:
    name = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*")
    if not isinstance(value, list) or not all(
            isinstance(p, str) and name.fullmatch(p) for p in value):
        raise Invalid(f"{value!r} is not a list of Cygwin package names; "
                      'write it like ["openssh", "make"]')
    return tuple(dict.fromkeys(value))


# The user's ISO is the install stage's input alone: the media and the
# machine are the same whichever ISO file is used. The rest shapes the
# payload, the answer file, the install and the installed machine.
_ISO = ("install",)
_ALL = ("payload", "floppy", "install", "snapshot")

KEYS = (
    Setting("guest.windows_version", _version, "xp 2003 vista 2008 7 2008r2 8 8.1 2012 "
            "2012r2 10 2016 2019 2022 11 2025", _missing_version,
            stages=_ALL),
    Setting("guest.answer_format", _answer_format, "autounattend (Vista and later) or "
            "winnt (XP/2003), chosen by the version", _expected_format, stages=_ALL),
    Setting("guest.iso", _path("iso"), "your Windows install ISO (relative to config.toml)",
            _missing("point it at your Windows install ISO"), stages=_ISO),
    Setting("guest.iso_sha256", _sha256, "the ISO's sha256sum",
            _missing("set it to the output of sha256sum on the ISO"), stages=_ISO),
    Setting("guest.ssh", _choice("ssh", "cygwin", "openssh"), "cygwin (sshd as a service) "
            "or openssh (Win32-OpenSSH, 7 and later; needs openssh_msi)", "cygwin",
            stages=_ALL),
    Setting("guest.ui_language", _text(_LANGUAGE, "write it like en-US: the language of "
                                       "your ISO"),
            "Setup's and Windows' display language: one the ISO has", "en-US", stages=_ALL),
    Setting("guest.locale", _locale, "user and system locale, keyboard", "en-US",
            stages=_ALL),
    Setting("guest.timezone", _timezone, "a Windows time zone name (tzutil /l)", "UTC",
            stages=_ALL),
    Setting("guest.image", _image, "the edition in install.wim: index or name (wiminfo "
            "lists them; not for XP/2003)", _image_default, stages=_ALL),
    Setting("guest.license", _choice("license", *product_keys.LICENSES), "the media: "
            "retail (consumer) or volume (volume licence); decides the default key",
            _license_default, stages=_ALL),
    Setting("guest.product_key", _product_key, "default: the named edition's generic "
            "installation key (retail media) or KMS client key (volume media); \"\": none "
            "(evaluation images); required for XP/2003", _product_key_default, stages=_ALL),
    Setting("guest.admin_user", _admin_user, "the administrator builds run as "
            "(\"Administrator\" on XP/2003)",
            shown('`"revive"` (`"Administrator"`: XP/2003)')(
                lambda seen: "Administrator" if seen["answer_format"] == "winnt" else "revive"),
            stages=_ALL),
    Setting("guest.admin_password", _admin_password, "a fixed, documented default (the "
            "guest has no route out); it passes Server's complexity rule", DEFAULT_PASSWORD, stages=_ALL),
    Setting("guest.computer_name", _text(r"(?![0-9]+$)[A-Za-z0-9-]{1,15}", "use 1-15 "
                                         "letters, digits or '-', not only digits"),
            "never the account's name", DEFAULT_COMPUTER_NAME, stages=_ALL),
    Setting("guest.firmware", _choice("firmware", "bios", "uefi"), "bios or uefi (OVMF)",
            "bios", stages=_ALL),
    Setting("guest.arch", _choice("arch", "x86_64", "x86"), "x86_64 (x86 for XP/2003)",
            shown('`"x86_64"` (`"x86"`: XP/2003)')(
                lambda seen: "x86" if VERSIONS[seen["windows_version"]] == "nt5" else "x86_64"),
            stages=_ALL),
    Setting("guest.cygwin_mirror", _path("cygwin_mirror"), "folder of Cygwin packages "
            "(revive/guests/windows/cygwin.py)", stages=_ALL),
    Setting("guest.packages", _packages, "more Cygwin packages; what sshd needs is added "
            "with ssh = \"cygwin\"",
            shown('`["openssh", "cygrunsrv"]` (`[]`: openssh)')(
                lambda seen: list(_SSH_PACKAGES) if seen["ssh"] == "cygwin" else []),
            stages=_ALL),
    Setting("guest.openssh_msi", _path("openssh_msi"), "the OpenSSH-Win64 MSI, with "
            "ssh = \"openssh\"", stages=_ALL),
    Setting("guest.rtc", _choice("rtc", "utc", "localtime"), "how Windows reads the RTC: "
            "utc or localtime", "localtime", stages=_ALL),
)


def password_complexity_problem(password: str, user: str,
                                full_name: Optional[str] = None) -> Optional[str]:
    """Why Windows' "Password must meet complexity requirements" policy
    (on by default on Server) rejects ``password``, or None. Microsoft's
    rule: not the account name (when longer than 2 characters) nor any
    3+ character token of the full name, ignoring case (tokens split at
    , . - _ # space and tab); at least 6 characters; three of: upper case,
    lower case, digit, other."""
    lowered = password.lower()
    if len(user) > 2 and user.lower() in lowered:
        return f"it contains the account name {user!r}"
    for token in re.split(r"[,.\-_#\s]+", full_name if full_name is not None else user):
        if len(token) >= 3 and token.lower() in lowered:
            return f"it contains {token!r} from the account's full name"
    if len(password) < 6:
        return "it is shorter than 6 characters"
    kinds = sum([any(c.isupper() for c in password), any(c.islower() for c in password),
                 any(c.isdigit() for c in password),
                 any(not c.isalnum() for c in password)])
    if kinds < 3:
        return "it needs three of: upper case, lower case, digit, symbol"
    return None


def _check_combination(s: WindowsSettings) -> None:
    if s.arch == "x86" and s.windows_version in _64BIT_ONLY:
        raise _fail("arch", f"Windows {s.windows_version} has no 32-bit "
                    "release", 'use "x86_64"')
    if s.firmware == "uefi" and (s.legacy or s.arch == "x86"):
        raise _fail("firmware", "this Windows does not boot from 64-bit UEFI",
                    'use "bios"')
    if s.ssh == "openssh" and s.windows_version in _NO_OPENSSH:
        raise _fail("ssh", "Win32-OpenSSH needs Windows 7 / Server 2008 R2 "
                    "or later", 'use "cygwin"')
    if s.ssh == "openssh" and s.openssh_msi is None:
        raise _fail("openssh_msi", "missing", "point it at the OpenSSH-Win64 "
                    "MSI from github.com/PowerShell/Win32-OpenSSH releases")
    if s.admin_user.lower() == s.computer_name.lower():
        raise _fail("computer_name", f"{s.computer_name!r} is also the account's "
                    "name (admin_user); Windows then cannot make it an "
                    "administrator and never logs on", "choose another name")
    if s.server:
        problem = password_complexity_problem(s.admin_password, s.admin_user)
        if problem:
            raise _fail("admin_password", f"Windows Server refuses it: {problem}",
                        "choose another password")
    if s.cygwin_packages and s.cygwin_mirror is None:
        raise _fail("cygwin_mirror", "missing", "point it at a folder made by "
                    "Cygwin's setup 'Download Without Installing' (see "
                    "revive/guests/windows/cygwin.py)")


def from_table(table: dict, base_dir: Path) -> WindowsSettings:
    """Validate the ``[guest]`` table of a Windows guest, row by row."""
    if table.get("kind", "windows") != "windows":
        raise _fail("kind", f"{table['kind']!r} is not 'windows'",
                    "this table is read by the Windows guest")
    values = read(KEYS, table, "config.toml", "guest", allowed=("kind",),
                  start={"root": base_dir})
    settings = WindowsSettings(**values)
    _check_combination(settings)
    return settings


# The guest-kind contract reads every kind's settings the same way.
WindowsSettings.from_table = staticmethod(from_table)


def _cached_sha256(iso: Path, cache: Optional[Path]) -> str:
    """sha256 of the ISO, remembered by (path, size, mtime) in ``cache`` so
    a multi-GB image is hashed once, not on every run."""
    st = iso.stat()
    stamp = f"{iso}:{st.st_size}:{st.st_mtime_ns}"
    known = {}
    if cache and cache.exists():
        try:
            known = json.loads(cache.read_text())
        except ValueError:
            known = {}
    if stamp not in known:
        known[stamp] = sha256_file(iso)
        if cache:
            write_atomic(cache, json.dumps(known, indent=1) + "\n")
    return known[stamp]


def check_iso(settings: WindowsSettings, log: Optional[Path] = None,
              cache: Optional[Path] = None) -> None:
    """Refuse a missing install ISO or one whose sha256 is not iso_sha256."""
    iso = settings.iso
    if not iso.is_file():
        raise _fail("iso", f"{iso} does not exist",
                    "point iso at your Windows install ISO")
    actual = _cached_sha256(iso, cache)
    if actual != settings.iso_sha256:
        if log:
            with open(log, "a") as fh:
                fh.write(f"{iso}: sha256 {actual}, config.toml expects "
                         f"{settings.iso_sha256}\n")
        err = _fail("iso_sha256", f"{iso.name} has sha256 {actual[:12]}..., "
                    f"not {settings.iso_sha256[:12]}...",
                    "check it is the right ISO, or set iso_sha256 to its "
                    "sha256sum")
        raise UserError(str(err), log=str(log) if log else None)
    check_ui_language(settings, log)
    check_edition(settings, log)


def check_ui_language(settings: WindowsSettings, log: Optional[Path] = None) -> None:
    """Refuse a ui_language the ISO does not have: Setup would stop at its
    language page. An ISO whose sources/lang.ini cannot be read is let
    through, with a line in the log."""
    languages = iso_languages(settings.iso)
    if languages is None:
        if log:
            with open(log, "a") as fh:
                fh.write(f"{settings.iso}: no readable sources/lang.ini; "
                         f"ui_language {settings.ui_language} not checked\n")
        return
    if log:
        with open(log, "a") as fh:
            fh.write(f"{settings.iso.name}: UI languages {', '.join(languages)}\n")
    if settings.ui_language.lower() not in (l.lower() for l in languages):
        raise UserError(str(_fail(
            "ui_language", f"{settings.iso.name} has no {settings.ui_language!r} "
            f"(it has {', '.join(languages)}); Setup would stop at its language page",
            f'set ui_language = "{languages[0]}" (locale may stay {settings.locale!r})')),
            log=str(log) if log else None)

