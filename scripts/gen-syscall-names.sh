#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-2-Clause
# Emit a C table of syscall names indexed by number, from the kernel UAPI header (linux-libc-dev).
set -euo pipefail
hdr=${1:-}
if [ -z "$hdr" ]; then
  for h in /usr/include/x86_64-linux-gnu/asm/unistd_64.h /usr/include/asm/unistd_64.h; do
    [ -r "$h" ] && { hdr=$h; break; }
  done
fi
[ -n "$hdr" ] && [ -r "$hdr" ] || { echo "gen-syscall-names: unistd_64.h not found: apt-get install linux-libc-dev" >&2; exit 1; }
echo "/* Generated from $hdr by scripts/gen-syscall-names.sh: do not edit. */"
echo "static const char *const syscall_names[] = {"
awk '$1 == "#define" && $2 ~ /^__NR_/ && $3 ~ /^[0-9]+$/ { sub(/^__NR_/, "", $2); printf "\t[%d] = \"%s\",\n", $3, $2 }' "$hdr"
echo "};"
