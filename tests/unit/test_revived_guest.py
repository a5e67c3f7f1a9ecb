"""The commands that prepare a revived Linux copy, run by a real shell."""

import os
import subprocess

import pytest

import tomllib
from pathlib import Path

from revive import inputs
from revive.config import parse
from revive.guests.linux import clock_command, entropy_command


@pytest.mark.parametrize("shell", ["dash", "sh"])
def test_the_host_entropy_reaches_the_guest_byte_for_byte(shell):
    seed = os.urandom(64) + bytes(range(256))
    command = entropy_command(seed).replace("/dev/urandom", "/dev/stdout")
    out = subprocess.run([shell, "-c", command], capture_output=True, check=True).stdout
    assert out == seed


def test_the_clock_is_set_in_whole_seconds_both_dates_accept():
    command = clock_command(1795805517.6)
    assert command.startswith("date -u -s @1795805518 ")
    # GNU date parses what it would set (without setting the host's clock).
    parsed = subprocess.run(["date", "-u", "-d", "@1795805518", "+%s"], capture_output=True,
                            text=True, check=True).stdout.strip()
    assert parsed == "1795805518"


def test_a_clock_that_cannot_be_set_fails_with_a_message():
    command = clock_command(0).replace("date -u -s", "false")
    proc = subprocess.run(["sh", "-c", command + "; echo not reached"], capture_output=True,
                          text=True)
    assert proc.returncode == 1
    assert proc.stdout.strip() == "revive: setting the guest clock failed"


def test_the_linux_device_model_gives_every_qemu_a_fresh_generation_id():
    cfg = parse(tomllib.loads('[shares.x]\nguest = "/mnt/x"\nmode = "rw"\n'),
                Path("/p/config.toml"))
    record = inputs.for_stage(cfg, "snapshot")
    argv = record.guest_kind().installed_devices(record).render()
    i = argv.index("vmgenid,guid=auto")
    assert argv[i - 1] == "-device"
