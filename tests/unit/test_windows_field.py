"""revive's autounattend.xml held element by element against answer files
that install in the field: excerpts of dockur/windows' assets (the
windowsPE pass: International-Core-WinPE and Setup/UserData), kept in
tests/data/field/ named with their source, for Windows 10 Pro, 11 Pro and
Server 2022 Standard rendered from examples/windows.toml with only the
version and image changed."""

import tomllib
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from revive.guests.windows.answers import autounattend_xml
from revive.guests.windows.settings import from_table

REPO = Path(__file__).resolve().parents[2]
FIELD = REPO / "tests" / "data" / "field"
U = "urn:schemas-microsoft-com:unattend"
NS = {"u": U}
# InputLocale written as a language tag (ours) or as LCID:keyboard (dockur).
INPUT_LOCALES = {"en-US": "0409:00000409"}

CASES = [("10", "Windows 10 Pro", "dockur-windows-win10x64.xml"),
         ("11", "Windows 11 Pro", "dockur-windows-win11x64.xml"),
         ("2022", "Windows Server 2022 Standard (Desktop Experience)",
          "dockur-windows-win2022.xml")]


def ours(version: str, image: str) -> ET.Element:
    table = dict(tomllib.loads((REPO / "examples" / "windows.toml").read_text())["guest"],
                 windows_version=version, image=image)
    return ET.fromstring(autounattend_xml(from_table(table, REPO / "examples")))


def component(root, name):
    return root.find(f"u:settings[@pass='windowsPE']/u:component[@name='{name}']", NS)


def local(tag: str) -> str:
    return tag.split("}")[1]


@pytest.mark.parametrize("version, image, field_file", CASES)
def test_international_core_winpe_matches_the_field_file(version, image, field_file):
    field = ET.parse(FIELD / field_file).getroot()
    theirs = component(field, "Microsoft-Windows-International-Core-WinPE")
    mine = component(ours(version, image), "Microsoft-Windows-International-Core-WinPE")
    assert mine.attrib == theirs.attrib
    names = [local(e.tag) for e in mine]
    # every element the field file writes, in the field file's order
    field_names = [local(e.tag) for e in theirs]
    assert [n for n in names if n in field_names] == field_names
    for element in theirs:
        tag = local(element.tag)
        mine_el = mine.find(f"u:{tag}", NS)
        if tag == "SetupUILanguage":
            assert mine_el.findtext("u:UILanguage", namespaces=NS) == \
                element.findtext("u:UILanguage", namespaces=NS)
        elif tag == "InputLocale":
            assert INPUT_LOCALES.get(mine_el.text, mine_el.text) == element.text
        else:
            assert mine_el.text == element.text, tag
    # beyond the field file: UILanguageFallback, as its Server files write it
    assert mine.findtext("u:UILanguageFallback", namespaces=NS) == "en-US"


@pytest.mark.parametrize("version, image, field_file", CASES)
def test_user_data_and_product_key_match_the_field_file(version, image, field_file):
    field = ET.parse(FIELD / field_file).getroot()
    theirs = component(field, "Microsoft-Windows-Setup").find("u:UserData", NS)
    mine_setup = component(ours(version, image), "Microsoft-Windows-Setup")
    assert mine_setup.attrib == component(field, "Microsoft-Windows-Setup").attrib
    mine = mine_setup.find("u:UserData", NS)
    assert [local(e.tag) for e in mine] == [local(e.tag) for e in theirs]
    assert mine.findtext("u:AcceptEula", namespaces=NS) == theirs.findtext(
        "u:AcceptEula", namespaces=NS) == "true"
    # the same key: generic for consumer Pro, KMS client for Server
    assert mine.findtext("u:ProductKey/u:Key", namespaces=NS) == \
        theirs.findtext("u:ProductKey/u:Key", namespaces=NS)
    assert mine.find("u:ProductKey/u:WillShowUI", NS) is None or \
        mine.findtext("u:ProductKey/u:WillShowUI", namespaces=NS) != "Never"
