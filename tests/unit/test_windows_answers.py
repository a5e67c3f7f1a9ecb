import configparser
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from revive.core.errors import UserError
from revive.guests.windows.answers import (answer_file, autounattend_xml,
                                          floppy_files, winnt_sif)
from revive.guests.windows.settings import from_table
from revive.guests.windows.setup_script import (config_cmd, payload_files,
                                               read_report, share_commands, write_payload)

U = "urn:schemas-microsoft-com:unattend"
WCM = "http://schemas.microsoft.com/WMIConfig/2002/State"
NS = {"u": U}
PUBKEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB6f1q1b8kP5dWq2l0Ysq3m9vQ1u revive"
XP_KEY = "AAAAA-BBBBB-CCCCC-DDDDD-EEEEE"
CYGWIN_FIXTURE = Path(__file__).parent.parent / "data" / "cygwin"


def settings(**overrides):
    base = {"iso": "w.iso", "iso_sha256": "a" * 64, "image": 6,
            "windows_version": "10", "cygwin_mirror": "m",
            }
    base.update(overrides)
    return from_table({k: v for k, v in base.items() if v is not None}, Path("/cfg"))


def xml(**overrides) -> ET.Element:
    return ET.fromstring(autounattend_xml(settings(**overrides)))


def component(root, pass_name, name) -> ET.Element:
    found = root.findall(f"u:settings[@pass='{pass_name}']/u:component[@name='{name}']", NS)
    assert len(found) == 1, (pass_name, name)
    return found[0]


def texts(element, path):
    return [e.text for e in element.findall(path, NS)]


# --- autounattend.xml ------------------------------------------------------------

def test_root_namespaces_and_passes():
    data = autounattend_xml(settings())
    root = ET.fromstring(data)
    assert root.tag == f"{{{U}}}unattend"
    assert f'xmlns:wcm="{WCM}"'.encode() in data.split(b">", 2)[1]  # declared on the root
    assert [s.get("pass") for s in root.findall("u:settings", NS)] == \
        ["windowsPE", "specialize", "oobeSystem"]
    assert all(e.get(f"{{{WCM}}}action") == "add"
               for e in root.iter(f"{{{U}}}LocalAccount"))


@pytest.mark.parametrize("overrides, arch", [
    ({}, "amd64"), ({"windows_version": "7", "arch": "x86"}, "x86")])
def test_every_component_carries_the_identity_attributes(overrides, arch):
    comps = list(xml(**overrides).iter(f"{{{U}}}component"))
    assert len(comps) >= 5
    for comp in comps:
        assert (comp.get("processorArchitecture"), comp.get("publicKeyToken"),
                comp.get("language"), comp.get("versionScope")) == \
            (arch, "31bf3856ad364e35", "neutral", "nonSxS")


def test_windows_pe_values_keep_the_ui_language_apart_from_the_locale():
    root = xml(locale="en-GB")
    intl = component(root, "windowsPE", "Microsoft-Windows-International-Core-WinPE")
    # The ISO's language drives Setup's pages; en-GB only formats and keys.
    assert texts(intl, "u:SetupUILanguage/u:UILanguage") == ["en-US"]
    assert texts(intl, "u:UILanguage") == ["en-US"]
    for tag in ("InputLocale", "SystemLocale", "UserLocale"):
        assert texts(intl, f"u:{tag}") == ["en-GB"]
    oobe = component(root, "oobeSystem", "Microsoft-Windows-International-Core")
    assert texts(oobe, "u:UILanguage") == ["en-US"]
    assert texts(oobe, "u:UserLocale") == ["en-GB"]
    german = component(xml(ui_language="de-DE", locale="de-DE"), "windowsPE",
                       "Microsoft-Windows-International-Core-WinPE")
    assert texts(german, "u:SetupUILanguage/u:UILanguage") == ["de-DE"]
    setup = component(root, "windowsPE", "Microsoft-Windows-Setup")
    assert texts(setup, "u:UserData/u:AcceptEula") == ["true"]


def test_specialize_values():
    root = xml(timezone="W. Europe Standard Time")
    shell = component(root, "specialize", "Microsoft-Windows-Shell-Setup")
    assert texts(shell, "u:ComputerName") == ["REVIVE-VM"]
    assert texts(shell, "u:TimeZone") == ["W. Europe Standard Time"]


def test_image_by_index_and_by_name():
    meta = "u:ImageInstall/u:OSImage/u:InstallFrom/u:MetaData"
    setup = component(xml(image=6), "windowsPE", "Microsoft-Windows-Setup")
    assert texts(setup, f"{meta}/u:Key") == ["/IMAGE/INDEX"]
    assert texts(setup, f"{meta}/u:Value") == ["6"]
    setup = component(xml(image="Windows 10 Pro N & Co"), "windowsPE",
                      "Microsoft-Windows-Setup")
    assert texts(setup, f"{meta}/u:Key") == ["/IMAGE/NAME"]
    assert texts(setup, f"{meta}/u:Value") == ["Windows 10 Pro N & Co"]


def test_product_key_present_or_absent():
    path = "u:UserData/u:ProductKey/u:Key"
    with_key = component(xml(product_key="W269N-WFGWX-YVC9B-4J6C9-T83GX"),
                         "windowsPE", "Microsoft-Windows-Setup")
    assert texts(with_key, path) == ["W269N-WFGWX-YVC9B-4J6C9-T83GX"]
    without = component(xml(), "windowsPE", "Microsoft-Windows-Setup")
    assert texts(without, path) == []


def partitions(setup):
    disk = setup.find("u:DiskConfiguration/u:Disk", NS)
    assert disk.findtext("u:DiskID", namespaces=NS) == "0"
    create = [{c.tag.split("}")[1]: c.text for c in p}
              for p in disk.findall("u:CreatePartitions/u:CreatePartition", NS)]
    modify = [{c.tag.split("}")[1]: c.text for c in p}
              for p in disk.findall("u:ModifyPartitions/u:ModifyPartition", NS)]
    target = setup.find("u:ImageInstall/u:OSImage/u:InstallTo", NS)
    return create, modify, target.findtext("u:PartitionID", namespaces=NS)


def test_bios_layout_is_one_active_ntfs_partition():
    create, modify, target = partitions(
        component(xml(), "windowsPE", "Microsoft-Windows-Setup"))
    assert [(p["Type"], p.get("Extend")) for p in create] == [("Primary", "true")]
    assert [(p["PartitionID"], p.get("Active"), p.get("Format")) for p in modify] == \
        [("1", "true", "NTFS")]
    assert target == "1"


def test_uefi_layout_is_efi_msr_windows():
    create, modify, target = partitions(
        component(xml(firmware="uefi"), "windowsPE", "Microsoft-Windows-Setup"))
    assert [(p["Type"], p.get("Size")) for p in create] == \
        [("EFI", "100"), ("MSR", "16"), ("Primary", None)]
    assert create[2]["Extend"] == "true"
    assert [p.get("Format") for p in modify] == ["FAT32", None, "NTFS"]
    assert not any("Active" in p for p in modify)
    assert target == "3"
    assert modify[2]["PartitionID"] == target


def test_labconfig_only_for_windows_11():
    def labconfig(root):
        setup = component(root, "windowsPE", "Microsoft-Windows-Setup")
        paths = texts(setup, "u:RunSynchronous/u:RunSynchronousCommand/u:Path")
        return sorted(re.search(r"/v (\w+) /t REG_DWORD /d 1", p).group(1)
                      for p in paths if "HKLM\\SYSTEM\\Setup\\LabConfig" in p)
    assert labconfig(xml(windows_version=11)) == \
        ["BypassRAMCheck", "BypassSecureBootCheck", "BypassTPMCheck"]
    assert labconfig(xml(windows_version=10)) == []
    assert labconfig(xml(windows_version="2022")) == []


def test_oobe_system_account_and_autologon():
    root = xml(admin_password="pw")
    shell = component(root, "oobeSystem", "Microsoft-Windows-Shell-Setup")
    account = shell.find("u:UserAccounts/u:LocalAccounts/u:LocalAccount", NS)
    assert account.findtext("u:Name", namespaces=NS) == "revive"
    assert account.findtext("u:Group", namespaces=NS) == "Administrators"
    assert account.findtext("u:Password/u:Value", namespaces=NS) == "pw"
    assert texts(shell, "u:UserAccounts/u:AdministratorPassword/u:Value") == ["pw"]
    assert texts(shell, "u:UserAccounts/u:AdministratorPassword/u:PlainText") == ["true"]
    assert texts(shell, "u:AutoLogon/u:Username") == ["revive"]
    assert texts(shell, "u:AutoLogon/u:Enabled") == ["true"]
    assert texts(shell, "u:AutoLogon/u:Password/u:Value") == ["pw"]
    intl = component(root, "oobeSystem", "Microsoft-Windows-International-Core")
    assert texts(intl, "u:UserLocale") == ["en-US"]


def test_oobe_settings_follow_the_windows_version():
    def oobe(version):
        shell = component(xml(windows_version=version), "oobeSystem",
                          "Microsoft-Windows-Shell-Setup")
        return {c.tag.split("}")[1]: c.text for c in shell.find("u:OOBE", NS)}
    modern = oobe("11")
    assert modern["HideEULAPage"] == modern["HideOnlineAccountScreens"] == "true"
    assert modern["HideWirelessSetupInOOBE"] == "true" and modern["ProtectYourPC"] == "3"
    assert "SkipMachineOOBE" not in modern
    seven = oobe("7")
    assert seven["SkipMachineOOBE"] == seven["SkipUserOOBE"] == "true"
    assert "HideOnlineAccountScreens" not in seven      # unknown to 7's Setup


def first_logon_command(root):
    shell = component(root, "oobeSystem", "Microsoft-Windows-Shell-Setup")
    commands = shell.findall("u:FirstLogonCommands/u:SynchronousCommand", NS)
    assert len(commands) == 1
    return commands[0].findtext("u:CommandLine", namespaces=NS)


def check_marker_command(command, s):
    """The command searches every drive C..Z for the marker the payload CD
    carries at its root and runs the setup.cmd the payload carries."""
    m = re.fullmatch(r"cmd /c for %(\w) in \(([A-Z ]+)\) do "
                     r"@if exist %\1:\\(\S+) call %\1:\\(\S+)", command)
    assert m, command
    assert m.group(2).split() == list("CDEFGHIJKLMNOPQRSTUVWXYZ")
    files = payload_files(s, PUBKEY)
    assert m.group(3) in files and "/" not in m.group(3)
    assert m.group(4).replace("\\", "/") in files


def test_first_logon_runs_the_setup_script_found_by_marker():
    s = settings()
    check_marker_command(first_logon_command(ET.fromstring(autounattend_xml(s))), s)


def test_xml_special_characters_survive():
    password = "a<b>&c\"d'e]]>"
    root = xml(admin_password=password, image="Pro <N> & 'Co'")
    shell = component(root, "oobeSystem", "Microsoft-Windows-Shell-Setup")
    assert texts(shell, "u:AutoLogon/u:Password/u:Value") == [password]
    setup = component(root, "windowsPE", "Microsoft-Windows-Setup")
    assert texts(setup, "u:ImageInstall/u:OSImage/u:InstallFrom/u:MetaData/u:Value") == \
        ["Pro <N> & 'Co'"]


def test_answer_file_name_follows_format():
    assert answer_file(settings())[0] == "autounattend.xml"
    assert answer_file(xp())[0] == "winnt.sif"


# --- winnt.sif ----------------------------------------------------------------------

def xp(**overrides):
    base = {"windows_version": "xp", "image": None, "product_key": XP_KEY}
    base.update(overrides)
    return settings(**base)


def sif(s) -> configparser.ConfigParser:
    data = winnt_sif(s)
    assert b"\r\n" in data and b"\n" not in data.replace(b"\r\n", b"")
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str
    parser.read_string(data.decode("ascii"))
    return parser


def unquote(value: str) -> str:
    assert value.startswith('"') and value.endswith('"'), value
    return value[1:-1]


def test_winnt_sif_sections_and_values():
    p = sif(xp(timezone="W. Europe Standard Time", locale="de-DE",
               admin_password="x&y<z>1"))
    assert set(p.sections()) >= {"Data", "Unattended", "GuiUnattended", "UserData",
                                 "Identification", "Networking", "GuiRunOnce"}
    assert p["Data"]["AutoPartition"] == "1"
    assert unquote(p["Data"]["MsDosInitiated"]) == "0"
    assert unquote(p["Data"]["UnattendedInstall"]) == "Yes"
    u = p["Unattended"]
    assert (u["UnattendMode"], u["OemSkipEula"], u["OemPreinstall"], u["TargetPath"]) == \
        ("FullUnattended", "Yes", "No", "\\WINDOWS")
    g = p["GuiUnattended"]
    assert unquote(g["AdminPassword"]) == "x&y<z>1"
    assert (g["AutoLogon"], g["AutoLogonCount"], g["OEMSkipRegional"], g["OemSkipWelcome"]) \
        == ("Yes", "1", "1", "1")
    assert g["TimeZone"] == "110"
    assert p["RegionalSettings"]["UserLocale"] == "00000407"
    d = p["UserData"]
    assert unquote(d["ProductKey"]) == XP_KEY
    assert unquote(d["ComputerName"]) == "REVIVE-VM"
    assert unquote(d["FullName"]) == "Administrator"
    assert p["Identification"]["JoinWorkgroup"] == "WORKGROUP"
    assert p["Networking"]["InstallDefaultComponents"] == "Yes"


def test_winnt_utc_maps_to_greenwich_without_dst():
    assert sif(xp(timezone="UTC"))["GuiUnattended"]["TimeZone"] == "90"


def test_winnt_gui_run_once_holds_no_inf_token_and_runs_the_floppy_launcher():
    s = xp()
    data = winnt_sif(s).decode("ascii")
    # [GuiRunOnce] values go through INF string substitution: "%x%" is a token.
    assert "%" not in data
    command = unquote(sif(s)["GuiRunOnce"]["Command0"])
    assert command == "A:\\REVIVE.CMD"
    files = floppy_files(s)
    assert set(files) == {"winnt.sif", "REVIVE.CMD"}
    launcher = files["REVIVE.CMD"].decode("ascii")
    assert launcher.endswith("\r\n") and "\n" not in launcher.replace("\r\n", "")
    # In a batch file the loop variable is %%i; as one cmd line it would be %i.
    line = launcher.splitlines()[1].replace("%%", "%")
    check_marker_command("cmd /c " + line.replace(" if exist", " @if exist"), s)
    assert floppy_files(settings()) == {"autounattend.xml": autounattend_xml(settings())}


def test_winnt_refuses_a_percent_in_the_password():
    with pytest.raises(UserError, match=r"admin_password: .*'%'"):
        xp(admin_password="50%off")


# --- the payload CD -------------------------------------------------------------------

def test_config_cmd_values():
    lines = config_cmd(settings(packages=["make"])).decode().split("\r\n")
    values = dict(line[4:].split("=", 1) for line in lines if line.startswith("set "))
    assert values == {"SSH": "cygwin", "ADMIN_USER": "revive", "NT5": "0", "INSTALL_CYGWIN": "1",
                      "CYGSETUP": "setup-x86_64.exe", "CYGROOT": r"C:\cygwin64",
                      "PACKAGES": "make,openssh,cygrunsrv"}
    xp_values = config_cmd(xp()).decode()
    assert "set ADMIN_USER=Administrator\r\n" in xp_values
    odd = config_cmd(settings(admin_user="a&b")).decode()
    assert "set ADMIN_USER=\r\n" in odd and "a&b" not in odd
    assert "set NT5=1\r\n" in xp_values and r"set CYGROOT=C:\cygwin" + "\r\n" in xp_values


def test_payload_files_carry_credentials_verbatim():
    files = payload_files(settings(admin_password="p w&\"x"), PUBKEY + "\n\n")
    assert files["revive/admin-password"] == b'p w&"x'
    assert files["revive/admin-user"] == b"revive"
    assert files["revive/authorized_keys"] == (PUBKEY + "\n").encode()


def test_write_payload_builds_the_whole_cd_tree(tmp_path):
    s = settings(cygwin_mirror=str(CYGWIN_FIXTURE))
    write_payload(s, PUBKEY, tmp_path)
    assert (tmp_path / "REVIVE.TAG").is_file()
    assert (tmp_path / "revive" / "setup.sh").read_bytes() == \
        payload_files(s, PUBKEY)["revive/setup.sh"]
    cygwin = tmp_path / "cygwin"
    assert (cygwin / "setup-x86_64.exe").is_file()
    assert (cygwin / "x86_64" / "setup.ini").is_file()
    assert (cygwin / "x86_64/release/openssh/openssh-9.8p1-1.tar.xz").is_file()
    assert not (cygwin / "x86_64/release/vim").exists()


def test_payload_refuses_a_broken_public_key():
    with pytest.raises(UserError):
        payload_files(settings(), "not a key\nat all")


def test_payload_openssh_needs_the_msi(tmp_path):
    s = settings(ssh="openssh", openssh_msi=str(tmp_path / "absent.msi"))
    with pytest.raises(UserError) as err:
        payload_files(s, PUBKEY)
    assert str(err.value).startswith("config.toml: [guest] openssh_msi: ")


def test_setup_cmd_is_crlf_and_its_labels_exist():
    script = payload_files(settings(), PUBKEY)["revive/setup.cmd"]
    assert script.count(b"\n") == script.count(b"\r\n") > 20
    text = script.decode()
    labels = set(re.findall(r"^:(\w[\w-]*)", text, re.M))
    used = set(re.findall(r"(?:call|goto) :?(\w[\w-]*)", text, re.I)) - {"eof"}
    assert used <= labels, used - labels


@pytest.mark.skipif(not shutil.which("bash"), reason="needs bash")
def test_setup_sh_is_lf_and_parses():
    script = payload_files(settings(), PUBKEY)["revive/setup.sh"]
    assert b"\r" not in script
    result = subprocess.run(["bash", "-n"], input=script, capture_output=True)
    assert result.returncode == 0, result.stderr


def test_read_report_from_serial_log():
    serial = ("boot noise\r\nREVIVE-STEP firewall\r\nREVIVE-STEP ssh-host-config\r\n"
              "REVIVE-HOSTKEY ssh-ed25519 AAAAkey root@REVIVE\r\nREVIVE-DONE\r\n")
    report = read_report(serial)
    assert report.steps == ["firewall", "ssh-host-config"]
    assert report.host_key == "ssh-ed25519 AAAAkey root@REVIVE"
    assert report.done and report.failed is None
    failed = read_report("REVIVE-STEP sshd-start\nREVIVE-FAILED sshd-start\n")
    assert failed.failed == "sshd-start" and failed.host_key is None
    assert failed.last_step == "sshd-start" and not failed.done


# --- shares -----------------------------------------------------------------------------

SHARES = {"src": {"guest": "/mnt/src", "mode": "ro"},
          "xchg": {"guest": "Z:", "mode": "rw"}}


@pytest.mark.skipif(not shutil.which("bash"), reason="needs bash")
def test_cygwin_share_commands_parse_and_map_each_share():
    commands = share_commands(SHARES)
    for command in commands:
        assert subprocess.run(["bash", "-n", "-c", command]).returncode == 0
    uses = [re.search(r"net use (\w): '([^']+)'", c) for c in commands]
    mapped = {m.group(2): m.group(1) for m in uses if m}
    assert mapped == {r"\\10.0.2.4\qemu\src": "Y", r"\\10.0.2.4\qemu\xchg": "Z"}
    assert any(c.endswith("ln -sfn /cygdrive/y /mnt/src") for c in commands)


def test_openssh_share_commands_use_windows_paths():
    shares = {"src": {"guest": r"C:\src", "mode": "ro"}}
    commands = share_commands(shares, ssh="openssh")
    assert r'net use Z: "\\10.0.2.4\qemu\src" "" /user:guest /persistent:yes' in commands[0]
    assert commands[1].endswith(r'mklink /D "C:\src" Z:' + "\\")


@pytest.mark.parametrize("name, guest, ssh", [("src", "relative/dir", "cygwin"),
                                              ("src", "/mnt/a b", "cygwin"),
                                              ("src", "/mnt/src", "openssh"),
                                              ("s&rc", "X:", "cygwin")])
def test_unmappable_shares_are_refused(name, guest, ssh):
    with pytest.raises(UserError) as err:
        share_commands({name: {"guest": guest, "mode": "ro"}}, ssh=ssh)
    assert str(err.value).startswith(f"config.toml: [shares.{name}]")


# --- issue 12: Joliet names, the clock after revive, XP's shares -------------------

def test_a_name_joliet_would_shorten_is_refused_naming_the_file(tmp_path):
    from revive.formats.iso import JOLIET_NAME_MAX as JOLIET_MAX
    from revive.guests.windows.setup_script import check_joliet_names
    release = tmp_path / "cygwin" / "noarch" / "release" / "pkg"
    release.mkdir(parents=True)
    fits = "p" * (JOLIET_MAX - len(".tar.xz")) + ".tar.xz"
    (release / fits).write_bytes(b"x")
    check_joliet_names(tmp_path)
    long_name = "python3-some-very-long-package-name-1.2.3-1-with-more.tar.xz"
    long_name = long_name.replace("more", "more" * 3)
    assert len(long_name) > JOLIET_MAX
    (release / long_name).write_bytes(b"x")
    with pytest.raises(UserError) as err:
        check_joliet_names(tmp_path)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"payload: cygwin/noarch/release/pkg/{long_name} has a "
                              f"{len(long_name)}-byte name (UTF-8)")


def joliet_names(iso: Path) -> "list[str]":
    """The Joliet names as genisoimage's isoinfo reads them (what Windows sees)."""
    listing = subprocess.run(["isoinfo", "-J", "-j", "iso8859-1", "-f", "-i", str(iso)],
                             capture_output=True, check=True)
    return [line.lstrip("/") for line in listing.stdout.decode("latin-1").split()]


@pytest.mark.skipif(not shutil.which("isoinfo"), reason="needs isoinfo")
def test_non_ascii_names_are_counted_as_the_iso_writer_counts_them(tmp_path):
    """40 'é' are 40 UTF-16 units but 80 UTF-8 bytes: the ISO writer cuts
    that name (isoinfo -J reads it back shortened), so the check refuses it;
    32 'é' (64 bytes) come back whole and pass."""
    from revive.formats.iso import write_iso
    from revive.guests.windows.setup_script import check_joliet_names
    fits, cut = "é" * 32, "é" * 40
    iso = tmp_path / "names.iso"
    write_iso(iso, {fits: b"a", cut: b"b"}, "NAMES")
    read_back = joliet_names(iso)
    assert fits in read_back and cut not in read_back
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / fits).write_bytes(b"a")
    check_joliet_names(tree)
    (tree / cut).write_bytes(b"b")
    with pytest.raises(UserError, match=f"payload: {cut} has a 80-byte name"):
        check_joliet_names(tree)


def test_the_payload_cd_refuses_long_names_when_it_is_built(tmp_path):
    mirror = tmp_path / "mirror"
    shutil.copytree(CYGWIN_FIXTURE, mirror)
    ini = mirror / "setup.ini"
    long_dir = "x86_64/release/gcc-core/"
    long_name = "gcc-core-" + "9" * 60 + ".tar.xz"
    old = mirror / long_dir / "gcc-core-12.4.0-1.tar.xz"
    old.rename(old.with_name(long_name))
    text = ini.read_text().replace(long_dir + old.name, long_dir + long_name)
    ini.write_text(text)
    with pytest.raises(UserError, match=f"payload: cygwin/{long_dir}{long_name} has a"):
        write_payload(settings(cygwin_mirror=str(mirror), packages=["gcc-core"]), PUBKEY,
                      tmp_path / "cd")


def test_the_clock_command_sets_windows_time_after_revive():
    from revive.guests.windows.setup_script import set_clock_command
    command = set_clock_command(1795805911.25)
    assert "date -u -s @1795805911.250" in command
    assert "AddSeconds(1795805911.250)" in command       # the fallback
    assert command.endswith("; true")                    # never fails the build
    subprocess.run(["bash", "-n", "-c", command], check=True)
    openssh = set_clock_command(1795805911.25, "openssh")
    assert openssh.startswith("powershell ") and "Set-Date" in openssh


def test_the_clock_command_on_a_host_shell_reports_what_it_could_not_do(tmp_path):
    """Run it for real with a date that cannot set the clock (not root): it
    must go on and say so on stderr."""
    from revive.guests.windows.setup_script import set_clock_command
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "date").write_text("#!/bin/sh\nexit 1\n")
    (fake / "date").chmod(0o755)
    proc = subprocess.run(["bash", "-c", set_clock_command(0.0)], capture_output=True,
                          text=True, env={"PATH": f"{fake}:/usr/bin:/bin"})
    assert proc.returncode == 0
    assert proc.stderr.strip() == "revive: could not set the guest clock"


def test_xp_shares_map_the_share_of_their_own_smbd():
    from revive.guests.windows.kind import WindowsKind
    from types import SimpleNamespace
    shares = [SimpleNamespace(name="src", guest="/mnt/src", mode="ro"),
              SimpleNamespace(name="xchg", guest="X:", mode="rw")]
    xp_cmd = WindowsKind(xp()).prepare_shares(shares)
    assert "net use X: '\\\\10.0.2.4\\xchg' '' /user:guest" in xp_cmd
    assert "\\qemu\\" not in xp_cmd
    modern = WindowsKind(settings()).prepare_shares(shares)
    assert "net use X: '\\\\10.0.2.4\\qemu\\xchg' '' /user:guest" in modern


# --- issue 18: the second field round ------------------------------------------------

def test_ui_language_fallback_in_windows_pe_and_oobe():
    root = xml(ui_language="en-US", locale="de-DE")
    for pass_name, name in (("windowsPE", "Microsoft-Windows-International-Core-WinPE"),
                            ("oobeSystem", "Microsoft-Windows-International-Core")):
        comp = component(root, pass_name, name)
        tags = [child.tag.split("}")[1] for child in comp]
        tags = [t for t in tags if t != "SetupUILanguage"]
        assert tags == ["InputLocale", "SystemLocale", "UILanguage", "UILanguageFallback",
                        "UserLocale"]
        assert comp.find("u:UILanguageFallback", NS).text == "en-US"


def test_setup_cmd_sets_the_password_never_to_expire():
    from revive.guests.windows.setup_script import SCRIPTS
    text = (SCRIPTS / "setup.cmd").read_text()
    assert "net accounts /maxpwage:unlimited" in text
    assert "set PasswordExpires=false" in text
    # before sshd is installed: a failure here fails the install, not a build
    assert text.index("/maxpwage:unlimited") < text.index("call :cygwin")


EVAL = "Windows(R) Operating System, TIMEBASED_EVAL channel"


def test_the_licence_line_is_read_and_checked():
    serial = ("REVIVE-STEP license\r\n"
              f"REVIVE-LICENSE 259200 1 {EVAL}\r\n"
              "REVIVE-LICENSE 5 1 a second line is ignored\r\nREVIVE-DONE\r\n")
    report = read_report(serial)
    assert (report.grace_minutes, report.license, report.evaluation) == (259200, EVAL, True)
    retail = read_report("REVIVE-LICENSE 43200 5 Windows(R) Operating System, RETAIL channel\n")
    assert retail.grace_minutes == 43200 and not retail.evaluation
    # the guest's words are data: a malformed line is no licence
    assert read_report("REVIVE-LICENSE soon 1 " + EVAL + "\n").license is None


def test_an_evaluation_install_reports_when_it_expires(monkeypatch):
    import time
    from revive.guests.windows.kind import WindowsKind
    monkeypatch.setattr(time, "time", lambda: 1_800_000_000.0)
    kind = WindowsKind(settings())
    done = f"REVIVE-HOSTKEY ssh-ed25519 AAAA x\nREVIVE-LICENSE 259200 1 {EVAL}\nREVIVE-DONE\n"
    assert kind.install_report(done)["facts"] == {"expires": 1_800_000_000 + 259200 * 60}
    licensed = "REVIVE-LICENSE 0 1 Windows(R) Operating System, VOLUME_KMSCLIENT channel\n"
    assert kind.install_report(licensed + "REVIVE-DONE\n")["facts"] == {}


def test_a_copy_of_an_expired_evaluation_is_refused_in_one_line():
    from revive.machine import check_expiry
    check_expiry({}, 2e9, "build hello")                       # no expiry: licensed
    check_expiry({"expires": 2_000_000_000}, 1_999_999_999, "build hello")
    with pytest.raises(UserError) as err:
        check_expiry({"expires": 2_000_000_000}, 2_000_000_000, "build hello")
    assert str(err.value) == (
        "build hello: the snapshot's Windows is an evaluation that expired on "
        "2033-05-18 03:33 UTC and would shut down mid-build; install a fresh or "
        "licensed one (doit install)")


def test_the_licence_script_is_on_the_payload_and_run_by_setup_cmd():
    from revive.guests.windows.setup_script import SCRIPTS
    files = payload_files(settings(), PUBKEY)
    script = files["revive/license.ps1"]
    assert b"\r\n" in script and b"TIMEBASED_EVAL" in script and b"REVIVE-LICENSE" in script
    cmd = (SCRIPTS / "setup.cmd").read_text()
    assert r'-File "%PAYLOAD%\revive\license.ps1" >COM1' in cmd
