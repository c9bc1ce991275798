/* SPDX-License-Identifier: BSD-2-Clause */
/* The library half of tests/helpers/deepchain.c's chain (libdeepchain.c). */
#ifndef LOUPE_TEST_DEEPCHAIN_H
#define LOUPE_TEST_DEEPCHAIN_H
long dc_lib_b(double secs, volatile long *sink, long (*back)(double, volatile long *));
long dc_lib_d(double secs, volatile long *sink);
#endif
