# SPDX-License-Identifier: BSD-2-Clause
"""Known Python call chains for tests/bpf/test_full_stacks.py, on any CPython 3.10+.

Usage: stacks.py MODE SECONDS, MODE one of
  cpu      outer -> middle -> inner (a method of Worker) spinning on the CPU
  asyncio  a coroutine chain on the event loop: task_a -> task_b -> task_c awaiting each other, task_c spinning
  sleep    outer_sleep -> blocked_sleep calling time.sleep(0.05) until SECONDS have passed
Waits for a line on stdin ("go"), then runs; at the end prints "CPU_SECONDS WALL_SECONDS_IN_THE_CHAIN".
"""
import asyncio
import sys
import time


def spin(until):
    x = 0
    while time.monotonic() < until:
        for i in range(2000):
            x += i * i
    return x


class Worker:
    def inner(self, until):
        return spin(until)


def middle(until):
    return Worker().inner(until)


def outer(until):
    return middle(until)


async def task_c(until):
    return spin(until)


async def task_b(until):
    return await task_c(until)


async def task_a(until):
    return await task_b(until)


def blocked_sleep(until):
    slept = 0.0
    while time.monotonic() < until:
        t = time.monotonic()
        time.sleep(0.05)
        slept += time.monotonic() - t
    return slept


def outer_sleep(until):
    return blocked_sleep(until)


def main():
    mode, secs = sys.argv[1], float(sys.argv[2])
    sys.stdin.readline()
    c0, w0 = time.process_time(), time.monotonic()
    until = w0 + secs
    took = None
    if mode == "cpu":
        outer(until)
    elif mode == "asyncio":
        asyncio.run(task_a(until))
    elif mode == "sleep":
        took = outer_sleep(until)
    else:
        sys.exit(f"stacks.py: unknown mode {mode}")
    print(f"{time.process_time() - c0:.6f} {took if took is not None else time.monotonic() - w0:.6f}", flush=True)


main()
