"""A malloc that keeps XLA:CPU's per-step buffers mapped: mimalloc (a dependency), preloaded by a re-exec at start-up.

XLA on the CPU allocates each step's temporary buffers (161 MiB at the quickstart's AVDiT stage, over 2 GiB at
tools/benchmark.py's DiT-S step) with posix_memalign from its thread pool's threads and frees them when the step
ends. glibc serves such a thread from a per-thread arena whose heaps hold at most 64 MiB, so a larger buffer is
mmapped and unmapped on free whatever its thresholds, and each step faults its pages back in (tools/benchmark.py
--only=malloc counts them). Of what glibc offers, one arena without mmap or trimming (mallopt) stops the faults but
fragments its heap (several times the resident memory at DiT-S), and glibc.malloc.hugetlb=1 trades them for
huge-page zeroing and compaction; mimalloc, from PyPI (cmeel-mimalloc), keeping freed memory
(MIMALLOC_PURGE_DELAY=-1), stops them at about glibc's resident memory (WORKSPACE.md, "Speed"). A malloc must be
in place before the process allocates, so `restart_with_mimalloc` re-executes the process (os.execve: the same
pid, arguments and signal handling) once, with it in LD_PRELOAD; the restarted process sees LD_PRELOAD set and
carries on.

Left alone: AVDIT_MALLOC=system (the opt-out), a malloc the user preloads (LD_PRELOAD of tcmalloc, as .ci/run
does) or MIMALLOC_* settings of the user's, a platform without the wheel's library, and processes whose start-up
cannot be repeated (no sys.orig_argv).
"""

from __future__ import annotations

import importlib.metadata
import os
import sys

OPT_OUT = "AVDIT_MALLOC"               # =system: keep the malloc the process started with
KEEP_FREED = {"MIMALLOC_PURGE_DELAY": "-1"}     # never return freed pages to the system (XLA reuses them next step)


def mimalloc_library() -> str | None:
  """Path of the cmeel-mimalloc wheel's shared library, or None where it is not installed."""
  try:
    files = importlib.metadata.distribution("cmeel-mimalloc").files or []
  except importlib.metadata.PackageNotFoundError:
    return None
  paths = [f for f in files if f.name == "libmimalloc.so.3" or f.name == "libmimalloc.so"]
  paths = [str(f.locate()) for f in sorted(paths, key=lambda f: f.name != "libmimalloc.so.3")]
  return next((p for p in paths if os.path.exists(p)), None)


def reason_to_leave_alone(environ) -> str | None:
  """Why the process's malloc is not to be replaced, or None."""
  choice = environ.get(OPT_OUT, "")
  if choice not in ("", "mimalloc", "system"):
    raise ValueError(f"{OPT_OUT}={choice!r}: expected 'mimalloc' (the default) or 'system'.")
  if choice == "system":
    return f"{OPT_OUT}=system"
  if "mimalloc" in environ.get("LD_PRELOAD", ""):
    return "mimalloc preloaded"
  if environ.get("LD_PRELOAD"):
    return f"LD_PRELOAD={environ['LD_PRELOAD']} is the user's"
  user = sorted(name for name in environ if name.startswith("MIMALLOC_"))
  if user:
    return f"{user[0]} is the user's"
  return None


def restarted_environment(environ, library: str) -> dict:
  """The environment to re-execute with: environ plus mimalloc preloaded, keeping freed memory."""
  return dict(environ, LD_PRELOAD=library, **KEEP_FREED)


def restart_with_mimalloc(environ=None) -> str:
  """Re-executes this process with mimalloc preloaded (does not return then); call first thing, before jax.

  Returns, when it does return, what malloc the process has, in a few words, for the log.
  """
  environ = os.environ if environ is None else environ
  reason = reason_to_leave_alone(environ)
  if reason == "mimalloc preloaded":
    return "mimalloc preloaded, freed memory kept"
  if reason:
    return f"malloc left as it was ({reason})"
  library = mimalloc_library()
  if library is None or not sys.platform.startswith("linux"):
    return "malloc left as it was (no cmeel-mimalloc library for this platform)"
  if not getattr(sys, "orig_argv", None):
    return "malloc left as it was (the command line cannot be repeated)"
  sys.stdout.flush()
  sys.stderr.flush()
  os.execve(sys.executable, sys.orig_argv, restarted_environment(environ, library))
  raise AssertionError("os.execve returned")
