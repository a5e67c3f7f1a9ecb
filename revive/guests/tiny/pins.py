"""The Debian packages of the tiny guest's own system, pinned per
architecture (the kernel, busybox and isolinux every Linux guest shares are
in revive/guests/linux/pins.py): bookworm for amd64 and arm64, trixie for
riscv64.

To move to newer packages: `apt-get update`, then for each package
`apt-cache show NAME=VERSION` gives the Version and SHA256 to copy here.
"""

from revive.guests.debs import Pin

DROPBEAR = Pin("dropbear-bin", "2022.83-1+deb12u3",
               "44ac9aaae0105bca66ea4d457852bf97020ccab33d5c088b0e5c8668891290a0")

# The shared libraries dropbear (and dropbearkey) load, found with ldd on the
# extracted binaries.
LIBRARIES = [
    Pin("libc6", "2.36-9+deb12u14",
        "ba4f88f73dbc3ae9055f3c20f4523bfdbaf1ad13ff95e258924f77d20b4fbedf"),
    Pin("libcrypt1", "1:4.4.33-2",
        "f5f60a5cdfd4e4eaa9438ade5078a57741a7a78d659fcb0c701204f523e8bd29"),
    Pin("libtomcrypt1", "1.18.2-6",
        "dc5e1105c6428277dc2d90263295c8409141541f4e30f55fe490207fdb8df645"),
    Pin("libtommath1", "1.2.0-6+deb12u1",
        "9ee19bf48bd80f903cd1ad64c1231198b1b1e5e2d3c2427fcd946916644424fa"),
    Pin("libgmp10", "2:6.2.1+dfsg1-1.1",
        "187aedef2ed763f425c1e523753b9719677633c7eede660401739e9c893482bd"),
    Pin("zlib1g", "1:1.2.13.dfsg-1",
        "d7dd1d1411fedf27f5e27650a6eff20ef294077b568f4c8c5e51466dc7c08ce4"),
]

# QEMU's guest agent and the libraries its binary loads beyond the ones above
# (found by the payload's ELF walk over usr/sbin/qemu-ga).
QEMU_GA = Pin("qemu-guest-agent", "1:7.2+dfsg-7+deb12u18+b3",
              "ffdc7852decec129a903acf1b9ac083859cabee60e7b24477b652f36e228e808")
AGENT_LIBRARIES = [
    Pin("libglib2.0-0", "2.74.6-2+deb12u9",
        "7ff85197685d89e150e342b29a59aab1beee400050ba7da73de81cd999ffee5a"),
    Pin("libpcre2-8-0", "10.42-1+deb12u2",
        "d2f7edfcc7689b9e0761c2742cc824ac86a20768bc5e8057818dc6875291fe76"),
    Pin("libudev1", "252.39-1~deb12u2",
        "6f7e08f11c4809d2e5998c775f7b423ab5ec2ce0309494b4a2615037052245e2"),
    Pin("libnuma1", "2.0.16-1",
        "639e1ab6bd66ead40db8a22c332d7199679fa22db261cac34444eb8eb4c17dda"),
    Pin("liburing2", "2.3-3",
        "c23077e3640e6cb4b819c134b3f41d5cf21b3edac099654b1b4142c3069a39a3"),
]

ALL = [DROPBEAR, *LIBRARIES, QEMU_GA, *AGENT_LIBRARIES]


def _pins(arch: str, text: str) -> "list[Pin]":
    """``package version sha256`` lines."""
    return [Pin(*line.split(), arch=arch) for line in text.strip().splitlines()]


# The same programs on the other architectures (the libraries found the
# same way, by the payload's ELF walk).
BY_ARCH = {
    "amd64": ALL,
    "arm64": _pins("arm64", """
dropbear-bin 2022.83-1+deb12u3 5ac2b0026ee47cbbb2378e339400a183196e9fe291d4794754b144b2dd8723e0
libc6 2.36-9+deb12u14 01f4330719fd4f65580e16ea5a0527f372fca750e8f588d26deaf09f2d3b1cf4
libcrypt1 1:4.4.33-2 eea0ad76ea5eb507127fea0c291622ea4ecdbb71c4b9a8ed9c76ae33fc1a0127
libtomcrypt1 1.18.2-6 e9fb6df9fde6b428fd7ae0dbbd012a20b77db999adbf38e4b331357c0ca04ec3
libtommath1 1.2.0-6+deb12u1 517fb3c1c0a0277fa55f332bdf7b5e6f9d9bd35edfbc95344c3eb2edc3cd365b
libgmp10 2:6.2.1+dfsg1-1.1 9906387c1dd806518c915bd8616d072c741061d7fa26b222e52763456060b31a
zlib1g 1:1.2.13.dfsg-1+deb12u1 61477d8059daf1765683a73099cc17941e1970acb520fd238646dedf99eb16f6
qemu-guest-agent 1:7.2+dfsg-7+deb12u18+b3 134334e395ddc92f01e75adcf6d0e12bc800d51c5e7f3a80d4a77294f7124ebc
libglib2.0-0 2.74.6-2+deb12u9 61d92fffada7e27fc0ed9d23e047b45bca3b2e3bfe1a918f4ec16559282859f4
libpcre2-8-0 10.42-1+deb12u2 8498d2c0bd6747dfc2fc6eec62774a86967079555f7043d5a7b78ee4efbbc0fb
libudev1 252.39-1~deb12u2 b76444b0259abfa416f8c1d9a652d208a24770667a1181aa52317b74d12a7a72
libnuma1 2.0.16-1 b4ed2547f387eb2e97d13c0b423b034d2a4d052b2131dfe043e45a84915452c5
liburing2 2.3-3 840486327052df397d78966e9d65d35404cfe0c1eaa2953842cffba427f8ffdf
"""),
    "riscv64": _pins("riscv64", """
dropbear-bin 2025.89-1~deb13u1 7a89a31fc438b30319631cc3eed65ef34921b636778117ed0d819bb4a420f243
libc6 2.41-12+deb13u5 107a6b5d327f81122549b1c5bfa9cfdea2532c4fddd9e0211a915bdfdf22d7f5
libcrypt1 1:4.4.38-1 85ae0d868b2a27043249ca332dac782a1a67e3171139b0f57d63414eaf4ec887
libtomcrypt1 1.18.2+dfsg-7+b2 b189c4f25bd57a0326b8c86f041a1bd7610df5b7f49ac0a4c93796450d97178a
libtommath1 1.3.0-1 3b0e91b9db099f49e330c9c28756ab9500b88fb685ec32a2e206209699a8f90d
libgmp10 2:6.3.0+dfsg-3 f09a7beea39293dc5047af3750d8359c9fe4fd9f35195e7bba5048e5a66b58d8
zlib1g 1:1.3.dfsg+really1.3.1-1+deb13u1 9ef7002c66324b32b66d894dbe2fd045db8fab38da32be5007c4a01ed0a7b495
qemu-guest-agent 1:10.0.13+ds-0+deb13u1 e3e78b7d5eb60fc01d3a0817f61a4cc014e6ef8701ceead709187beab7bf3281
libglib2.0-0t64 2.84.4-3~deb13u5 c47f583ab9990e9f8121dacfd1ead934509deb4621d574964578a42ee04ee98b
libpcre2-8-0 10.46-1~deb13u3 66baf766f7c1e14cf0cd30c7d85cdd6dc7885c193f49f1909f0b3fecb9fd04d9
libudev1 257.13-1~deb13u1 20e69815e1c80172b98e0d2a2db7de4f2fc4af7bc9186f651b2226ccd16748d2
libnuma1 2.0.19-1 7aa7b8ab3460bf501fcaa903a6a211f79e21d59a685c0718a27053f7c631b294
liburing2 2.9-1 77290ae3db74ff141d0522a1d7eb358a9a97a876dcb799f3579d797d6649097b
libcap2 1:2.75-10+deb13u1+b3 ef9e04266f4e9302f17e9acc0ce8cd4cad50d05539b8e64a4019a03e3f776699
libatomic1 14.2.0-19 ebaf12b2de00a4b567f70c629c0ff744dc92491029b3219d59c05c733f200c65
"""),
}
