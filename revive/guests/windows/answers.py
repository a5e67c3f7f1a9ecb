"""Answer files: ``autounattend.xml`` (Vista to 11, Server 2008 to 2025) and
``winnt.sif`` (XP, Server 2003).

Windows Setup looks for ``autounattend.xml`` at the root of every removable
drive, CD-ROMs included, so it can sit on the payload ISO (BIOS and UEFI
alike) or on a floppy (BIOS only). XP's setup reads ``winnt.sif`` only from
the floppy in A:.

Both files end the install the same way: at the first logon the
administrator runs ``setup.cmd`` from the payload CD, found by its marker
file (never by an assumed drive letter); the script installs SSH and powers
the machine off. Schema: Microsoft's "Unattended Windows Setup Reference"
(learn.microsoft.com/windows-hardware/customize/desktop/unattend) and, for
winnt.sif, the XP deployment reference as used by nixpkgs' old Windows
builder and dockur/windows.
"""

import xml.etree.ElementTree as ET

from .settings import XP_LOCALES, XP_TIME_ZONES, WindowsSettings

UNATTEND_NS = "urn:schemas-microsoft-com:unattend"
WCM_NS = "http://schemas.microsoft.com/WMIConfig/2002/State"
ET.register_namespace("", UNATTEND_NS)
ET.register_namespace("wcm", WCM_NS)

MARKER = "REVIVE.TAG"
SETUP_CMD = r"revive\setup.cmd"
_LETTERS = " ".join("CDEFGHIJKLMNOPQRSTUVWXYZ")
# One cmd line (not a batch file, so single %): the drive holding the marker
# runs its own setup.cmd.
FIRST_LOGON_COMMAND = (f"cmd /c for %i in ({_LETTERS}) do "
                       f"@if exist %i:\\{MARKER} call %i:\\{SETUP_CMD}")
# XP's [GuiRunOnce] lines go through INF string substitution, where "%...%"
# is a token: the loop above would lose its "%i". So XP runs a batch file
# from the answer floppy (always A:), and the command line holds no "%".
XP_LAUNCHER = "REVIVE.CMD"
XP_FIRST_LOGON_COMMAND = f"A:\\{XP_LAUNCHER}"
LABCONFIG = ("BypassTPMCheck", "BypassSecureBootCheck", "BypassRAMCheck")


def answer_file(s: WindowsSettings) -> "tuple[str, bytes]":
    """The file name Setup looks for and its contents."""
    if s.answer_format == "winnt":
        return "winnt.sif", winnt_sif(s)
    return "autounattend.xml", autounattend_xml(s)


def xp_launcher() -> bytes:
    """The batch file XP's first logon runs from the floppy: in a batch
    file the loop variable is written %%i."""
    return (f"@echo off\r\nfor %%i in ({_LETTERS}) do "
            f"if exist %%i:\\{MARKER} call %%i:\\{SETUP_CMD}\r\n").encode("ascii")


def floppy_files(s: WindowsSettings) -> "dict[str, bytes]":
    """What goes on the answer floppy: the answer file, and for XP/2003 the
    first-logon launcher."""
    name, data = answer_file(s)
    files = {name: data}
    if s.answer_format == "winnt":
        files[XP_LAUNCHER] = xp_launcher()
    return files


# --- autounattend.xml -------------------------------------------------------

def _q(tag: str) -> str:
    return f"{{{UNATTEND_NS}}}{tag}"


def _el(parent, tag: str, text=None, add: bool = False) -> ET.Element:
    """A child element; ``add`` marks list items (wcm:action="add")."""
    child = ET.SubElement(parent, _q(tag))
    if add:
        child.set(f"{{{WCM_NS}}}action", "add")
    if text is not None:
        child.text = str(text).lower() if isinstance(text, bool) else str(text)
    return child


def _new_component(pass_el, name: str, s: WindowsSettings) -> ET.Element:
    comp = _el(pass_el, "component")
    comp.set("name", name)
    comp.set("processorArchitecture", "amd64" if s.arch == "x86_64" else "x86")
    comp.set("publicKeyToken", "31bf3856ad364e35")
    comp.set("language", "neutral")
    comp.set("versionScope", "nonSxS")
    return comp


def _international(comp, s: WindowsSettings) -> None:
    # UILanguage must be a language the ISO has, or Setup stops at its
    # language page; the locales may be any (en-GB formats on an en-US ISO).
    # UILanguageFallback as dockur, rgl and StefanScherer write it: without
    # it 24H2's Setup stops at its language page when the user locale
    # differs from the UI language (cschneegans/unattend-generator#64).
    _el(comp, "InputLocale", s.locale)
    _el(comp, "SystemLocale", s.locale)
    _el(comp, "UILanguage", s.ui_language)
    _el(comp, "UILanguageFallback", s.ui_language)
    _el(comp, "UserLocale", s.locale)


def _partition(parent, order: int, **settings) -> None:
    item = _el(parent, "CreatePartition" if "Type" in settings else
               "ModifyPartition", add=True)
    _el(item, "Order", order)
    for tag, value in settings.items():
        _el(item, tag, value)


def _disk_layout(disk, s: WindowsSettings) -> int:
    """Partitions of disk 0; returns the Windows partition's number."""
    create = _el(disk, "CreatePartitions")
    modify = _el(disk, "ModifyPartitions")
    if s.firmware == "uefi":
        _partition(create, 1, Type="EFI", Size=100)
        _partition(create, 2, Type="MSR", Size=16)
        _partition(create, 3, Type="Primary", Extend=True)
        _partition(modify, 1, PartitionID=1, Format="FAT32", Label="System")
        _partition(modify, 2, PartitionID=2)
        _partition(modify, 3, PartitionID=3, Format="NTFS", Label="Windows",
                   Letter="C")
        return 3
    _partition(create, 1, Type="Primary", Extend=True)
    _partition(modify, 1, PartitionID=1, Active=True, Format="NTFS",
               Label="Windows", Letter="C")
    return 1


def _disk_configuration(comp, s: WindowsSettings) -> int:
    config = _el(comp, "DiskConfiguration")
    _el(config, "WillShowUI", "OnError")
    disk = _el(config, "Disk", add=True)
    _el(disk, "DiskID", 0)
    _el(disk, "WillWipeDisk", True)
    return _disk_layout(disk, s)


def _image_install(comp, s: WindowsSettings, partition: int) -> None:
    image = _el(_el(comp, "ImageInstall"), "OSImage")
    meta = _el(_el(image, "InstallFrom"), "MetaData", add=True)
    by_index = isinstance(s.image, int)
    _el(meta, "Key", "/IMAGE/INDEX" if by_index else "/IMAGE/NAME")
    _el(meta, "Value", s.image)
    target = _el(image, "InstallTo")
    _el(target, "DiskID", 0)
    _el(target, "PartitionID", partition)
    _el(image, "InstallToAvailablePartition", False)
    _el(image, "WillShowUI", "OnError")


def _user_data(comp, s: WindowsSettings) -> None:
    data = _el(comp, "UserData")
    _el(data, "AcceptEula", True)
    _el(data, "FullName", s.admin_user)
    _el(data, "Organization", "revive")
    key = _el(data, "ProductKey")
    if s.product_key:
        _el(key, "Key", s.product_key)
        _el(key, "WillShowUI", "OnError")
    # No key: only an evaluation image gets here (the install stage refuses
    # any other image without one). The empty node stays, as in dockur's
    # evaluation answer files: some Setup versions want it present; never
    # with WillShowUI Never ("Windows cannot read the <ProductKey> setting").


def _run_synchronous(comp, commands: "list[str]") -> None:
    run = _el(comp, "RunSynchronous")
    for order, command in enumerate(commands, 1):
        item = _el(run, "RunSynchronousCommand", add=True)
        _el(item, "Order", order)
        _el(item, "Path", command)


def _windows_pe(root, s: WindowsSettings) -> None:
    pe = _el(root, "settings")
    pe.set("pass", "windowsPE")
    intl = _new_component(pe, "Microsoft-Windows-International-Core-WinPE", s)
    _el(_el(intl, "SetupUILanguage"), "UILanguage", s.ui_language)
    _international(intl, s)
    setup = _new_component(pe, "Microsoft-Windows-Setup", s)
    partition = _disk_configuration(setup, s)
    _image_install(setup, s, partition)
    _user_data(setup, s)
    if s.windows_version == "11":
        # Documented escape hatch for hardware checks a VM fails (no TPM,
        # Secure Boot off under BIOS, small RAM); set before Setup checks.
        _run_synchronous(setup, [
            rf"reg add HKLM\SYSTEM\Setup\LabConfig /v {name} /t REG_DWORD /d 1 /f"
            for name in LABCONFIG])


def _specialize(root, s: WindowsSettings) -> None:
    spec = _el(root, "settings")
    spec.set("pass", "specialize")
    shell = _new_component(spec, "Microsoft-Windows-Shell-Setup", s)
    _el(shell, "ComputerName", s.computer_name)
    _el(shell, "TimeZone", s.timezone)
    if s.windows_version == "11":
        # The guest has no route out; let OOBE continue without a network.
        deploy = _new_component(spec, "Microsoft-Windows-Deployment", s)
        _run_synchronous(deploy, [
            r"reg add HKLM\SOFTWARE\Microsoft\Windows\CurrentVersion\OOBE "
            r"/v BypassNRO /t REG_DWORD /d 1 /f"])


def _password(parent, tag: str, value: str) -> None:
    pw = _el(parent, tag)
    _el(pw, "Value", value)
    _el(pw, "PlainText", True)


def _accounts(shell, s: WindowsSettings) -> None:
    accounts = _el(shell, "UserAccounts")
    # Server Setup stops to ask for the built-in Administrator's password
    # when the answer file has none; clients keep that account disabled.
    _password(accounts, "AdministratorPassword", s.admin_password)
    local = _el(accounts, "LocalAccounts")
    account = _el(local, "LocalAccount", add=True)
    _password(account, "Password", s.admin_password)
    _el(account, "Group", "Administrators")
    _el(account, "DisplayName", s.admin_user)
    _el(account, "Name", s.admin_user)
    logon = _el(shell, "AutoLogon")
    _password(logon, "Password", s.admin_password)
    _el(logon, "Enabled", True)
    _el(logon, "LogonCount", 1)
    _el(logon, "Username", s.admin_user)


def _oobe(shell, s: WindowsSettings) -> None:
    oobe = _el(shell, "OOBE")
    _el(oobe, "HideEULAPage", True)
    if s.family == "nt6.2+":
        # Windows 8 and later; SkipMachineOOBE/SkipUserOOBE are deprecated.
        for tag in ("HideLocalAccountScreen", "HideOEMRegistrationScreen",
                    "HideOnlineAccountScreens", "HideWirelessSetupInOOBE"):
            _el(oobe, tag, True)
        _el(oobe, "ProtectYourPC", 3)
        return
    if s.family == "nt6.1":
        _el(oobe, "HideWirelessSetupInOOBE", True)
    _el(oobe, "NetworkLocation", "Work")
    _el(oobe, "ProtectYourPC", 3)
    _el(oobe, "SkipMachineOOBE", True)
    _el(oobe, "SkipUserOOBE", True)


def _first_logon(shell) -> None:
    commands = _el(shell, "FirstLogonCommands")
    item = _el(commands, "SynchronousCommand", add=True)
    _el(item, "Order", 1)
    _el(item, "CommandLine", FIRST_LOGON_COMMAND)
    _el(item, "Description", "revive: install SSH from the payload CD, power off")
    _el(item, "RequiresUserInput", False)


def _oobe_system(root, s: WindowsSettings) -> None:
    oobe_pass = _el(root, "settings")
    oobe_pass.set("pass", "oobeSystem")
    _international(_new_component(oobe_pass, "Microsoft-Windows-International-Core", s), s)
    shell = _new_component(oobe_pass, "Microsoft-Windows-Shell-Setup", s)
    _accounts(shell, s)
    _oobe(shell, s)
    _first_logon(shell)


def autounattend_xml(s: WindowsSettings) -> bytes:
    root = ET.Element(_q("unattend"))
    _windows_pe(root, s)
    _specialize(root, s)
    _oobe_system(root, s)
    ET.indent(root)
    body = ET.tostring(root, encoding="unicode")
    return ('<?xml version="1.0" encoding="utf-8"?>\n' + body + "\n").encode()


# --- winnt.sif ----------------------------------------------------------------

def _quoted(value: str) -> str:
    # winnt.sif has no escape for '"'; settings refuses it in user values.
    assert '"' not in value, value
    return f'"{value}"'


def _winnt_sections(s: WindowsSettings) -> "list[tuple[str, list]]":
    lcid, keyboard = XP_LOCALES[s.locale]
    return [
        ("Data", [("AutoPartition", "1"), ("MsDosInitiated", '"0"'),
                  ("UnattendedInstall", '"Yes"'), ("AutomaticUpdates", "No")]),
        ("Unattended", [("UnattendMode", "FullUnattended"),
                        ("UnattendSwitch", "Yes"), ("OemSkipEula", "Yes"),
                        ("OemPreinstall", "No"), ("TargetPath", r"\WINDOWS"),
                        ("Repartition", "Yes"), ("WaitForReboot", "No"),
                        ("NoWaitAfterTextMode", "1"), ("NoWaitAfterGUIMode", "1"),
                        ("DriverSigningPolicy", "Ignore"), ("DUDisable", "Yes"),
                        ("Hibernation", "No")]),
        ("GuiUnattended", [("AdminPassword", _quoted(s.admin_password)),
                           ("EncryptedAdminPassword", "No"),
                           ("AutoLogon", "Yes"), ("AutoLogonCount", "1"),
                           ("OEMSkipRegional", "1"), ("OemSkipWelcome", "1"),
                           ("TimeZone", str(XP_TIME_ZONES[s.timezone])),
                           ("ServerWelcome", "No")]),
        ("RegionalSettings", [("SystemLocale", "0000" + lcid),
                              ("UserLocale", "0000" + lcid),
                              ("InputLocale", f"{lcid}:{keyboard}")]),
        ("UserData", [("ProductKey", _quoted(s.product_key)),
                      ("FullName", _quoted(s.admin_user)),
                      ("OrgName", _quoted("revive")),
                      ("ComputerName", _quoted(s.computer_name))]),
        ("Identification", [("JoinWorkgroup", "WORKGROUP")]),
        ("Networking", [("InstallDefaultComponents", "Yes")]),
        ("GuiRunOnce", [("Command0", _quoted(XP_FIRST_LOGON_COMMAND))]),
    ]


def winnt_sif(s: WindowsSettings) -> bytes:
    lines = []
    for section, entries in _winnt_sections(s):
        lines.append(f"[{section}]")
        lines.extend(f"{key}={value}" for key, value in entries)
        lines.append("")
    return "\r\n".join(lines).encode("ascii")
