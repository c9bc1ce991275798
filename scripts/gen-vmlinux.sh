#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-2-Clause
# Regenerate vmlinux/<arch>/vmlinux.h from the running kernel's BTF.
# CO-RE relocations make one header serve every kernel, so this is only needed
# to reach types or fields that newer kernels added.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
arch=${1:-x86}
btf=${BTF:-/sys/kernel/btf/vmlinux}
command -v bpftool >/dev/null || { echo "gen-vmlinux: bpftool not found: apt-get install bpftool" >&2; exit 1; }
[ -r "$btf" ] || { echo "gen-vmlinux: $btf not readable: this kernel has no BTF (CONFIG_DEBUG_INFO_BTF=y needed)" >&2; exit 1; }
mkdir -p "$here/vmlinux/$arch"
tmp=$(mktemp)
bpftool btf dump file "$btf" format c > "$tmp"
mv "$tmp" "$here/vmlinux/$arch/vmlinux.h"
echo "gen-vmlinux: wrote vmlinux/$arch/vmlinux.h from $btf ($(uname -r))"
