/* SPDX-License-Identifier: BSD-2-Clause */
/* A nanosleep system call inlined into the calling function, for the off-CPU helpers: a libc wrapper has no frame
 * pointer, and the frame-pointer walk would then skip the function that called it. */
#ifndef LOUPE_TEST_RAW_SLEEP_H
#define LOUPE_TEST_RAW_SLEEP_H
#include <sys/syscall.h>
#include <time.h>

static inline __attribute__((always_inline)) void raw_sleep_us(long us)
{
	struct timespec ts = {.tv_sec = us / 1000000, .tv_nsec = (us % 1000000) * 1000L};
	long ret;
	__asm__ volatile("syscall" : "=a"(ret) : "a"((long)SYS_nanosleep), "D"(&ts), "S"(0L) : "rcx", "r11", "memory");
	(void)ret;
}

#endif
