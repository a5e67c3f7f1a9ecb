"""What the table of settings writes: the docs' tables, the clone's
config.toml and revive init's file, all fresh, and each config that init
writes reads back to the config of its kind's example."""

import tomllib
from pathlib import Path

import pytest

from revive import inputs
from revive.config import parse, reference, settings
from revive.guests import KINDS, kind_class

PROJECT = Path("/project/config.toml")


def test_the_generated_parts_of_the_docs_and_config_toml_are_fresh():
    stale = reference.stale()
    assert not stale, (f"{', '.join(map(str, stale))} differ from the table of settings; "
                       f"run {reference.COMMAND}")


def test_a_stale_table_is_noticed(tmp_path):
    readme = (reference.REPO / "README.md").read_text()
    changed = readme.replace("| `[vm] cpus` |", "| `[vm] CPUs` |")
    assert changed != readme
    parts = reference.generated()[reference.REPO / "README.md"]
    assert reference.fill(changed, parts, tmp_path) == readme


@pytest.mark.parametrize("kind", list(KINDS))
def test_init_writes_every_key_with_its_doc_and_reads_back_as_the_example(kind):
    example, header = reference.example(kind, demo="hello")
    text = reference.starter(kind, example, header)
    assert parse(tomllib.loads(text), PROJECT) == parse(example, PROJECT)
    rows = settings.CORE + kind_class(kind).keys
    for row in rows:
        if row.section in ("guest", "answers", "vm", "timeouts", "cluster"):
            assert f"{row.name} = " in text, row.key
        assert reference._comment(row.doc)[0] in text or row.section.endswith(".NAME") \
            and not example.get(row.section.split(".")[0]), row.key


def test_the_clone_config_is_what_init_writes_but_for_the_demo_path():
    example, header = reference.example("tiny", demo="hello")
    init = reference.starter("tiny", example, header)
    clone = (reference.REPO / "config.toml").read_text()
    assert clone != init
    assert clone.replace("examples/hello", "hello") == init


@pytest.mark.parametrize("kind", list(KINDS))
def test_each_record_holds_exactly_the_keys_whose_rows_name_its_stage(kind):
    cfg = parse(reference.example(kind)[0], PROJECT)
    for stage in inputs.STAGES:
        record = inputs.for_stage(cfg, stage).plain()
        named = {r.key for r in settings.CORE if stage in r.stages_for(kind)}
        held = {k for k in record if not k.startswith("host.")}
        core = {k for k in held if not k.startswith("guest.") or k == "guest.kind"}
        expect = {k for k in named if not k.startswith("shares.")}
        expect |= {"shares"} if any(k.startswith("shares.") for k in named) else set()
        assert core == expect, stage
        guest = {k for k in held - core if record[k] is not None}
        assert guest <= {r.key for r in kind_class(kind).keys if stage in r.stages_for(kind)}


def test_a_kind_default_and_minimum_apply_and_name_the_key():
    example = reference.example("debian")[0]
    del example["answers"]["disk_size"], example["vm"]["memory"]
    cfg = parse(example, PROJECT)
    assert (cfg.answers.disk_size_mb, cfg.vm.memory_mb) == (4096, 1024)
    example["answers"]["disk_size"] = "900M"
    with pytest.raises(Exception) as err:
        parse(example, PROJECT)
    assert str(err.value) == ("config.toml: [answers] disk_size: '900M' is too small for "
                              "a debian guest; at least 1G")
