"""The Debian packages every Linux guest's installer and boot are made of,
pinned per architecture: the kernel, busybox, and on amd64 isolinux.

To move to newer packages: `apt-get update`, then for each package
`apt-cache show NAME=VERSION` gives the Version and SHA256 to copy here
(for another architecture, ask the private apt configuration revive keeps
in the cache, e.g. ``APT_CONFIG=~/.cache/revive/debs/apt-arm64-bookworm-*/apt.conf
apt-cache show ...``). The kernel is pinned by its versioned package (the
ABI is part of the name), not the metapackage, so the module paths are
known in advance. Its flavour is ``devices.ARCHES[arch].kernel_flavour``
(arm64: the generic flavour; the cloud one has no 9p).
"""

from dataclasses import dataclass

from revive.guests.debs import Pin


@dataclass(frozen=True)
class LinuxPins:
    kernel_release: str
    kernel: Pin
    busybox: Pin
    boot_loader: "tuple[Pin, ...]" = ()   # isolinux (x86: the firmware boots the ISO)

    @property
    def all(self) -> "list[Pin]":
        return [self.kernel, self.busybox, *self.boot_loader]


# isolinux.bin comes from isolinux, ldlinux.c32 from syslinux-common.
ISOLINUX = Pin("isolinux", "3:6.04~git20190206.bf6db5b4+dfsg1-3",
               "cb14af88adc2c3844976cd2de61571d2af94d2fb65c277fe4acf3dc8a5d25aae",
               arch="all")
SYSLINUX_COMMON = Pin("syslinux-common", "3:6.04~git20190206.bf6db5b4+dfsg1-3",
                      "f7e4ead7fdfe5cb6117d8d2485d75e53570a8cf680c81a432f92c1774f878875",
                      arch="all")

BY_ARCH = {
    # bookworm
    "amd64": LinuxPins(
        "6.1.0-56-amd64",
        Pin("linux-image-6.1.0-56-amd64", "6.1.192-2",
            "a86e2049672f52354c4536a089203b6c82639420424d31c91cf31a181fd4d8f1"),
        Pin("busybox-static", "1:1.35.0-4+deb12u1+b1",
            "3d3fdbe91d4660c873e14b092c213fe81c1da6362daa236eb25d0171eb108744"),
        (ISOLINUX, SYSLINUX_COMMON)),
    # bookworm, the same kernel version as amd64
    "arm64": LinuxPins(
        "6.1.0-56-arm64",
        Pin("linux-image-6.1.0-56-arm64", "6.1.192-2",
            "6f4ed2d1cb9106bc977c2b1960008f175e2eed5740340634b7894e65ef5acc82", "arm64"),
        Pin("busybox-static", "1:1.35.0-4+deb12u1+b1",
            "732c9135564fc71337e0e05fb4da4d11e6c28c1834bce3e405e575afef2a52f5", "arm64")),
    # trixie (bookworm has no riscv64)
    "riscv64": LinuxPins(
        "6.12.117+deb13-riscv64",
        Pin("linux-image-6.12.117+deb13-riscv64", "6.12.117-1",
            "f5d9424b6f6a4518197202effc7e8eeaa90f8d73466c2dba2470f6ea7fb4f55c", "riscv64"),
        Pin("busybox-static", "1:1.37.0-6+b9",
            "4add476d2b185c5b487c285b38d790f0881a7e4a8e2ddde835f917e770eb8633", "riscv64")),
    # bookworm, the same kernel version as amd64 (the LPAE flavour)
    "armhf": LinuxPins(
        "6.1.0-56-armmp-lpae",
        Pin("linux-image-6.1.0-56-armmp-lpae", "6.1.192-2",
            "1f20776da77f0bd0a3e0bb986a1c306776ec579a7d4dd36546c827f6aa7df51b", "armhf"),
        Pin("busybox-static", "1:1.35.0-4+deb12u1+b1",
            "2f68dbeaebeda49f3cde34ac421d5add85fb1c837ff7c4a4971945340d9d66ff", "armhf")),
    # bookworm, the same kernel version as amd64
    "ppc64el": LinuxPins(
        "6.1.0-56-powerpc64le",
        Pin("linux-image-6.1.0-56-powerpc64le", "6.1.192-2",
            "64fca1f8f914130746f22022e0133f559ebc1a552eabd12473ee5b11ceccc71a", "ppc64el"),
        Pin("busybox-static", "1:1.35.0-4+deb12u1+b1",
            "932deb885b840a8cf529708c03a1e87833dc64e66a70585721f8a356d9fe995b", "ppc64el")),
    # bookworm; its security archive builds no s390x kernel, so the last
    # point release's: ABI 50, 6.1.176.
    "s390x": LinuxPins(
        "6.1.0-50-s390x",
        Pin("linux-image-6.1.0-50-s390x", "6.1.176-1",
            "a9cbaa26e37f70caa41b66b23f82169eb82042471c1ee89592613b659b12c0dd", "s390x"),
        Pin("busybox-static", "1:1.35.0-4+deb12u1+b1",
            "65e29a4dea3ca365e9ee73a6b4fa2a42c8cbbd3b13753250e68b4835876fe316", "s390x")),
}

# The amd64 names other guests use (the Debian guest, the KVM probe kernel).
KERNEL_RELEASE = BY_ARCH["amd64"].kernel_release
KERNEL = BY_ARCH["amd64"].kernel
BUSYBOX = BY_ARCH["amd64"].busybox
ALL = BY_ARCH["amd64"].all
