# SPDX-License-Identifier: BSD-2-Clause
"""The CPython program tests/unit/test_pyruntime.c walks: three threads held still in known frame chains, and the
interpreter's own account of those chains (the ground truth the walk must equal).

  main thread   <module> -> outer -> Nest.method -> middle -> inner, blocked in time.sleep
  "async"       asyncio.run(outer_c()): outer_c awaits middle_c awaits inner_c, which makes a blocking call
                (time.sleep) while the whole coroutine chain is live on the event loop's thread
  "wide"        Ünï.λ_中 -> 𠀀_wide, blocked in time.sleep: names stored as latin-1, UCS-2 and UCS-4 strings

Each thread records threading.get_ident() (its pthread_t: what the walk matches thread states by). A reporter
thread waits until all three are blocked at their "# @..." lines, then prints, UTF-8, one record a line:
  hexversion HEX            sys.hexversion
  runtime ADDR              &_PyRuntime (ctypes), 0 when ctypes is missing
  ident CHAIN IDENT
  frame CHAIN QUALNAME FILE FIRSTLINE LINE LASTI   innermost first, from sys._current_frames() and f_back
                            (co_qualname, co_name before 3.11; the file's basename; co_firstlineno; f_lineno;
                            f_lasti: the current instruction's offset in bytes)
  ready
fields separated by tabs, and exits; the chains stay blocked until the test kills the process. The test also finds
the "def" and "# @" lines of this file itself, independently of the interpreter. Run with -I -B (nothing written
next to this file)."""
import asyncio
import os
import sys
import threading
import time

HOLD = 600  # seconds the chains stay blocked: the test kills the process long before
IDENTS = {}


def inner():
    time.sleep(HOLD)  # @inner


def middle():
    inner()  # @middle


class Nest:
    def method(self):
        middle()  # @method


def outer():
    Nest().method()  # @outer


async def inner_c():
    time.sleep(HOLD)  # @inner_c: blocking, with outer_c, middle_c and inner_c live


async def middle_c():
    await inner_c()  # @middle_c


async def outer_c():
    IDENTS["async"] = threading.get_ident()
    await middle_c()  # @outer_c


def 𠀀_wide():
    time.sleep(HOLD)  # @wide


class Ünï:
    def λ_中(self):
        IDENTS["wide"] = threading.get_ident()
        𠀀_wide()  # @wide_method


def qualname(code):
    return getattr(code, "co_qualname", code.co_name)


def runtime_address():
    try:
        import ctypes
        return ctypes.addressof(ctypes.c_char.in_dll(ctypes.pythonapi, "_PyRuntime"))
    except Exception:  # ctypes absent, or _PyRuntime not visible to dlsym
        return 0


def report():
    tops = {"main": inner.__code__, "async": inner_c.__code__, "wide": 𠀀_wide.__code__}
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        frames = sys._current_frames()
        if len(IDENTS) == 3 and all(IDENTS[k] in frames and frames[IDENTS[k]].f_code is c
                                    and frames[IDENTS[k]].f_lineno == c.co_firstlineno + 1 for k, c in tops.items()):
            break
        time.sleep(0.02)
    else:
        sys.stdout.buffer.write(b"error: the chains never reached their sleeps\n")
        sys.stdout.flush()
        os._exit(1)
    time.sleep(0.2)  # into time.sleep itself
    frames = sys._current_frames()
    out = [f"hexversion\t{sys.hexversion:#x}", f"runtime\t{runtime_address():#x}"]
    for chain in ("main", "async", "wide"):
        out.append(f"ident\t{chain}\t{IDENTS[chain]}")
        f = frames[IDENTS[chain]]
        while f is not None:
            c = f.f_code
            out.append(f"frame\t{chain}\t{qualname(c)}\t{os.path.basename(c.co_filename)}\t{c.co_firstlineno}"
                       f"\t{f.f_lineno}\t{f.f_lasti}")
            f = f.f_back
    out.append("ready")
    sys.stdout.buffer.write(("\n".join(out) + "\n").encode("utf-8"))
    sys.stdout.flush()


IDENTS["main"] = threading.get_ident()
threading.Thread(target=asyncio.run, args=(outer_c(),), name="async", daemon=True).start()
threading.Thread(target=Ünï().λ_中, name="wide", daemon=True).start()
threading.Thread(target=report, name="report", daemon=True).start()
outer()  # @module
