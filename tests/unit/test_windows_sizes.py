"""Machine sizes per Windows version (issue 18, item 3): a config that
leaves [vm] and [answers] disk_size out gets sizes that version's Setup
accepts, and one below the version's minimum is refused in one line naming
the key, through the guest-kind hooks ``defaults`` and ``minimums``."""

import tomllib
from pathlib import Path

import pytest

from revive.config import parse
from revive.core.errors import UserError
from revive.guests.windows.settings import MACHINE, VERSIONS

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "windows.toml"
XP_KEY = "AAAAA-BBBBB-CCCCC-DDDDD-EEEEE"


def config(version: str, vm: "dict | None" = None, answers: "dict | None" = None):
    """examples/windows.toml with only the version changed and its [vm]
    sizes and disk_size left out (or set as given)."""
    raw = tomllib.loads(EXAMPLE.read_text())
    raw["guest"]["windows_version"] = version
    if VERSIONS[version] == "nt5":
        raw["guest"].update(firmware="bios", product_key=XP_KEY)
        del raw["guest"]["image"]
    raw["vm"] = {k: v for k, v in raw["vm"].items() if k not in ("memory", "cpus")}
    raw["vm"].update(vm or {})
    raw["answers"] = dict(answers or {})
    return parse(raw, EXAMPLE.with_name("config.toml"))


@pytest.mark.parametrize("version, memory_mb, cpus, disk_mb", [
    ("11", 4096, 2, 64 * 1024), ("10", 2048, 2, 40 * 1024), ("2022", 2048, 2, 40 * 1024),
    ("2025", 2048, 2, 40 * 1024), ("2008r2", 2048, 2, 40 * 1024),
    ("xp", 512, 1, 16 * 1024), ("2003", 512, 1, 16 * 1024)])
def test_a_config_without_sizes_gets_the_versions_defaults(version, memory_mb, cpus, disk_mb):
    cfg = config(version)
    assert (cfg.vm.memory_mb, cfg.vm.cpus, cfg.answers.disk_size_mb) == \
        (memory_mb, cpus, disk_mb)


@pytest.mark.parametrize("version", sorted(VERSIONS))
def test_every_versions_defaults_pass_its_own_minimums(version):
    config(version)        # raises if a default were below its minimum


@pytest.mark.parametrize("version, vm, answers, message", [
    ("2022", {"memory": "1G"}, {},
     "config.toml: [vm] memory: '1G' is too small for a windows guest; at least 2G"),
    ("11", {"cpus": 1}, {},
     "config.toml: [vm] cpus: 1 is too small for a windows guest; at least 2"),
    ("11", {}, {"disk_size": "40G"},
     "config.toml: [answers] disk_size: '40G' is too small for a windows guest; at least 64G"),
    ("10", {"memory": "512M"}, {},
     "config.toml: [vm] memory: '512M' is too small for a windows guest; at least 1G"),
])
def test_below_the_minimum_is_one_line_naming_the_key(version, vm, answers, message):
    with pytest.raises(UserError) as err:
        config(version, vm, answers)
    assert str(err.value) == message


def test_explicit_sizes_at_or_above_the_minimum_are_kept():
    cfg = config("2022", {"memory": "3G", "cpus": 4}, {"disk_size": "32G"})
    assert (cfg.vm.memory_mb, cfg.vm.cpus, cfg.answers.disk_size_mb) == (3072, 4, 32 * 1024)


def test_xp_may_be_small():
    cfg = config("xp", {"memory": "256M"}, {"disk_size": "8G"})
    assert (cfg.vm.memory_mb, cfg.answers.disk_size_mb) == (256, 8 * 1024)


def test_other_kinds_keep_the_global_defaults():
    cfg = parse({"guest": {"kind": "tiny"}, "shares": {"xchg": {"guest": "/mnt/xchg",
                                                                "mode": "rw"}}},
                REPO / "config.toml")
    assert (cfg.vm.memory_mb, cfg.vm.cpus, cfg.answers.disk_size_mb) == (512, 1, 2048)


def test_the_table_covers_every_version():
    assert set(MACHINE) == set(VERSIONS)
