"""The Debian bookworm packages of the tiny guest's own system, pinned (the
kernel, busybox and isolinux every Linux guest shares are in
revive/guests/linux/pins.py).

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
