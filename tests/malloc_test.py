"""avdit_jax/perf/malloc.py: the README's command restarts with mimalloc; opt-out and the user's malloc win.

Each case runs a fresh Python (malloc settings are per process and must come before threads start), without
LD_PRELOAD unless it says so. The probe does what XLA:CPU does each step: a thread allocates a buffer above
glibc's 64 MiB thread-arena heaps, touches it and frees it; the second time, the page faults tell whether the
pages were kept (glibc's defaults unmap them: 51200 faults for 200 MiB). A restart (os.execve) runs the same
`python -c` code again, now with mimalloc preloaded.
"""

import os
import subprocess
import sys

import pytest

from avdit_jax.perf import malloc

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TCMALLOC = "/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4"
PAGES = (200 << 20) // 4096

PROBE = r"""
import ctypes, resource, threading
libc = ctypes.CDLL(None)
libc.malloc.restype, libc.free.argtypes = ctypes.c_void_p, [ctypes.c_void_p]
def allocate_touch_free():
  p = libc.malloc(200 << 20)
  ctypes.memset(p, 1, 200 << 20)
  libc.free(p)
def in_a_thread():
  t = threading.Thread(target=allocate_touch_free)
  t.start()
  t.join()
in_a_thread()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
in_a_thread()
print("FAULTS", resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""
SETUP = "from avdit_jax.perf import malloc\nprint('SETUP', malloc.restart_with_mimalloc())\n"
# Runs avdit_jax/main.py as `python -m avdit_jax.main` does (here to print its help and exit), then probes.
MAIN = ("import runpy, sys\nsys.argv = ['main', '--helpshort']\ntry:\n"
        "  runpy.run_module('avdit_jax.main', run_name='__main__', alter_sys=True)\nexcept SystemExit:\n  pass\n")


def run(code, **env):
  clean = {k: v for k, v in os.environ.items()
           if k not in ("LD_PRELOAD", malloc.OPT_OUT) and not k.startswith("MIMALLOC_")}
  out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=dict(clean, JAX_PLATFORMS="cpu", **env),
                       capture_output=True, text=True, check=True).stdout
  lines = dict(line.split(" ", 1) for line in out.splitlines() if line.startswith(("FAULTS", "SETUP")))
  return int(lines["FAULTS"]), lines.get("SETUP")


def test_glibc_defaults_fault_the_buffer_in_again():
  faults, _ = run(PROBE)
  assert faults > 0.9 * PAGES


def test_the_readme_command_keeps_freed_memory():
  faults, _ = run(MAIN + PROBE)
  assert faults < 0.02 * PAGES


def test_the_restart_preloads_mimalloc_once():
  faults, setup = run(SETUP + PROBE)
  assert setup == "mimalloc preloaded, freed memory kept"
  assert faults < 0.02 * PAGES


@pytest.mark.parametrize("env, reason", [({malloc.OPT_OUT: "system"}, "AVDIT_MALLOC=system"),
                                         ({"MIMALLOC_PURGE_DELAY": "10"}, "MIMALLOC_PURGE_DELAY is the user's")])
def test_the_opt_out_and_a_users_own_setting_are_left_alone(env, reason):
  faults, setup = run(SETUP + PROBE, **env)
  assert setup == f"malloc left as it was ({reason})"
  assert faults > 0.9 * PAGES


def test_a_preloaded_malloc_is_left_alone():
  if not os.path.exists(TCMALLOC):
    pytest.skip(f"{TCMALLOC} not installed (Debian's libtcmalloc-minimal4; .ci/run installs it)")
  faults, setup = run(SETUP + PROBE, LD_PRELOAD=TCMALLOC)
  assert setup == f"malloc left as it was (LD_PRELOAD={TCMALLOC} is the user's)"
  assert faults < 0.02 * PAGES            # tcmalloc keeps the pages by itself


def test_a_bad_opt_out_value_names_the_variable():
  with pytest.raises(ValueError, match="AVDIT_MALLOC='off': expected 'mimalloc'"):
    malloc.reason_to_leave_alone({malloc.OPT_OUT: "off"})
