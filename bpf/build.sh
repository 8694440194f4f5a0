#!/bin/sh
# Compile the BPF program and generate its libbpf skeleton into $1 (called by binding.gyp).
set -eu
out=${1:?usage: bpf/build.sh OUTDIR}
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$out"
for tool in clang bpftool; do
  command -v "$tool" >/dev/null 2>&1 || [ -x "/usr/sbin/$tool" ] || {
    echo "interlock: '$tool' is missing: apt-get install clang libbpf-dev bpftool" >&2; exit 1; }
done
BPFTOOL=$(command -v bpftool || echo /usr/sbin/bpftool)
# vmlinux.h: the running kernel's types, for the LSM hook that reads a unix socket's name
btf=/sys/kernel/btf/vmlinux
[ -r "$btf" ] || { echo "interlock: $btf is missing: the kernel needs CONFIG_DEBUG_INFO_BTF" >&2; exit 1; }
[ -s "$out/vmlinux.h" ] || "$BPFTOOL" btf dump file "$btf" format c > "$out/vmlinux.h"
arch=$(uname -m | sed 's/x86_64/x86/; s/aarch64/arm64/')
clang -g -O2 -Wall -target bpf -D__TARGET_ARCH_"$arch" \
  -I/usr/include/"$(uname -m)"-linux-gnu -I"$out" -I"$here" \
  -c "$here/interlock.bpf.c" -o "$out/interlock.bpf.o"
"$BPFTOOL" gen skeleton "$out/interlock.bpf.o" name interlock > "$out/interlock.skel.h"
