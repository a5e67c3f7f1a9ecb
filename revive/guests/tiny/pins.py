"""The Debian packages of the tiny guest's own system, pinned per
architecture (the kernel, busybox and isolinux every Linux guest shares are
in revive/guests/linux/pins.py): bookworm for amd64, arm64, armhf, ppc64el
and s390x, trixie for riscv64.

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
    "armhf": _pins("armhf", """
dropbear-bin 2022.83-1+deb12u3 08ce9afbc253276d95c9353e1ee1182dc68b3e8e26cfbddc1748bc0f2826598a
libc6 2.36-9+deb12u14 758c68b92654747025b48476a45c315bf16df1321224abdd9be672bfd120be45
libcrypt1 1:4.4.33-2 6bb061a2279a27ff61791cda6edc8925455e5423e475e5e6c41ad7e04d8efc3c
libtomcrypt1 1.18.2-6 ad36bac643ec0fbe0611a68facf579d5daf30293800714f924809a218ff69c69
libtommath1 1.2.0-6+deb12u1 afba8152d77539a9af02bbd1f6b614426d6c768ddc3abb0aa19f28463e974092
libgmp10 2:6.2.1+dfsg1-1.1 240b6cc98c7fbd4781e8aa90d0bb68ccbc4a0931565cff7565509836bbd807ad
zlib1g 1:1.2.13.dfsg-1+deb12u1 f89b0b4ba995263396346c45659733e8a0cb7fb7ab23822807f73c1694a055da
qemu-guest-agent 1:7.2+dfsg-7+deb12u18+b3 ee7c1673a85f16f07e405693a549dcdfa844a565e05546f4da5bf92150f1d6f2
libglib2.0-0 2.74.6-2+deb12u9 0b687efd895b4963445b848a0acb931358f85f636365824c308689b1e920223b
libpcre2-8-0 10.42-1+deb12u2 2b444c1aaecffea8b4c5fd1972adca2751e7ee41f577ce0c93ddfa90b621f935
libudev1 252.39-1~deb12u2 094567c28c3dc3930ea8c7b53c5fef7439a84ae42cdfdd4bd58d37c7d3eaaf4c
liburing2 2.3-3 24e45b6b0b69243e5ce19063f7a6aabc9fb55ce06998b90da54c82485c16397e
"""),
    "ppc64el": _pins("ppc64el", """
dropbear-bin 2022.83-1+deb12u3 f3259a96655880a43e3dd2325d2e8652715bc93dc101f0c77011fa9182ca3a0c
libc6 2.36-9+deb12u14 b3fbe86d5b7cf02d8653b34a0753c6b5bc89dd962ef843c355cdd154ea87baff
libcrypt1 1:4.4.33-2 c5825784746727b7f8338c4de6caaa0d5945737628420f9a7cd8f0fc582372e6
libtomcrypt1 1.18.2-6 35945e2384397b53a4bbec3561f2553405418a56d38e2a38e1d28d95628a11ee
libtommath1 1.2.0-6+deb12u1 4df458c7383bd66d6349a78feea2b8b3c4268b3cc9a68bf0cfd80a2283fade04
libgmp10 2:6.2.1+dfsg1-1.1 bf62b79d8d38a88e9570864625079479b58a79a5c7e7836a336d6d364edc3631
zlib1g 1:1.2.13.dfsg-1+deb12u1 51a4d1cde4fc09e5c4bbbea3050367d4852f1b3238686efe673196b06630ba76
qemu-guest-agent 1:7.2+dfsg-7+deb12u18+b3 f97aa61f10d151d33b90e74e171e9b5877500c93dfaea215dfdf9a3f30675a79
libglib2.0-0 2.74.6-2+deb12u9 d3992d3cba63e3cbb0b2f32e49096f5c9c8188d98fd604b8dfce606ac61a478f
libpcre2-8-0 10.42-1+deb12u2 3dcff03c7dccf18af272a8fb7fea2f02ac7180fe7b61eb038987682f5533e700
libudev1 252.39-1~deb12u2 5d337f7280ce2a6ad6b82aa4202f3e68235feda2221f48c2c380cedd555b4dfb
libnuma1 2.0.16-1 3ac8b9191be6b08616cd189c6e54fa1f931bea5df20a9eeec3b5acbd0aedeaf4
liburing2 2.3-3 507c3cc77fb7145876a102f8af887562aefadb7c1036a932fc225fdf0349408e
"""),
    "s390x": _pins("s390x", """
dropbear-bin 2022.83-1+deb12u3 d72450304c6d870f7acfc89bc1d73c61fb459646e02a390e3094e336435b1b6a
libc6 2.36-9+deb12u14 bbca8c91bad7f799114fe865233af0018f58b903da11c1c58a7f2d2484103d45
libcrypt1 1:4.4.33-2 9c7fc22abd79945ee813450f7929f9349bd370bcdc979c4e128e884344169e1f
libtomcrypt1 1.18.2-6 e8479c02a1195541071627a89b2bd72cf8e43f1d66bdd36580b19a03849cc8d5
libtommath1 1.2.0-6+deb12u1 2fe0f61767022c019aa3a3f95b411425a1440935170e3e8910698b3f2270f15f
libgmp10 2:6.2.1+dfsg1-1.1 eef3d3d6bd4d7306da5ad475fd4dfc36eb36504d9896ebf6fe01d4ff2cee63a0
zlib1g 1:1.2.13.dfsg-1 aaa18b6281d1e5a5ba82bdb951d1b0fed43829f52a285f351dc5352880e3ef7e
qemu-guest-agent 1:7.2+dfsg-7+deb12u18+b3 d763c415fb05b60558ab6e05263d7dbd5186b251aec21f45063de70702a5a91d
libglib2.0-0 2.74.6-2+deb12u9 b06cf5820f89da9d489d50cbc0b16960d0797767ebc5b69180ee9637b4acdd98
libpcre2-8-0 10.42-1 f7e39d23b97e7c30a0294c810b3df6bf4e974e9555cdaf8c1dc274195443fc32
libudev1 252.39-1~deb12u2 b8cf33aaf560e84fddecd2cf226ad7b8838c8f52a46c81135d9de6cdc79a480f
libnuma1 2.0.16-1 5b1813ab4b98752b301cc17f67cdc26d5cddbc3daaf4920833667855cf169371
liburing2 2.3-3 a90bc008333cda8d7209a1f9202df60fb80d77718ed21684025f076b1f04b8fb
"""),
}
