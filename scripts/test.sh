#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-2-Clause
# The whole test suite: install test dependencies, build, run unit, BPF and end-to-end tests.
# Prints "N passed, N failed, N skipped"; exits non-zero on any failure. .ci/run runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh test
make -j"$(nproc)"
make -j"$(nproc)" tests
make -j"$(nproc)" asan # build/asan/loupe: tests/e2e/test_asan.py
exec scripts/run-tests.sh "$@"
