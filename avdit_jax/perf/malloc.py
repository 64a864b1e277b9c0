"""glibc's malloc told to keep freed memory, so XLA:CPU's per-step buffers stop page-faulting.

XLA on the CPU allocates each step's temporary buffers (posix_memalign of 161 MiB at the quickstart's AVDiT stage,
over 1 GiB at tools/benchmark.py's DiT-S step) from its thread pool's threads and frees them when the step ends.
glibc serves such a thread from a per-thread arena whose heaps hold at most 64 MiB, so a larger buffer is mmapped
and unmapped on free whatever the thresholds say, and each step faults its pages back in (about 540k minor page
faults per DiT-S step). Set before XLA starts its threads, three of glibc's own parameters (mallopt(3)) keep them:
every thread allocates from the main arena (M_ARENA_MAX 1), which grows its heap instead of mapping big blocks
(M_MMAP_MAX 0) and never gives the heap's top back (M_TRIM_THRESHOLD -1). The price is memory: what a process freed
stays mapped for its next allocations instead of going back to the system. `python tools/benchmark.py
--only=malloc` measures this against glibc's defaults and tcmalloc.

Left alone (glibc's defaults or the user's own): another malloc in use (LD_PRELOAD of tcmalloc, as `.ci/run` does),
a C library that is not glibc, any glibc malloc setting of the user's (GLIBC_TUNABLES with glibc.malloc.*, or the
MALLOC_*_ variables), and AVDIT_MALLOC=system, the opt-out.
"""

from __future__ import annotations

import ctypes
import os

OPT_OUT = "AVDIT_MALLOC"               # =system: leave malloc as the process started with it
# glibc's malloc.h: mallopt parameters, and the values used (-1 as the trim threshold means never trim).
M_TRIM_THRESHOLD, M_MMAP_MAX, M_ARENA_MAX = -1, -4, -8
SETTINGS = ((M_ARENA_MAX, 1), (M_MMAP_MAX, 0), (M_TRIM_THRESHOLD, -1))
USER_VARIABLES = ("MALLOC_ARENA_MAX", "MALLOC_ARENA_TEST", "MALLOC_MMAP_MAX_", "MALLOC_MMAP_THRESHOLD_",
                  "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_")


def _glibc_malloc():
  """The C library as a ctypes handle if the process's malloc is glibc's own, else None."""
  try:
    libc = ctypes.CDLL("libc.so.6")
    process = ctypes.CDLL(None)        # symbols as the process resolves them: a preloaded malloc comes first
  except OSError:
    return None
  if not hasattr(libc, "gnu_get_libc_version"):
    return None
  address = lambda f: ctypes.cast(f, ctypes.c_void_p).value
  return libc if address(process.malloc) == address(libc.malloc) else None


def reason_to_leave_alone(environ) -> str | None:
  """Why the process's malloc settings are not to be touched, or None."""
  if environ.get(OPT_OUT, "") == "system":
    return f"{OPT_OUT}=system"
  if environ.get(OPT_OUT, "") not in ("", "keep"):
    raise ValueError(f"{OPT_OUT}={environ[OPT_OUT]!r}: expected 'keep' (the default) or 'system'.")
  if "glibc.malloc." in environ.get("GLIBC_TUNABLES", ""):
    return "GLIBC_TUNABLES sets glibc.malloc"
  user = [name for name in USER_VARIABLES if name in environ]
  if user:
    return f"{user[0]} is set"
  return None


def keep_freed_memory(environ=None) -> str:
  """Sets glibc's malloc to keep freed memory (see the module docstring); call before jax starts XLA.

  Returns what it did, in a few words, for the log.
  """
  reason = reason_to_leave_alone(os.environ if environ is None else environ)
  if reason:
    return f"malloc left as it was ({reason})"
  libc = _glibc_malloc()
  if libc is None:
    return "malloc left as it was (not glibc's)"
  rejected = [param for param, value in SETTINGS if libc.mallopt(ctypes.c_int(param), ctypes.c_int(value)) != 1]
  if rejected:
    return f"glibc rejected mallopt({rejected[0]}): malloc partly as it was"
  return "glibc malloc keeps freed memory (one arena, no mmap, no trim)"
