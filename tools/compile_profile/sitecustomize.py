"""Per process, JAX's compile-time events summed and written as JSON at exit (a profiling aid for the tests).

  PYTHONPATH=.:tools/compile_profile:tests COMPILE_PROFILE_OUT=/tmp/prof \
      python -m pytest -q -p compile_profile_plugin --durations=0 tests/quickstart_test.py

Python imports `sitecustomize` from PYTHONPATH at start-up, so every subprocess a test starts is profiled too
(one `<pid>.json` each); the plugin adds `tests_<pid>.json` with each test's wall and compile seconds. The
listener is registered when jax._src.monitoring is first imported, so nothing here imports jax early.
"""

import atexit
import importlib.abc
import importlib.machinery
import json
import os
import sys
import threading
import time

_STARTED = time.time()
TOTALS = {}                 # event -> [count, seconds]
_LOCK = threading.Lock()


def _record(event, seconds=0.0, **_):
  with _LOCK:
    count, total = TOTALS.get(event, (0, 0.0))
    TOTALS[event] = (count + 1, total + seconds)


class _Finder(importlib.abc.MetaPathFinder):
  def find_spec(self, name, path, target=None):
    if name != "jax._src.monitoring":
      return None
    spec = importlib.machinery.PathFinder.find_spec(name, path)
    if spec is None:
      return None
    execute = spec.loader.exec_module

    def exec_module(module):
      execute(module)
      module.register_event_duration_secs_listener(_record)
      module.register_event_listener(_record)

    spec.loader.exec_module = exec_module
    return spec


def _dump():
  if TOTALS:
    out = os.environ.get("COMPILE_PROFILE_OUT", "/tmp")
    with open(os.path.join(out, f"{os.getpid()}.json"), "w") as f:
      json.dump({"argv": sys.argv[:6], "wall": time.time() - _STARTED, "totals": TOTALS}, f)


sys.meta_path.insert(0, _Finder())
atexit.register(_dump)
