/* SPDX-License-Identifier: BSD-2-Clause */
/* Names for numbers the kernel reports: syscalls (x86_64 table generated at build time) and errno values. */
#ifndef LOUPE_NAMES_H
#define LOUPE_NAMES_H
#include <stddef.h>

/* "read", or "syscall_N" for unknown numbers (written into tmp). */
const char *syscall_name(unsigned nr, char *tmp, size_t n);
/* The number of a syscall name ("futex"), or -ENOENT. */
int syscall_number(const char *name);
/* "EAGAIN", or "EN" for unknown values (written into tmp). The kernel-internal restart codes (512-516) read as
 * the error userspace gets: EINTR (or ENOTTY for ENOIOCTLCMD). */
const char *errno_name(int err, char *tmp, size_t n);

#endif
