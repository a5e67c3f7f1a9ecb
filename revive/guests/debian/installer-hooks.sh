# The Debian guest's steps for the tiny guest's installer: its /init sources
# this file from the install CD and then runs its usual sequence, in which
# these functions replace the ones that differ for a Debian system. The
# partitioning, the answers, the console report and the power-off are the
# tiny installer's own (say, fail, install_key and write_shares come from it).
#
# The CD carries system.tar.gz (the root made on the host: by mmdebstrap, or
# for another architecture than the host's by debootstrap --foreign, whose
# second stage runs here) and system.cpio (revive's files: the pinned
# kernel's modules, SSH, network and systemd settings), unpacked in that
# order.

# Units that would only cost boot time or wake up in the middle of a build:
# timers that clean, scrub or update, and a login prompt on the serial
# console that the host reads (ttyS0, ttyAMA0: the console= of the kernel
# command line, which the installed system boots with too).
REVIVE_CONSOLE=$(sed -n 's/.*console=\([A-Za-z0-9]*\).*/\1/p' /proc/cmdline)
REVIVE_MASKED="apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer
    e2scrub_all.timer e2scrub_reap.service fstrim.timer man-db.timer
    systemd-tmpfiles-clean.timer systemd-networkd-wait-online.service
    serial-getty@${REVIVE_CONSOLE:-ttyS0}.service"
REVIVE_ENABLED="systemd-networkd.service revive-ready.service"

copy_system() {
    say "unpacking the Debian system"
    tar -x -z -f "$CDROM/system.tar.gz" -C "$TARGET" || fail "unpacking system.tar.gz"
    second_stage
    say "adding revive's files"
    (cd "$TARGET" && cpio -i -d -m -u <"$CDROM/system.cpio") 2>/dev/null \
        || fail "unpacking system.cpio"
}

# in_target COMMAND...: run a program of the installed system, which needs
# /dev and /proc; they are unmounted again before the disk is.
in_target() {
    grep -q " $TARGET/proc " /proc/mounts || {
        mount -o bind /dev "$TARGET/dev" && mount -t proc proc "$TARGET/proc"
    } || fail "mounting /dev and /proc in $TARGET"
    chroot "$TARGET" "$@"
}

leave_target() {
    umount "$TARGET/proc" "$TARGET/dev" 2>/dev/null
    return 0
}

# A root made by debootstrap --foreign (another architecture than the
# host's) has its packages unpacked but not configured: debootstrap's second
# stage configures them here, natively in the guest. Its log is kept in
# /var/log/revive-second-stage.log of the installed system.
second_stage() {
    [ -x "$TARGET/debootstrap/debootstrap" ] || return 0
    say "configuring the Debian packages (debootstrap --second-stage)"
    log=/tmp/second-stage.log
    if ! in_target /debootstrap/debootstrap --second-stage >"$log" 2>&1; then
        tail -n 15 "$log" "$TARGET/debootstrap/debootstrap.log" 2>/dev/null >/dev/console
        fail "debootstrap --second-stage"
    fi
    leave_target
    mkdir -p "$TARGET/var/log" && cp "$log" "$TARGET/var/log/revive-second-stage.log"
    # As mmdebstrap leaves a root: no SSH host key (make_host_key makes
    # this install's own) and no apt lists.
    rm -f "$TARGET"/etc/ssh/ssh_host_* "$TARGET"/var/lib/apt/lists/*_*
}

apply_answers() {
    say "configuring $REVIVE_HOSTNAME"
    echo "$REVIVE_HOSTNAME" >"$TARGET/etc/hostname"
    printf '127.0.0.1\tlocalhost\n127.0.1.1\t%s\n' "$REVIVE_HOSTNAME" \
        >"$TARGET/etc/hosts"
    in_target systemd-machine-id-setup >/dev/null 2>&1 || fail "making /etc/machine-id"
    # The modules in system.cpio get their index from the system's own
    # depmod. Its full path: busybox would run its own applet of that name.
    in_target /sbin/depmod -a "$(uname -r)" || fail "depmod for kernel $(uname -r)"
    # shellcheck disable=SC2086 # the lists are words
    in_target systemctl enable --quiet $REVIVE_ENABLED || fail "enabling $REVIVE_ENABLED"
    # shellcheck disable=SC2086
    in_target systemctl mask --quiet $REVIVE_MASKED || fail "masking units"
    install_key /root 0 0
    if [ "$REVIVE_USER" != root ]; then
        in_target groupadd --gid 1000 "$REVIVE_USER" \
            && in_target useradd --uid 1000 --gid 1000 --create-home \
                --shell /bin/bash "$REVIVE_USER" \
            || fail "creating user $REVIVE_USER"
        install_key "/home/$REVIVE_USER" 1000 1000
    fi
    write_shares
}

make_host_key() {
    say "generating the SSH host key"
    key=/etc/ssh/ssh_host_ed25519_key
    rm -f "$TARGET$key" "$TARGET$key.pub"
    in_target ssh-keygen -q -t ed25519 -N "" -C "root@$REVIVE_HOSTNAME" -f "$key" \
        || fail "generating the SSH host key"
    leave_target
    public=$(cut -d ' ' -f 1,2 "$TARGET$key.pub")
    case "$public" in
        "ssh-ed25519 "?*) ;;
        *) fail "generating the SSH host key" ;;
    esac
    echo "REVIVE-HOSTKEY $public" >/dev/console
}
