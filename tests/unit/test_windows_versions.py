"""The answer files of every supported Windows version, rendered from
examples/windows.toml with its own defaults, checked for what stops an
install before SSH answers (issue 12): the account named like the computer,
a password Server refuses, no Administrator password, a UI language apart
from the locale, the product key, XP's INF tokens."""

import re
import tomllib
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from revive.core.errors import UserError
from tests.conftest import WINDOWS_EDITIONS as EDITION
from revive.guests.windows import product_keys
from revive.guests.windows.answers import floppy_files
from revive.guests.windows.settings import (SERVERS, VERSIONS, from_table,
                                           password_complexity_problem)

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "windows.toml"
NS = {"u": "urn:schemas-microsoft-com:unattend"}
XP_KEY = "AAAAA-BBBBB-CCCCC-DDDDD-EEEEE"


def example_table() -> dict:
    return tomllib.loads(EXAMPLE.read_text())["guest"]


def for_version(version: str):
    """The example's [guest] with only what this version cannot take
    changed: XP/2003 boot from BIOS, have no install.wim and need a key."""
    table = dict(example_table(), windows_version=version, image=EDITION.get(version))
    if VERSIONS[version] == "nt5":
        table.update(firmware="bios", product_key=XP_KEY)
        del table["image"]
    return from_table(table, EXAMPLE.parent)


@pytest.mark.parametrize("version", sorted(VERSIONS))
def test_every_version_renders_from_the_example_defaults(version):
    s = for_version(version)
    files = floppy_files(s)
    # 1. the account is never named like the computer (0x8007056b)
    assert s.admin_user.lower() != s.computer_name.lower()
    # 2. the default password passes Server's complexity rule
    assert password_complexity_problem(s.admin_password, s.admin_user) is None
    if s.answer_format == "winnt":
        sif = files["winnt.sif"].decode("ascii")
        # 11. no "%" anywhere: winnt.sif values go through INF substitution
        assert "%" not in sif
        assert f'ComputerName="{s.computer_name}"' in sif
        assert f'AdminPassword="{s.admin_password}"' in sif
        assert "REVIVE.CMD" in files
        return
    root = ET.fromstring(files["autounattend.xml"])
    shell = root.find("u:settings[@pass='oobeSystem']/u:component"
                      "[@name='Microsoft-Windows-Shell-Setup']", NS)
    accounts = shell.find("u:UserAccounts", NS)
    # 3. the built-in Administrator has a password (Server asks otherwise)
    assert accounts.findtext("u:AdministratorPassword/u:Value", namespaces=NS) == \
        s.admin_password
    names = [e.text for e in accounts.findall("u:LocalAccounts/u:LocalAccount/u:Name", NS)]
    computer = root.findtext(".//u:ComputerName", namespaces=NS)
    assert names == [s.admin_user] and computer == s.computer_name
    assert all(n.lower() != computer.lower() for n in names)
    display = accounts.findtext("u:LocalAccounts/u:LocalAccount/u:DisplayName", namespaces=NS)
    for token in re.split(r"[,.\-_#\s]+", display):
        assert len(token) < 3 or token.lower() not in s.admin_password.lower()
    # 7. Setup's language is the ISO's; the locale is only formats and keys
    pe = root.find("u:settings[@pass='windowsPE']/u:component"
                   "[@name='Microsoft-Windows-International-Core-WinPE']", NS)
    assert pe.findtext("u:SetupUILanguage/u:UILanguage", namespaces=NS) == s.ui_language
    assert pe.findtext("u:UILanguage", namespaces=NS) == s.ui_language
    assert pe.findtext("u:UserLocale", namespaces=NS) == s.locale
    # 8. a key node always, and for every version's edition a key
    key = root.find(".//u:UserData/u:ProductKey", NS)
    assert key is not None and s.product_key
    assert key.findtext("u:Key", namespaces=NS) == s.product_key
    # 9. UILanguageFallback in the WindowsPE pass (issue 18)
    assert pe.findtext("u:UILanguageFallback", namespaces=NS) == s.ui_language


def test_the_example_itself_gets_the_windows_11_pro_key():
    s = for_version("11")
    # The generic installation key of Pro, as dockur/windows writes it for
    # consumer media (assets/win11x64.xml), not the KMS client key.
    assert s.license == "retail"
    assert s.product_key == "VK7JG-NPHTM-C97JM-9MPGT-3V66T"
    assert (s.admin_user, s.computer_name) == ("revive", "REVIVE-VM")


@pytest.mark.parametrize("version, image, license, key", [
    ("2022", "Windows Server 2022 Standard (Desktop Experience)", None,
     "VDYBN-27WPP-V4HQT-9VMD4-VMK7H"),
    ("2022", "Windows Server 2022 SERVERDATACENTERCORE", None, "WX4NM-KYWYW-QJJR4-XV3QB-6VM33"),
    ("2025", "Windows Server 2025 Datacenter: Azure Edition", None,
     "XGN3F-F394H-FD2MY-PP6FD-8MCRC"),
    ("2019", "Windows Server 2019 SERVERSTANDARD", None, "N69G4-B89J2-4G8F4-WWYCC-J464C"),
    ("2012r2", "Windows Server 2012 R2 SERVERSTANDARD", None, "D2N9P-3P6X9-2R39C-7RTCD-MDVJX"),
    # consumer media (the default for clients): generic installation keys
    ("10", "Windows 10 Pro N", None, "2B87N-8KFHP-DKV6R-Y2C8J-PKCKT"),
    ("11", "Windows 11 Home", None, "YTMG3-N6DKC-DKB77-7M9GH-8HVX7"),
    ("11", "Windows 11 Education", None, "YNMGQ-8RYV3-4PGQ3-C8XTP-7CFBY"),
    ("7", "Windows 7 PROFESSIONAL", None, "HYF8J-CVRMY-CM74G-RPHKF-PW487"),
    # no generic key: the KMS client key, as dockur's files use
    ("10", "Windows 10 Enterprise LTSC 2021", None, "M7XTQ-FN8P6-TTKYV-9D4CC-J462D"),
    # volume-licence media: KMS client keys
    ("10", "Windows 10 Pro N", "volume", "MH37W-N47XK-V7XM9-C7227-GCQG9"),
    ("7", "Windows 7 PROFESSIONAL", "volume", "FJ82H-XT6CR-J8D7P-XQJJ2-GPDD4"),
    ("11", "Windows 11 Home", "volume", None),
    # No default: evaluation media refuse other keys; an index says nothing
    # about the edition (the install stage refuses both without a key but
    # the evaluation).
    ("2022", "Windows Server 2022 Standard Evaluation (Desktop Experience)", None, None),
    ("2019", "Windows Server 2019 SERVERDATACENTEREVALCORE", None, None),
    ("11", 6, None, None),
])
def test_default_product_key_by_edition(version, image, license, key):
    table = dict(example_table(), windows_version=version, image=image)
    if license:
        table["license"] = license
    s = from_table(table, EXAMPLE.parent)
    assert s.product_key == key
    assert product_keys.default_key(version, image, s.license) == key


def test_a_configured_key_wins_over_the_default():
    s = from_table(dict(example_table(), product_key="abcde-abcde-abcde-abcde-abcde"),
                   EXAMPLE.parent)
    assert s.product_key == "ABCDE-ABCDE-ABCDE-ABCDE-ABCDE"


def refused(**overrides) -> str:
    with pytest.raises(UserError) as err:
        from_table(dict(example_table(), **overrides), EXAMPLE.parent)
    assert "\n" not in str(err.value)
    return str(err.value)


@pytest.mark.parametrize("user, computer", [
    ("revive", "REVIVE"), ("Builder", "builder"), ("BUILD-1", "build-1")])
def test_an_account_named_like_the_computer_is_refused(user, computer):
    message = refused(admin_user=user, computer_name=computer)
    assert message.startswith("config.toml: [guest] computer_name: ")
    assert "admin_user" in message


@pytest.mark.parametrize("version", sorted(SERVERS - {"2003"}))
@pytest.mark.parametrize("password, why", [
    ("Revive.Guest1", "account name"),          # the old default
    ("xREVIVEx.1A", "account name"),
    ("Ab1.x", "shorter than 6"),
    ("alllowercase1", "three of"),
])
def test_server_refuses_what_its_complexity_rule_refuses(version, password, why):
    message = refused(windows_version=version, admin_password=password)
    assert message.startswith("config.toml: [guest] admin_password: Windows Server refuses it")
    assert why in message


def test_server_rule_checks_parts_of_the_full_name():
    assert "full name" in password_complexity_problem("Xyz.Smith9", "js", "John Smith")
    assert password_complexity_problem("Xyz.Sm1th9", "js", "John Smith") is None
    assert password_complexity_problem("Jo.Xyz12", "js", "Jo Li") is None  # 2-letter parts


def test_clients_keep_their_own_password_rules():
    s = from_table(dict(example_table(), admin_password="revive"), EXAMPLE.parent)
    assert s.admin_password == "revive"


def test_ui_language_is_validated_and_separate():
    assert refused(ui_language="english").startswith("config.toml: [guest] ui_language: ")
    s = from_table(dict(example_table(), locale="en-GB"), EXAMPLE.parent)
    assert (s.ui_language, s.locale) == ("en-US", "en-GB")
