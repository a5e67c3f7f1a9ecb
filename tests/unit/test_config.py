"""config.toml → Config: defaults, and one-line errors naming the key."""

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from revive.config import load, parse
from revive.core.errors import UserError
from tests import configs

REPO = Path(__file__).resolve().parents[2]
MINIMAL = configs.SHARES


def doit_list(project: Path) -> subprocess.CompletedProcess:
    """`doit list` in a scratch project: loads the config as every run does."""
    return subprocess.run([sys.executable, "-m", "doit", "-f", str(REPO / "dodo.py"),
                           "-d", str(project), "list"],
                          capture_output=True, text=True, timeout=60)


def cfg(text: str):
    return parse(tomllib.loads(text), Path("/project/config.toml"))


def error(text: str) -> str:
    with pytest.raises(UserError) as err:
        cfg(text)
    message = str(err.value)
    assert "\n" not in message
    return message


def test_the_shipped_config_builds_the_demo():
    c = load(REPO / "config.toml")
    assert c.guest_kind == "tiny"
    assert c.vm.memory_mb == 512 and c.vm.accel == "auto"
    assert c.exchange.name == "xchg" and c.exchange.guest == "/mnt/xchg"
    hello = c.builds["hello"]
    assert hello.shares == {"src": REPO / "examples" / "hello"}
    assert hello.timeout == 600 and "hello" in hello.outputs


def test_defaults_and_units():
    c = cfg(MINIMAL + '[vm]\nmemory = "1G"\n[timeouts]\ninstall = "1h"\nboot = 90\n'
            '[builds.b]\ncommand = "true"\ntimeout = "2.5m"\n')
    assert c.vm.memory_mb == 1024 and c.vm.cpus == 1
    assert c.timeouts.install == 3600 and c.timeouts.boot == 90
    assert c.builds["b"].timeout == 150
    assert c.builds["b"].shares == {"src": Path("/project/src")}
    assert c.answers.hostname == "revive" and c.answers.disk_size_mb == 2048


def test_a_build_points_a_share_elsewhere():
    c = cfg(MINIMAL + '[builds.b]\ncommand = "true"\nshares = { src = "other" }\n')
    assert c.builds["b"].shares["src"] == Path("/project/other")


@pytest.mark.parametrize("text, names", [
    ('[vm]\nmemory = "lots"', "[vm] memory"),
    ('[vm]\ncpus = "2"', "[vm] cpus"),
    ('[vm]\ncpus = 0', "[vm] cpus"),
    ('[vm]\naccel = "hax"', "[vm] accel"),
    ('[vm]\nmemroy = "1G"', "[vm] memroy"),
    ('[answers]\nhostname = "no spaces"', "[answers] hostname"),
    ('[answers]\nuser = "Root; rm"', "[answers] user"),
    ('[builds.b]\ncommand = 1', "[builds.b] command"),
    ('[builds.b]\n', "[builds.b] command"),
    ('[builds.b]\ncommand = "x"\ntimeout = "10x"', "[builds.b] timeout"),
    ('[builds.b]\ncommand = "x"\nshares = { nope = "d" }', "[builds.b.shares] nope"),
    ('[builds.b]\ncommand = "x"\nshares = { xchg = "d" }', "[builds.b.shares] xchg"),
    ('[builds.b]\ncommand = "x"\noutputs = ["../etc"]', "[builds.b] outputs"),
    ('[shares.extra]\nguest = "relative"', "[shares.extra] guest"),
    ('[guest]\nkind = "plan9"', "[guest] kind"),
    ('[bogus]', "bogus"),
])
def test_mistakes_name_the_key(text, names):
    assert names in error(MINIMAL + text)


def test_exactly_one_exchange_folder():
    assert "exactly one share" in error('[shares.a]\nguest = "/a"\nhost = "a"\n')
    assert "exchange" in error(MINIMAL + '[shares.b]\nguest = "/b"\nmode = "rw"\n')


def test_broken_toml_is_one_line(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text("[vm\nmemory = 1")
    with pytest.raises(UserError, match="not valid TOML"):
        load(path)


def test_doit_reports_a_bad_config_in_one_line_without_traceback(tmp_path):
    (tmp_path / "config.toml").write_text(MINIMAL + '[vm]\nmemory = "lots"\n')
    proc = doit_list(tmp_path)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = proc.stderr.strip().splitlines()
    assert lines == ["revive: config.toml: [vm] memory: 'lots' must be a size like "
                     "\"512M\" or \"2G\""]


def test_a_second_doit_in_the_same_project_is_refused_in_one_line(tmp_path):
    import fcntl
    (tmp_path / "config.toml").write_text(MINIMAL)
    (tmp_path / "artifacts").mkdir()
    with open(tmp_path / "artifacts" / ".lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        proc = doit_list(tmp_path)
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines() == [
        f"revive: another doit is running in this project ({tmp_path / 'artifacts'}); "
        "wait for it to finish"]
    free = doit_list(tmp_path)
    assert free.returncode == 0, free.stderr


LOAD_THEN_START = """
import fcntl, json, os, signal, sys
from doit.cmd_base import ModuleTaskLoader
from tasks import dodo
from tasks.common import settings
before = (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM), sys.excepthook)
cfg = settings()
loader = ModuleTaskLoader(dodo)
loader.setup({})
loader.load_doit_config()
tasks = loader.load_tasks(cmd=type("Cmd", (), {"execute_tasks": False}), pos_args=[])
after = (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM), sys.excepthook)
loaded = {"tasks": len(tasks), "handlers_kept": before == after,
          "artifacts": os.path.exists(cfg.artifacts)}
dodo.start()
with open(cfg.artifacts / ".lock", "w") as other:
    try:
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        held = False
    except BlockingIOError:
        held = True
print(json.dumps({**loaded, "held": held,
                  "handlers_set": signal.getsignal(signal.SIGINT) != before[0]}))
"""


def test_loading_the_config_and_the_tasks_takes_nothing_start_takes_the_project(tmp_path):
    """Reading config.toml and making the tasks (what `tasks.graph` and
    `doit list` do) neither creates artifacts/, nor takes the lock, nor
    touches signal handlers; ``start`` (where doit starts) does all three."""
    (tmp_path / "config.toml").write_text(MINIMAL)
    (tmp_path / "src").mkdir()
    proc = subprocess.run([sys.executable, "-c", LOAD_THEN_START], cwd=REPO,
                          env=dict(os.environ, REVIVE_CONFIG=str(tmp_path / "config.toml")),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    assert seen["tasks"] > 5
    assert seen == {"tasks": seen["tasks"], "handlers_kept": True, "artifacts": False,
                    "held": True, "handlers_set": True}


def test_a_guest_kind_mistake_is_one_line_at_task_loading(tmp_path):
    (tmp_path / "config.toml").write_text('[guest]\nkind = "windows"\nimage = 1\n'
                                          '[answers]\ndisk_size = "64G"\n'
                                          + MINIMAL.replace('guest = "/mnt/xchg"',
                                                            'guest = "/mnt/xchg"\ntransport = "smb"'))
    proc = doit_list(tmp_path)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("revive: config.toml: [guest] windows_version: None is missing")


@pytest.mark.parametrize("out", [".", "./", "a/..", "x/../.", "../up", "/abs"])
def test_outputs_naming_the_exchange_folder_or_outside_are_refused(out):
    message = error(MINIMAL + f'[builds.b]\ncommand = "true"\noutputs = ["{out}"]\n')
    assert "[builds.b] outputs" in message


def test_an_empty_output_name_is_refused():
    assert "[builds.b] outputs" in error(MINIMAL + '[builds.b]\ncommand = "true"\noutputs = [""]\n')


@pytest.mark.parametrize("name", ["A B;rm -rf /", "1X", "A-B", "A=B", ""])
def test_environment_names_must_be_shell_identifiers(name):
    message = error(MINIMAL + f'[builds.b]\ncommand = "true"\n[builds.b.env]\n"{name}" = "v"\n')
    assert "[builds.b.env]" in message and "environment variable name" in message


def test_valid_environment_names_pass():
    c = cfg(MINIMAL + '[builds.b]\ncommand = "true"\n[builds.b.env]\n_A1 = "v w"\n')
    assert c.builds["b"].env == {"_A1": "v w"}


@pytest.mark.parametrize("second", ["/mnt/src", "/mnt/src/", "/mnt/src/sub", "/mnt", "/"])
def test_two_shares_on_one_or_nested_mount_points_are_refused(second):
    text = MINIMAL.replace('guest = "/mnt/xchg"', f'guest = "{second}"')
    assert "[shares.xchg] guest" in error(text) or "[shares] xchg.guest" in error(text)


def test_sibling_mount_points_pass():
    assert cfg(MINIMAL.replace('"/mnt/xchg"', '"/mnt/src2"')).shares["xchg"].guest == "/mnt/src2"


@pytest.mark.parametrize("memory", ["100T", "2000G"])
def test_memory_beyond_the_host_is_refused_at_load(memory):
    assert "[vm] memory" in error(MINIMAL + f'[vm]\nmemory = "{memory}"\n')


@pytest.mark.parametrize("kind,size", [("tiny", "1M"), ("tiny", "100M"), ("debian", "512M")])
def test_a_disk_too_small_for_the_install_is_refused_at_load(kind, size):
    message = error(f'[guest]\nkind = "{kind}"\n[answers]\ndisk_size = "{size}"\n' + MINIMAL)
    assert "[answers] disk_size" in message and "too small" in message


def test_a_cluster_talks_tls_with_certificates_unless_told_otherwise(monkeypatch):
    monkeypatch.delenv("REVIVE_SCHEDULER", raising=False)
    plain = MINIMAL + '[cluster]\nscheduler = "tcp://h:8786"\nstore = "file:///s"\n'
    assert "[cluster] scheduler: 'tcp://h:8786' is unencrypted and lets anyone who " \
           "reaches it run code on the workers" in error(plain)
    c = cfg(plain + "insecure = true\n").cluster
    assert c.insecure and c.certs is None and c.wait_for_worker == 300
    tls = MINIMAL + '[cluster]\nscheduler = "tls://h:8786"\nstore = "file:///s"\n'
    assert "[cluster] certs: missing: a tls:// scheduler needs" in error(tls)
    c = cfg(tls + 'certs = "certs"\nwait_for_worker = "1m"\n').cluster
    assert c.certs == Path("/project/certs") and not c.insecure and c.wait_for_worker == 60
    monkeypatch.setenv("REVIVE_SCHEDULER", "tcp://other:8786")
    assert "(from REVIVE_SCHEDULER)" in error(tls + 'certs = "certs"\n')
