// SPDX-License-Identifier: BSD-2-Clause
/* Syscall and errno names as metric labels (src/lib/names.h), from the generated syscall table. */
#include "lib/names.h"
#include "syscall_names.h"
#include "lib/util.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

const char *syscall_name(unsigned nr, char *tmp, size_t n)
{
	if (nr < ARRAY_SIZE(syscall_names) && syscall_names[nr])
		return syscall_names[nr];
	snprintf(tmp, n, "syscall_%u", nr);
	return tmp;
}

int syscall_number(const char *name)
{
	for (size_t nr = 0; nr < ARRAY_SIZE(syscall_names); nr++)
		if (syscall_names[nr] && !strcmp(syscall_names[nr], name))
			return (int)nr;
	return -ENOENT;
}

const char *errno_name(int err, char *tmp, size_t n)
{
	/* Kernel-internal codes seen at sys_exit when a signal interrupts a syscall (include/linux/errno.h): the
	 * syscall is then restarted or fails with EINTR; userspace never sees these values. */
	switch (err) {
	case 512: /* ERESTARTSYS */
	case 513: /* ERESTARTNOINTR */
	case 514: /* ERESTARTNOHAND */
	case 516: /* ERESTART_RESTARTBLOCK */
		return "EINTR";
	case 515: /* ENOIOCTLCMD: turned into ENOTTY on the way out */
		return "ENOTTY";
	}
	const char *s = err > 0 ? strerrorname_np(err) : NULL; /* glibc >= 2.32 */
	if (s)
		return s;
	snprintf(tmp, n, "E%d", err);
	return tmp;
}
