/* SPDX-License-Identifier: BSD-2-Clause */
/* The functions libdeepchain.so gives deepchain (tests/helpers/deepchain.c says what the chain is for). */
#ifndef LOUPE_DEEPCHAIN_H
#define LOUPE_DEEPCHAIN_H

/* Calls cb(until) (deepchain's dc_main_c) and returns its result plus some work of its own. */
double dc_lib_b(double until, double (*cb)(double));
/* Calls dc_leaf(until), then works on its result. */
double dc_lib_d(double until);
/* Spins on the CPU until CLOCK_MONOTONIC reaches until (seconds); returns how many rounds it made. */
double dc_leaf(double until);

#endif
