"""Default product keys: Microsoft's published generic keys, per edition.

Setup needs a key that matches the edition it installs. Volume-licence and
retail Server ISOs stop without one ("Windows cannot read the <ProductKey>
setting"); a multi-edition consumer ISO picks the edition by the key when
the image is not named. The keys below are the Generic Volume License Keys
(KMS client setup keys) Microsoft publishes for this purpose in "Key
Management Services (KMS) client activation and product keys"
(learn.microsoft.com/windows-server/get-started/kms-client-activation-keys,
source: github.com/MicrosoftDocs/windowsserverdocs,
WindowsServerDocs/get-started/kms-client-activation-keys.md). They install;
they do not activate without a KMS host, which a build VM never needs.

The same keys are in dockur/windows' answer files (assets/win2022.xml:
VDYBN-…, win2025.xml: TVRH6-…, win11x64-enterprise.xml: NPPR9-…).

Which table: ``[guest] license``, "retail" (consumer media, the default
for client versions: ``GENERIC``) or "volume" (volume-licence media, the
default for Server: ``GVLK``); the install stage reads the ISO's
sources/ei.cfg and refuses a default key of the other kind.

No key is offered for an evaluation image (Microsoft's evaluation media
refuse any key but their own built-in one, so dockur strips keys for them
too), or when ``image`` is an index (the edition is unknown until the ISO
is read): the config is then refused unless it sets product_key.
"""

import re
from typing import Optional, Union

# windows_version -> {edition: key}; editions as normalize_edition returns them.
GVLK = {
    "2025": {"STANDARD": "TVRH6-WHNXV-R9WG3-9XRFY-MY832",
             "DATACENTER": "D764K-2NDRG-47T6Q-P8T8W-YP6DF",
             "DATACENTER AZURE EDITION": "XGN3F-F394H-FD2MY-PP6FD-8MCRC"},
    "2022": {"STANDARD": "VDYBN-27WPP-V4HQT-9VMD4-VMK7H",
             "DATACENTER": "WX4NM-KYWYW-QJJR4-XV3QB-6VM33",
             "DATACENTER AZURE EDITION": "NTBV8-9K7Q8-V27C6-M2BTV-KHMXV"},
    "2019": {"STANDARD": "N69G4-B89J2-4G8F4-WWYCC-J464C",
             "DATACENTER": "WMDGN-G9PQG-XVVXX-R3X43-63DFG",
             "ESSENTIALS": "WVDHN-86M7X-466P6-VHXV7-YY726"},
    "2016": {"STANDARD": "WC2BQ-8NRM3-FDDYY-2BFGV-KHKQY",
             "DATACENTER": "CB7KF-BWN84-R7R2Y-793K2-8XDDG",
             "ESSENTIALS": "JCKRF-N37P4-C2D82-9YXRT-4M63B"},
    "2012r2": {"STANDARD": "D2N9P-3P6X9-2R39C-7RTCD-MDVJX",
               "DATACENTER": "W3GGN-FT8W3-Y4M27-J84CP-Q3VJ9",
               "ESSENTIALS": "KNC87-3J2TX-XB4WP-VCPJV-M4FWM"},
    "2012": {"STANDARD": "XC9B7-NBPP2-83J2H-RHMBY-92BT4",
             "DATACENTER": "48HP8-DN98B-MYWDG-T2DCC-8W83P",
             "ESSENTIALS": "HTDQM-NBMMG-KGYDT-2DTKT-J2MPV"},
    "2008r2": {"STANDARD": "YC6KT-GKW9T-YTKYR-T4X34-R7VHC",
               "ENTERPRISE": "489J6-VHDMP-X63PK-3K798-CPX3Y",
               "DATACENTER": "74YFP-3QFB3-KQT8W-PMXWJ-7M648",
               "WEB": "6TPJF-RBVHG-WBW2R-86QPH-6RTM4"},
    "2008": {"STANDARD": "TM24T-X9RMF-VWXK6-X8JC9-BFGM2",
             "ENTERPRISE": "YQGMW-MPWTJ-34KDK-48M3W-X4Q6V",
             "DATACENTER": "7M67G-PC374-GR742-YH8V4-TCBY3",
             "WEB": "WYR28-R7TFJ-3X2YQ-YCY4H-M249D"},
    "11": {"PRO": "W269N-WFGWX-YVC9B-4J6C9-T83GX",
           "PRO N": "MH37W-N47XK-V7XM9-C7227-GCQG9",
           "PRO FOR WORKSTATIONS": "NRG8B-VKK3Q-CXVCJ-9G2XF-6Q84J",
           "PRO FOR WORKSTATIONS N": "9FNHH-K3HBT-3W4TD-6383H-6XYWF",
           "PRO EDUCATION": "6TP4R-GNPTD-KYYHQ-7B7DP-J447Y",
           "PRO EDUCATION N": "YVWGF-BXNMC-HTQYQ-CPQ99-66QFC",
           "EDUCATION": "NW6C2-QMPVW-D7KKK-3GKT6-VCFB2",
           "EDUCATION N": "2WH4N-8QGBV-H22JP-CT43Q-MDWWJ",
           "ENTERPRISE": "NPPR9-FWDCX-D2C8J-H872K-2YT43",
           "ENTERPRISE N": "DPH2V-TTNVB-4X9Q3-TJR4H-KHJW4",
           "ENTERPRISE G": "YYVX9-NTFWV-6MDM3-9PT4T-4M68B",
           "ENTERPRISE G N": "44RPN-FTY23-9VTTB-MP9BX-T84FV",
           "ENTERPRISE LTSC": "M7XTQ-FN8P6-TTKYV-9D4CC-J462D",
           "ENTERPRISE N LTSC": "92NFX-8DJQP-P6BBQ-THF9C-7CG2H",
           "IOT ENTERPRISE LTSC": "KBN8V-HFGQ4-MGXVD-347P6-PDQGT"},
    "8.1": {"PRO": "GCRJD-8NW9H-F2CDX-CCM8D-9D6T9",
            "PRO N": "HMCNV-VVBFX-7HMBH-CTY9B-B4FXY",
            "ENTERPRISE": "MHF9N-XY6XB-WVXMC-BTDCT-MKKG7",
            "ENTERPRISE N": "TT4HM-HN7YT-62K67-RGRQJ-JFFXW"},
    "8": {"PRO": "NG4HW-VH26C-733KW-K6F98-J8CK4",
          "PRO N": "XCVCF-2NXM9-723PB-MHCB7-2RYQQ",
          "ENTERPRISE": "32JNW-9KQ84-P47T8-D8GGY-CWCK7",
          "ENTERPRISE N": "JMNMF-RHW7P-DMY6X-RF3DR-X2BQT"},
    "7": {"PROFESSIONAL": "FJ82H-XT6CR-J8D7P-XQJJ2-GPDD4",
          "PROFESSIONAL N": "MRPKT-YTG23-K7D7T-X2JMM-QY7MG",
          "ENTERPRISE": "33PXH-7Y6KF-2VJC9-XBBR8-HVTHH",
          "ENTERPRISE N": "YDRBP-3D83W-TY26F-D46B2-XCKRJ"},
    "vista": {"BUSINESS": "YFKBB-PQJJV-G996G-VWGXY-2V3X8",
              "BUSINESS N": "HMBQG-8H2RH-C77VX-27R82-VMQBT",
              "ENTERPRISE": "VKK3X-68KWM-X2YGT-QR4M6-4BWMV",
              "ENTERPRISE N": "VTC42-BM838-43QHV-84HX6-XJXKV"},
}
# Windows 10 shares Windows 11's table (one row per edition on Microsoft's
# page); its LTSC 2019/2021 keys are the LTSC 2024 ones.
GVLK["10"] = GVLK["11"]

# Generic installation keys: what consumer (retail) media take. Setup on a
# consumer multi-edition ISO may reject a KMS client key and then waits on
# its key page; dockur/windows writes these (assets/win11x64.xml and
# win10x64.xml: VK7JG-… for Pro; win7x64*.xml, win81x64-enterprise.xml,
# winvista*.xml for the older ones). The Windows 10/11 list is the "generic
# key preset" of the Media Creation Tool's install.esd (its
# sources/product.ini), as AveYo's MediaCreationTool.bat lists it. They
# install; they never activate. Editions without one (Enterprise LTSC, 8.1
# Pro) fall back to the KMS client key, as dockur's files do.
GENERIC = {
    "11": {"HOME": "YTMG3-N6DKC-DKB77-7M9GH-8HVX7",
           "HOME N": "4CPRK-NM3K3-X6XXQ-RXX86-WXCHW",
           "HOME SINGLE LANGUAGE": "BT79Q-G7N6G-PGBYW-4YWX6-6F4BT",
           "PRO": "VK7JG-NPHTM-C97JM-9MPGT-3V66T",
           "PRO N": "2B87N-8KFHP-DKV6R-Y2C8J-PKCKT",
           "PRO FOR WORKSTATIONS": "DXG7C-N36C4-C4HTG-X4T3X-2YV77",
           "PRO N FOR WORKSTATIONS": "WYPNQ-8C467-V2W6J-TX4WX-WT2RQ",
           "PRO FOR WORKSTATIONS N": "WYPNQ-8C467-V2W6J-TX4WX-WT2RQ",
           "PRO EDUCATION": "8PTT6-RNW4C-6V7J2-C2D3X-MHBPB",
           "PRO EDUCATION N": "GJTYN-HDMQY-FRR76-HVGC7-QPF8P",
           "EDUCATION": "YNMGQ-8RYV3-4PGQ3-C8XTP-7CFBY",
           "EDUCATION N": "84NGF-MHBT6-FXBX8-QWJK7-DRR8H",
           "ENTERPRISE": "XGVPP-NMH47-7TTHJ-W3FW7-8HV2C",
           "IOT ENTERPRISE": "CGK42-GYN6Y-VD22B-BX98W-J8JXD"},
    "8.1": {"ENTERPRISE": "FHQNR-XYXYC-8PMHT-TV4PH-DRQ3H"},
    "7": {"PROFESSIONAL": "HYF8J-CVRMY-CM74G-RPHKF-PW487",
          "ULTIMATE": "D4F6K-QK3RD-TMVMJ-BBMRX-3MBMV",
          "ENTERPRISE": "H7X92-3VPBB-Q799D-Y6JJ3-86WC6"},
    "vista": {"BUSINESS": "4D2XH-PRBMM-8Q22B-K8BM3-MRW4W",
              "ULTIMATE": "VMCB9-FDRV6-6CDQM-RV23K-RP8F7"},
}
GENERIC["10"] = GENERIC["11"]
LICENSES = ("retail", "volume")

# install.wim names editions two ways: "Windows Server 2022 Standard (Desktop
# Experience)" (display names) and "Windows Server 2019 SERVERSTANDARDCORE"
# (image names); both map to "STANDARD".
_WIM_EDITIONS = {"SERVERSTANDARD": "STANDARD", "SERVERDATACENTER": "DATACENTER",
                 "SERVERSOLUTION": "ESSENTIALS", "SERVERWEB": "WEB",
                 "SERVERENTERPRISE": "ENTERPRISE"}


def is_evaluation(image: Union[int, str, None]) -> bool:
    return isinstance(image, str) and "EVAL" in image.upper()


def normalize_edition(image: str, version: str) -> str:
    """'Windows Server 2022 Standard (Desktop Experience)' -> 'STANDARD',
    'Windows 11 Pro N' -> 'PRO N', 'Windows 10 Enterprise LTSC 2021' ->
    'ENTERPRISE LTSC'."""
    words = re.sub(r"\(.*?\)", " ", image.upper()).replace(":", " ").split()
    drop = {"WINDOWS", "SERVER", "MICROSOFT", version.upper(), "R2"}
    words = [w for w in words if w not in drop and not re.fullmatch(r"\d{4}|\d+(\.\d+)?", w)]
    out = []
    for word in words:
        core = word[:-4] if word.endswith("CORE") and word[:-4] in _WIM_EDITIONS else word
        out.append(_WIM_EDITIONS.get(core, word))
    return " ".join(out)


def default_key(version: str, image: Union[int, str, None],
                license: str = "volume") -> Optional[str]:
    """The key Setup takes for this edition on this kind of media: the
    generic installation key on retail (consumer) media, else the KMS
    client key; None when there is none to offer (index, evaluation,
    unknown edition)."""
    if not isinstance(image, str) or is_evaluation(image):
        return None
    edition = normalize_edition(image, version)
    if license == "retail" and edition in GENERIC.get(version, {}):
        return GENERIC[version][edition]
    return GVLK.get(version, {}).get(edition)


def license_of(key: str) -> Optional[str]:
    """Which media a default key belongs to, or None for a key of the user's."""
    if any(key in table.values() for table in GENERIC.values()):
        return "retail"
    if any(key in table.values() for table in GVLK.values()):
        return "volume"
    return None
