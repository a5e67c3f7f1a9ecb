"""The Debian bookworm packages every Linux guest's installer and boot are
made of, pinned: the kernel, busybox, isolinux.

To move to newer packages: `apt-get update`, then for each package
`apt-cache show NAME=VERSION` gives the Version and SHA256 to copy here. The
kernel is pinned by its versioned package (the ABI is part of the name), not
the linux-image-amd64 metapackage, so the module paths are known in advance.
"""

from revive.guests.debs import Pin

KERNEL_RELEASE = "6.1.0-56-amd64"

KERNEL = Pin("linux-image-6.1.0-56-amd64", "6.1.192-2",
             "a86e2049672f52354c4536a089203b6c82639420424d31c91cf31a181fd4d8f1")
BUSYBOX = Pin("busybox-static", "1:1.35.0-4+deb12u1+b1",
              "3d3fdbe91d4660c873e14b092c213fe81c1da6362daa236eb25d0171eb108744")

# isolinux.bin comes from isolinux, ldlinux.c32 from syslinux-common.
ISOLINUX = Pin("isolinux", "3:6.04~git20190206.bf6db5b4+dfsg1-3",
               "cb14af88adc2c3844976cd2de61571d2af94d2fb65c277fe4acf3dc8a5d25aae",
               arch="all")
SYSLINUX_COMMON = Pin("syslinux-common", "3:6.04~git20190206.bf6db5b4+dfsg1-3",
                      "f7e4ead7fdfe5cb6117d8d2485d75e53570a8cf680c81a432f92c1774f878875",
                      arch="all")

ALL = [KERNEL, BUSYBOX, ISOLINUX, SYSLINUX_COMMON]
