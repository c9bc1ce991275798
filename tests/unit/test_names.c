// SPDX-License-Identifier: BSD-2-Clause
/* Unit tests for src/lib/names.c: syscall and errno names as they appear in metric labels. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <cmocka.h>

#include "lib/names.h"

static void test_syscall_known(void **state)
{
	char tmp[32];

	assert_string_equal(syscall_name(0, tmp, sizeof(tmp)), "read");
	assert_string_equal(syscall_name(1, tmp, sizeof(tmp)), "write");
	assert_string_equal(syscall_name(230, tmp, sizeof(tmp)), "clock_nanosleep");
	/* The libc headers' numbers are an independent source for the same table. */
	assert_string_equal(syscall_name(SYS_openat, tmp, sizeof(tmp)), "openat");
	assert_string_equal(syscall_name(SYS_epoll_wait, tmp, sizeof(tmp)), "epoll_wait");
	assert_string_equal(syscall_name(SYS_io_uring_enter, tmp, sizeof(tmp)), "io_uring_enter");
	/* Known names come from the table, not from tmp. */
	assert_ptr_not_equal(syscall_name(0, tmp, sizeof(tmp)), tmp);
}

static void test_syscall_unknown(void **state)
{
	char tmp[32];

	/* x86_64 leaves 335..423 unassigned; far past the table is unknown too. */
	assert_string_equal(syscall_name(335, tmp, sizeof(tmp)), "syscall_335");
	assert_string_equal(syscall_name(100000, tmp, sizeof(tmp)), "syscall_100000");
	assert_string_equal(syscall_name(4294967295u, tmp, sizeof(tmp)), "syscall_4294967295");
	assert_ptr_equal(syscall_name(335, tmp, sizeof(tmp)), tmp);

	/* A short buffer truncates but stays terminated. */
	char small[9];
	memset(small, 'x', sizeof(small));
	assert_string_equal(syscall_name(100000, small, sizeof(small)), "syscall_");
}

static void test_syscall_number(void **state)
{
	/* The libc headers' numbers, again as the independent source. */
	assert_int_equal(syscall_number("futex"), SYS_futex);
	assert_int_equal(syscall_number("getpid"), SYS_getpid);
	assert_int_equal(syscall_number("read"), 0);
	assert_int_equal(syscall_number("io_uring_enter"), SYS_io_uring_enter);
	/* Every known number maps back to itself. */
	char tmp[32];
	for (unsigned nr = 0; nr < 512; nr++) {
		const char *n = syscall_name(nr, tmp, sizeof(tmp));
		if (n != tmp)
			assert_int_equal(syscall_number(n), (int)nr);
	}
	/* Unknown, empty, a prefix, a different case, the syscall_N spelling: not names. */
	assert_int_equal(syscall_number("nosuchcall"), -ENOENT);
	assert_int_equal(syscall_number(""), -ENOENT);
	assert_int_equal(syscall_number("fute"), -ENOENT);
	assert_int_equal(syscall_number("FUTEX"), -ENOENT);
	assert_int_equal(syscall_number("syscall_335"), -ENOENT);
}

static void test_errno_known(void **state)
{
	char tmp[32];

	assert_string_equal(errno_name(EAGAIN, tmp, sizeof(tmp)), "EAGAIN");
	assert_string_equal(errno_name(EWOULDBLOCK, tmp, sizeof(tmp)), "EAGAIN");
	assert_string_equal(errno_name(ENOENT, tmp, sizeof(tmp)), "ENOENT");
	assert_string_equal(errno_name(ECONNRESET, tmp, sizeof(tmp)), "ECONNRESET");
	assert_string_equal(errno_name(EINTR, tmp, sizeof(tmp)), "EINTR");
}

/* Restart codes the kernel reports at sys_exit when a signal interrupts a syscall (include/linux/errno.h). */
static void test_errno_restart_codes(void **state)
{
	char tmp[32];

	assert_string_equal(errno_name(512, tmp, sizeof(tmp)), "EINTR"); /* ERESTARTSYS */
	assert_string_equal(errno_name(513, tmp, sizeof(tmp)), "EINTR"); /* ERESTARTNOINTR */
	assert_string_equal(errno_name(514, tmp, sizeof(tmp)), "EINTR"); /* ERESTARTNOHAND */
	assert_string_equal(errno_name(516, tmp, sizeof(tmp)), "EINTR"); /* ERESTART_RESTARTBLOCK */
	assert_string_equal(errno_name(515, tmp, sizeof(tmp)), "ENOTTY"); /* ENOIOCTLCMD */
	assert_string_equal(errno_name(517, tmp, sizeof(tmp)), "E517");
}

static void test_errno_unknown(void **state)
{
	char tmp[32];

	assert_string_equal(errno_name(4095, tmp, sizeof(tmp)), "E4095");
	assert_string_equal(errno_name(0, tmp, sizeof(tmp)), "E0");
	assert_ptr_equal(errno_name(4095, tmp, sizeof(tmp)), tmp);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_syscall_known),
		cmocka_unit_test(test_syscall_unknown),
		cmocka_unit_test(test_syscall_number),
		cmocka_unit_test(test_errno_known),
		cmocka_unit_test(test_errno_restart_codes),
		cmocka_unit_test(test_errno_unknown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
