#include "names.h"
#include "syscall_names.h"
#include "util.h"

#include <stdio.h>
#include <string.h>

const char *syscall_name(unsigned nr, char *tmp, size_t n)
{
	if (nr < ARRAY_SIZE(syscall_names) && syscall_names[nr])
		return syscall_names[nr];
	snprintf(tmp, n, "syscall_%u", nr);
	return tmp;
}

const char *errno_name(int err, char *tmp, size_t n)
{
	const char *s = err > 0 ? strerrorname_np(err) : NULL; /* glibc >= 2.32 */
	if (s)
		return s;
	snprintf(tmp, n, "E%d", err);
	return tmp;
}
