"""The Debian bookworm packages of the tiny guest's own system, pinned (the
kernel, busybox and isolinux every Linux guest shares are in
tasks/guests/linux/pins.py).

To move to newer packages: `apt-get update`, then for each package
`apt-cache show NAME=VERSION` gives the Version and SHA256 to copy here.
"""

from tasks.guests.debs import Pin

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

ALL = [DROPBEAR, *LIBRARIES]
