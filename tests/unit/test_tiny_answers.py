"""The tiny guest's answer floppy: the installer sources REVIVE.CFG, so no
value may be able to run a command, and every value must come back as is."""

import shutil
import subprocess

import pytest

from revive.core.errors import UserError
from revive.guests.linux import answers as linux_answers

HOSTILE = [
    "it's",
    "'; touch {canary}; echo '",
    "$(touch {canary})",
    "`touch {canary}`",
    "\"$(touch {canary})\"",
    "a\nb; touch {canary}",
    "\\'\\\\'$HOME",
    "",
]

SHELLS = [["sh"], ["bash", "--posix"], ["busybox", "sh"]]


def answers(**overrides) -> dict:
    base = {
        "hostname": "tiny",
        "user": "builder",
        "ssh_public_key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExample revive@host",
        "disk": {"device": "/dev/vda", "filesystem": "ext2"},
        "shares": [
            {"name": "src", "guest": "/mnt/src", "mode": "ro", "transport": "9p"},
            {"name": "xchg", "guest": "/mnt/xchg", "mode": "rw", "transport": "smb"},
        ],
    }
    base.update(overrides)
    return base


def source_and_print(shell: "list[str]", cfg, names) -> "list[str]":
    """Source ``cfg`` the way the installer does and print the values,
    NUL-separated, exactly as the shell holds them."""
    if shutil.which(shell[0]) is None:
        pytest.skip(f"{shell[0]} not installed")
    script = '. "$1"; shift; for n; do eval "printf \'%s\\0\' \\"\\$$n\\""; done'
    result = subprocess.run([*shell, "-c", script, "sh", str(cfg), *names],
                            capture_output=True, timeout=10)
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout.decode().split("\0")[:-1]


@pytest.mark.parametrize("shell", SHELLS, ids=lambda s: s[0])
@pytest.mark.parametrize("template", HOSTILE)
def test_hostile_values_come_back_verbatim_and_run_nothing(tmp_path, shell, template):
    canary = tmp_path / "pwned"
    value = template.format(canary=canary)
    files = linux_answers.answer_files(answers(hostname=value, user=value[::-1]))
    cfg = tmp_path / "REVIVE.CFG"
    cfg.write_bytes(files["REVIVE.CFG"])
    got = source_and_print(shell, cfg, ["REVIVE_HOSTNAME", "REVIVE_USER",
                                        "REVIVE_DISK", "REVIVE_FILESYSTEM"])
    assert got == [value, value[::-1], "/dev/vda", "ext2"]
    assert not canary.exists()


def test_every_line_is_a_comment_or_a_single_quoted_assignment():
    text = linux_answers.answer_files(answers(hostname="x'y"))["REVIVE.CFG"].decode()
    for line in text.splitlines():
        assert line.startswith("#") or "='" in line and line.endswith("'")


def test_floppy_files_have_8_3_names_and_the_key_and_shares():
    files = linux_answers.answer_files(answers())
    assert set(files) == {"REVIVE.CFG", "AUTHKEYS", "SHARES"}
    assert files["AUTHKEYS"] == answers()["ssh_public_key"].encode() + b"\n"
    assert files["SHARES"] == b"src /mnt/src ro 9p\nxchg /mnt/xchg rw smb\n"


def test_no_shares_give_an_empty_share_list():
    assert linux_answers.answer_files(answers(shares=[]))["SHARES"] == b""


@pytest.mark.parametrize("key", ["ssh-ed25519 AAAA\nssh-rsa BBBB", "not a key", ""])
def test_the_key_must_be_one_openssh_line(key):
    with pytest.raises(UserError):
        linux_answers.answer_files(answers(ssh_public_key=key))


@pytest.mark.parametrize("share", [
    {"name": "src", "guest": "/mnt/my src", "mode": "ro", "transport": "9p"},
    {"name": "src", "guest": "/mnt/src", "mode": "rwx", "transport": "9p"},
    {"name": "src", "guest": "/mnt/src", "mode": "ro", "transport": "nfs"},
])
def test_shares_the_installer_cannot_read_are_refused(share):
    with pytest.raises(UserError):
        linux_answers.answer_files(answers(shares=[share]))


def test_a_nul_character_is_refused():
    with pytest.raises(UserError):
        linux_answers.answer_files(answers(hostname="a\0b"))
