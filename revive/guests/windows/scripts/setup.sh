#!/bin/bash
# revive: configure Cygwin's sshd in a Windows guest.
#
# Run once by setup.cmd through Cygwin's bash, with PAYLOAD (the payload CD's
# drive, e.g. E:) in the environment. Installs the project's public key for
# the administrator, configures sshd as a service and reports its host key on
# COM1 (/dev/ttyS0) as "REVIVE-HOSTKEY <key>". User name and password are read
# from files on the CD, so no value is ever parsed as shell syntax.
set -u
payload=$(cygpath -u "$PAYLOAD")
user=$(cat "$payload/revive/admin-user")
password=$(cat "$payload/revive/admin-password")
console=/dev/ttyS0

step() { printf 'REVIVE-STEP %s\r\n' "$1" > "$console"; echo "== $1"; }
fail() { printf 'REVIVE-FAILED %s\r\n' "$1" > "$console"; exit 1; }

step admin-account
# XP/2003 log on as Administrator; create the configured account if missing.
if ! net user "$user" > /dev/null 2>&1; then
    admins=$(getent group S-1-5-32-544 | cut -d: -f1)
    net user "$user" "$password" /add || fail admin-account
    net localgroup "$admins" "$user" /add || fail admin-account
fi

step authorized-keys
home=$(getent passwd "$user" | cut -d: -f6)
home=${home:-/home/$user}
mkdir -p "$home/.ssh" || fail authorized-keys
cp "$payload/revive/authorized_keys" "$home/.ssh/authorized_keys" || fail authorized-keys
chown -R "$user" "$home" || fail authorized-keys
# sshd's StrictModes: only the owner may write home, .ssh and the key file.
chmod go-w "$home" && chmod 700 "$home/.ssh" && chmod 600 "$home/.ssh/authorized_keys" \
    || fail authorized-keys

step ssh-host-config
# --user/--pwd answer the privileged-account questions; stdin is closed so
# any question left cannot wait forever.
ssh-host-config --yes --port 22 --user cyg_server --pwd "$password" < /dev/null \
    || fail ssh-host-config

step sshd-start
# The service is "cygsshd" since 2019, "sshd" before.
cygrunsrv --start cygsshd 2> /dev/null || cygrunsrv --start sshd || fail sshd-start

step host-key
key=$(cat /etc/ssh_host_ed25519_key.pub) || fail host-key
printf 'REVIVE-HOSTKEY %s\r\n' "$key" > "$console"
