#!/bin/sh
# The demo build: runs in the guest with this folder mounted read-only at
# /mnt/src and an empty exchange folder at /mnt/xchg.
set -eu
out=/mnt/xchg
echo "building hello on $(uname -sr) as $(id -un)"
sed "s/@HOST@/$(hostname)/" /mnt/src/hello.in > "$out/hello"
chmod +x "$out/hello"
sh "$out/hello" > "$out/hello.txt"
cat "$out/hello.txt"
