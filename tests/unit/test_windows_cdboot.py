"""The UEFI CD prompt (issue 12, point 4), on ISOs laid out like Microsoft's:
a BIOS El Torito entry, then an EFI section whose image is
efi/microsoft/boot/efisys.bin, with efisys_noprompt.bin beside it; UDF and
Joliet names (genisoimage, mtools and qemu-img/qemu-io are the real tools)."""

import hashlib
import subprocess
from pathlib import Path

import pytest

from revive.core.errors import UserError
from revive.guests.windows import cdboot
from revive.guests.windows.settings import check_ui_language, from_table


def fat(path: Path, label: str) -> bytes:
    subprocess.run(["mformat", "-C", "-f", "1440", "-v", label, "-i", str(path), "::"],
                   check=True, capture_output=True)
    subprocess.run(["mcopy", "-i", str(path), "-", f"::{label}.TXT"], input=label.encode(),
                   check=True, capture_output=True)
    return path.read_bytes()


def windows_like_iso(tmp_path: Path, *, noprompt=True, boot="efisys.bin",
                     languages=("en-US",)) -> Path:
    tree = tmp_path / "tree"
    boot_dir = tree / "efi" / "microsoft" / "boot"
    boot_dir.mkdir(parents=True)
    (tree / "boot").mkdir()
    (tree / "boot" / "etfsboot.com").write_bytes(b"\xeb\xfe" * 1024)
    fat(boot_dir / "efisys.bin", "PROMPT")
    if noprompt:
        fat(boot_dir / "efisys_noprompt.bin", "NOPROMPT")
    (tree / "sources").mkdir()
    (tree / "sources" / "lang.ini").write_text(
        "[Available UI Languages]\r\n" + "".join(f"{l} = 3\r\n" for l in languages)
        + "\r\n[Fallback Languages]\r\nen-US = en-us\r\n")
    iso = tmp_path / "win.iso"
    subprocess.run(["genisoimage", "-quiet", "-o", str(iso), "-J", "-joliet-long", "-udf",
                    "-iso-level", "3", "-V", "CCCOMA_X64FRE_EN-US_DV9",
                    "-b", "boot/etfsboot.com", "-no-emul-boot", "-boot-load-size", "8",
                    "-eltorito-alt-boot", "-efi-boot", f"efi/microsoft/boot/{boot}",
                    "-no-emul-boot", str(tree)], check=True, capture_output=True)
    return iso


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_boot_catalog_names_the_efi_image(tmp_path):
    iso = windows_like_iso(tmp_path)
    prompting = (tmp_path / "tree/efi/microsoft/boot/efisys.bin").read_bytes()
    with open(iso, "rb") as f:
        [(lba, length)] = cdboot.efi_boot_images(f)
        f.seek(lba * cdboot.SECTOR)
        assert f.read(len(prompting)) == prompting
    assert length == len(prompting)


def test_the_overlay_boots_the_noprompt_image_and_the_iso_is_untouched(tmp_path):
    iso = windows_like_iso(tmp_path)
    before = sha(iso)
    log = tmp_path / "install.log"
    s = from_table({"iso": str(iso), "iso_sha256": before, "windows_version": "11",
                    "image": 1, "firmware": "uefi", "cygwin_mirror": "m"}, tmp_path)
    cd = cdboot.install_cd(s, tmp_path / "work" / "cd.qcow2", log)
    assert (cd.format, cd.prompt_free) == ("qcow2", True)
    assert sha(iso) == before
    raw = tmp_path / "as-seen.iso"
    subprocess.run(["qemu-img", "convert", "-O", "raw", str(cd.path), str(raw)], check=True)
    quiet = (tmp_path / "tree/efi/microsoft/boot/efisys_noprompt.bin").read_bytes()
    seen, original = raw.read_bytes(), iso.read_bytes()
    with open(iso, "rb") as f:
        [(lba, _)] = cdboot.efi_boot_images(f)
    start = lba * cdboot.SECTOR
    assert seen[start:start + len(quiet)] == quiet
    assert seen[:start] == original[:start]
    assert seen[start + len(quiet):] == original[start + len(quiet):]
    assert "efisys_noprompt.bin (1474560 bytes) written over efisys.bin" in log.read_text()
    assert not list((tmp_path / "work").glob("*.bin"))


def test_without_a_noprompt_image_the_log_says_enter_is_pressed(tmp_path):
    iso = windows_like_iso(tmp_path, noprompt=False)
    log = tmp_path / "install.log"
    s = from_table({"iso": str(iso), "iso_sha256": "0" * 64, "windows_version": "10",
                    "image": 1, "firmware": "uefi", "cygwin_mirror": "m"}, tmp_path)
    cd = cdboot.install_cd(s, tmp_path / "cd.qcow2", log)
    assert (cd.path, cd.format, cd.prompt_free) == (iso, "raw", False)
    assert "no efi/microsoft/boot/efisys.bin and efisys_noprompt.bin; pressing Enter" \
        in log.read_text()
    assert not (tmp_path / "cd.qcow2").exists()


def test_an_iso_that_already_boots_without_prompt_is_used_as_it_is(tmp_path):
    iso = windows_like_iso(tmp_path, boot="efisys_noprompt.bin")
    cd = cdboot.prepare(iso, tmp_path / "cd.qcow2", tmp_path / "log")
    assert (cd.path, cd.format, cd.prompt_free) == (iso, "raw", True)
    assert "already boots efisys_noprompt.bin" in cd.how


def test_bios_needs_nothing(tmp_path):
    log = tmp_path / "install.log"
    s = from_table({"iso": "w.iso", "iso_sha256": "0" * 64, "windows_version": "10",
                    "image": 1, "cygwin_mirror": "m"}, tmp_path)
    cd = cdboot.install_cd(s, tmp_path / "cd.qcow2", log)
    assert (cd.format, cd.prompt_free) == ("raw", True)
    assert log.read_text().startswith("BIOS CD prompt: none")


def test_not_an_iso_falls_back_to_keys(tmp_path):
    junk = tmp_path / "junk.iso"
    junk.write_bytes(b"\0" * 40 * 2048)
    cd = cdboot.prepare(junk, tmp_path / "cd.qcow2", tmp_path / "log")
    assert not cd.prompt_free and "no EFI El Torito boot entry" in cd.how


def test_ui_language_is_checked_against_the_iso(tmp_path):
    iso = windows_like_iso(tmp_path, languages=("en-US",))
    assert cdboot.iso_languages(iso) == ["en-US"]
    base = {"iso": str(iso), "iso_sha256": "0" * 64, "windows_version": "11",
            "image": 1, "cygwin_mirror": "m"}
    check_ui_language(from_table(dict(base, locale="en-GB"), tmp_path))
    with pytest.raises(UserError) as err:
        check_ui_language(from_table(dict(base, ui_language="en-GB"), tmp_path),
                          tmp_path / "install.log")
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("config.toml: [guest] ui_language: win.iso has no 'en-GB' "
                              "(it has en-US)")
    assert 'set ui_language = "en-US"' in message


def test_an_unreadable_language_list_is_logged_not_refused(tmp_path):
    junk = tmp_path / "junk.iso"
    junk.write_bytes(b"\0" * 40 * 2048)
    log = tmp_path / "install.log"
    check_ui_language(from_table({"iso": str(junk), "iso_sha256": "0" * 64,
                                  "windows_version": "11", "image": 1,
                                  "cygwin_mirror": "m"}, tmp_path), log)
    assert "not checked" in log.read_text()


# --- install.wim: the image and the key that fits it ----------------------------

def fake_wim(images) -> bytes:
    """A WIM header whose XML resource lists ``images`` (index, name,
    EDITIONID), laid out as wimlib documents it."""
    xml = "<WIM>" + "".join(
        f"<IMAGE INDEX=\"{i}\"><NAME>{n}</NAME><WINDOWS><EDITIONID>{e}</EDITIONID>"
        "</WINDOWS></IMAGE>" for i, n, e in images) + "</WIM>"
    data = "\ufeff".encode("utf-16-le") + xml.encode("utf-16-le")
    header = bytearray(208)
    header[:8] = b"MSWIM\0\0\0"
    header[8:12] = (208).to_bytes(4, "little")
    offset = 208 + 4096                      # some "resources" before the XML
    header[72:79] = len(data).to_bytes(7, "little")
    header[80:88] = offset.to_bytes(8, "little")
    header[88:96] = len(data).to_bytes(8, "little")
    return bytes(header) + b"\0" * 4096 + data


SERVER_EVAL = [(1, "Windows Server 2022 SERVERSTANDARDCORE", "ServerStandardEvalCor"),
               (2, "Windows Server 2022 SERVERSTANDARD", "ServerStandardEval")]
SERVER_VL = [(1, "Windows Server 2022 SERVERSTANDARD", "ServerStandard")]


def wim_iso(tmp_path, images, name="install.wim", ei_cfg=None) -> Path:
    iso = windows_like_iso(tmp_path)
    tree = tmp_path / "tree"
    (tree / "sources" / name).write_bytes(fake_wim(images))
    if ei_cfg is not None:
        (tree / "sources" / "ei.cfg").write_text(ei_cfg)
    iso.unlink()
    subprocess.run(["genisoimage", "-quiet", "-o", str(iso), "-J", "-udf", str(tree)],
                   check=True, capture_output=True)
    return iso


def server(iso, **over):
    table = {"iso": str(iso), "iso_sha256": "0" * 64, "windows_version": "2022",
             "image": "Windows Server 2022 SERVERSTANDARD", "cygwin_mirror": "m"}
    return from_table(dict(table, **over), iso.parent)


def test_the_wim_images_are_read_from_the_iso(tmp_path):
    from revive.guests.windows.wim import iso_images
    iso = wim_iso(tmp_path, SERVER_EVAL, "install.esd")
    assert [(i.index, i.name, i.evaluation) for i in iso_images(iso)] == [
        (1, "Windows Server 2022 SERVERSTANDARDCORE", True),
        (2, "Windows Server 2022 SERVERSTANDARD", True)]


def test_an_evaluation_image_refuses_the_default_key(tmp_path):
    from revive.guests.windows.wim import check_edition
    iso = wim_iso(tmp_path, SERVER_EVAL)
    s = server(iso)
    assert s.product_key == "VDYBN-27WPP-V4HQT-9VMD4-VMK7H"   # the name cannot tell
    with pytest.raises(UserError) as err:
        check_edition(s, tmp_path / "install.log")
    assert str(err.value).startswith("config.toml: [guest] product_key: 'Windows Server "
                                     "2022 SERVERSTANDARD' is an evaluation image")
    assert 'set product_key = "" (none)' in str(err.value)
    check_edition(server(iso, product_key=""), tmp_path / "install.log")
    assert "edition ServerStandardEval" in (tmp_path / "install.log").read_text()


def test_a_volume_licence_server_image_needs_a_key(tmp_path):
    from revive.guests.windows.wim import check_edition
    iso = wim_iso(tmp_path, SERVER_VL)
    check_edition(server(iso))                                  # the generic key
    with pytest.raises(UserError, match="which stops Setup without a key and has none here"):
        check_edition(server(iso, product_key=""))


def test_an_index_without_a_key_is_refused_naming_the_edition(tmp_path):
    from revive.guests.windows.wim import check_edition
    iso = wim_iso(tmp_path, SERVER_VL)
    s = server(iso, image=1)
    assert s.product_key is None
    with pytest.raises(UserError) as err:
        check_edition(s)
    assert str(err.value) == (
        "config.toml: [guest] product_key: image 1 is 'Windows Server 2022 SERVERSTANDARD' "
        "(ServerStandard), which stops Setup without a key and has none here; set image = "
        "\"Windows Server 2022 SERVERSTANDARD\" so its generic key is chosen, or set "
        "product_key to your key (docs/windows.md lists the generic ones)")


def test_an_image_the_iso_lacks_is_refused_listing_what_it_has(tmp_path):
    from revive.guests.windows.wim import check_edition
    iso = wim_iso(tmp_path, SERVER_VL)
    with pytest.raises(UserError) as err:
        check_edition(server(iso, image=3))
    assert str(err.value) == ("config.toml: [guest] image: 3 is not in win.iso; use one "
                              "of 1 'Windows Server 2022 SERVERSTANDARD'")
    log = tmp_path / "install.log"
    with pytest.raises(UserError) as err:
        check_edition(server(iso, image=3), log)
    assert err.value.log == str(log)
    assert "1 'Windows Server 2022 SERVERSTANDARD' (ServerStandard)" in log.read_text()
    assert "config.toml: [guest] image: 3 is not in win.iso; use one of" in log.read_text()


CLIENT = [(1, "Windows 11 Pro", "Professional")]


def client(iso, **over):
    table = {"iso": str(iso), "iso_sha256": "0" * 64, "windows_version": "11",
             "image": "Windows 11 Pro", "cygwin_mirror": "m"}
    return from_table(dict(table, **over), iso.parent)


@pytest.mark.parametrize("ei_cfg, license, refused", [
    (None, "retail", None),                                   # consumer media: no ei.cfg
    ("[EditionID]\r\n\r\n[Channel]\r\nRetail\r\n", "retail", None),
    ("[EditionID]\r\n\r\n[Channel]\r\nVolume\r\n", "retail",
     'win.iso is Volume media (sources/ei.cfg) but the default key is for retail media; '
     'set license = "volume"'),
    ("[Channel]\r\nVolume\r\n", "volume", None),
    ("[Channel]\r\nOEM\r\n", "volume",
     'win.iso is OEM media (sources/ei.cfg) but the default key is for volume media; '
     'set license = "retail"'),
])
def test_the_default_key_fits_the_media_ei_cfg_names(tmp_path, ei_cfg, license, refused):
    from revive.guests.windows.wim import check_edition
    iso = wim_iso(tmp_path, CLIENT, ei_cfg=ei_cfg)
    s = client(iso, license=license)
    if refused is None:
        check_edition(s, tmp_path / "install.log")
        return
    with pytest.raises(UserError) as err:
        check_edition(s)
    assert str(err.value) == "config.toml: [guest] license: " + refused
    # a key of the user's is theirs to choose
    check_edition(client(iso, license=license, product_key="ABCDE-ABCDE-ABCDE-ABCDE-ABCDE"))
