"""What a stage reads is what it hashes, checked against doit itself.

The cases are generated from the stages' input records (``revive.inputs``),
not from a list written here: for every key of every record, changing it to
another valid value must make exactly the stages whose records hold it out
of date (doit's own status), and the stages after them follow through their
file_deps; changing a key that no record holds makes nothing out of date.
"""

import copy
import os
import re
import shutil
import subprocess
import sys
import tomllib

import pytest

from revive import config as config_mod
from revive import inputs
from revive.config import settings
from revive.guests import KINDS
from revive.qemu.devices import ARCHES
from tests import configs

from .conftest import REPO, stale

pytestmark = pytest.mark.integration
# The sections whose keys hold one value each (Config.value), from the table.
VALUED = ("answers", "vm", "timeouts")


def records(cfg) -> "dict[str, dict]":
    """Every stage's record as doit hashes it, by doit task name."""
    found = {stage: inputs.for_stage(cfg, stage).plain() for stage in inputs.STAGES}
    for name in cfg.builds:
        found[f"build:{name}"] = inputs.for_build(cfg, name).plain()
    return found


def changed(raw: dict, key: str, cfg) -> dict:
    """``raw`` (the TOML as data) with ``key`` set to another valid value."""
    raw = copy.deepcopy(raw)
    if key == "guest.kind":
        raw.setdefault("guest", {})["kind"] = next(k for k in KINDS if k not in
                                                   (cfg.guest_kind, "windows"))
        return raw
    if key == "shares":
        share = next(iter(raw["shares"].values()))
        share["guest"] += "2"
        return raw
    if key.startswith("builds."):
        raw["builds"][key.split(".", 1)[1]]["command"] += " "
        return raw
    if key.startswith("shares.") and key.endswith(".host"):
        raw["shares"][key.split(".")[1]]["host"] = "elsewhere"
        return raw
    section, name = key.split(".", 1)
    table = raw.setdefault(section, {})
    row = settings.by_key().get(key)
    current = cfg.value(key) if section in VALUED else table.get(name)
    attr = row.attr if row else ""
    choices = {"vm.accel": settings.ACCELS, "vm.save": settings.SAVE_METHODS,
               "vm.channel": settings.CHANNELS}
    if key in choices:
        table[name] = next(c for c in choices[key] if c != current and c != "kvm")
    elif key == "guest.arch":
        table[name] = next(a for a in ARCHES if a != (current or "amd64"))
    elif attr.endswith("_mb"):
        table[name] = f"{current * 2}M"
    elif section == "timeouts":
        table[name] = f"{current * 2:.0f}s"
    elif isinstance(current, int):
        table[name] = current + 1
    elif key == "answers.user":
        table[name] = "builder" if current != "builder" else "root"
    else:
        table[name] = f"{current}x"
    return raw


def test_each_key_a_stage_hashes_makes_exactly_that_stage_stale(built):
    original = built.config.read_text()
    raw = tomllib.loads(original)
    cfg = config_mod.load(built.config)
    by_stage = records(cfg)
    before = stale(built)
    keys = {k for record in by_stage.values() for k in record if not k.startswith("host.")}
    assert {"answers.disk_size", "vm.memory", "shares", "guest.kind"} <= keys
    try:
        for key in sorted(keys):
            built.config.write_text(configs.text(changed(raw, key, cfg)))
            holders = {task for task, record in by_stage.items()
                       if any(k == key or k.startswith(key + ".") for k in record)}
            assert stale(built) - before == holders - before, key
    finally:
        built.config.write_text(original)
    assert stale(built) == before


def test_keys_no_stage_hashes_make_nothing_stale(built):
    original = built.config.read_text()
    raw = tomllib.loads(original)
    cfg = config_mod.load(built.config)
    hashed = {k for record in records(cfg).values() for k in record}
    unread = [r.key for r in settings.CORE if r.section in VALUED and r.key not in hashed]
    unread += [f"shares.{n}.host" for n, s in cfg.shares.items() if s.host is not None]
    assert "timeouts.revive" in unread
    before = stale(built)
    try:
        for key in unread:
            built.config.write_text(configs.text(changed(raw, key, cfg)))
            assert stale(built) == before, key
    finally:
        built.config.write_text(original)


def test_a_bigger_disk_reinstalls_and_the_guest_sees_it(built):
    """The instance that hid the class: [answers] disk_size was hashed by the
    floppy, whose bytes do not carry it, and not by the install."""
    original = built.config.read_text()
    raw = tomllib.loads(original)
    raw.setdefault("answers", {})["disk_size"] = "3G"
    exchange = config_mod.load(built.config).exchange.guest
    raw["builds"]["size"] = {"command": f"cat /sys/block/vda/size > {exchange}/sectors",
                             "outputs": ["sectors"], "timeout": "2m"}
    try:
        built.config.write_text(configs.text(raw))
        info = built.doit("info", "install", check=False).stdout
        assert "answers.disk_size: 2048 -> 3072" in info
        proc = built.doit("build:size")
        assert {"install", "snapshot", "build:size"} <= proc.executed
        assert "floppy" not in proc.executed and "payload" not in proc.executed
        sectors = built.artifacts / "builds" / "size" / "outputs" / "sectors"
        assert int(sectors.read_text()) * 512 == 3 << 30
    finally:
        built.config.write_text(original)


def test_the_same_code_elsewhere_remakes_nothing_and_a_changed_file_is_named(built, tmp_path):
    """Another clone (or a venv made again at another path) with the same
    code: no stage is out of date, the payload's included (its code is
    hashed by relative path, not listed as file_deps by absolute path);
    a change to a file that shapes the payload is named by doit info."""
    clone = tmp_path / "elsewhere"
    shutil.copytree(REPO, clone, ignore=shutil.ignore_patterns(
        ".git", ".venv", "artifacts", "__pycache__", ".pytest_cache", "*.egg-info"))
    doit = [sys.executable, "-m", "doit", "-f", str(clone / "dodo.py"), "-d", str(built.root)]
    env = dict(os.environ, REVIVE_CACHE=str(REPO / "artifacts" / "cache"))

    def run(*args, ok=(0,)):
        proc = subprocess.run([*doit, *args], env=env, capture_output=True, text=True,
                              timeout=300, stdin=subprocess.DEVNULL)
        assert proc.returncode in ok, proc.stdout + proc.stderr
        return proc.stdout

    def stale_from_copy():
        return {m.group(1) for m in re.finditer(r"^R (\S+)", run("list", "--all", "--status"),
                                                re.M)} - {"build"}

    before = stale(built)
    assert "payload" not in before
    assert stale_from_copy() == before
    inittab = clone / "revive" / "guests" / "tiny" / "etc" / "inittab"
    assert inittab.is_file()
    inittab.write_text(inittab.read_text() + "# changed\n")
    assert "payload" in stale_from_copy()
    info = run("info", "payload", ok=(1,))         # doit info: 1 for a task to run
    assert "revive/guests/tiny/etc/inittab changed" in info, info
    assert stale(built) == before
