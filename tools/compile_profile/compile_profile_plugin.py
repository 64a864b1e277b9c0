"""pytest plugin (-p compile_profile_plugin, with sitecustomize.py here on PYTHONPATH): each test's wall time and
its XLA backend compile seconds and count, in COMPILE_PROFILE_OUT/tests_<pid>.json at the end of the session."""

import json
import os
import time

import pytest

COMPILE = "/jax/core/compile/backend_compile_duration"
_ROWS = []


def _compile_totals():
  import sitecustomize
  return sitecustomize.TOTALS.get(COMPILE, (0, 0.0))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
  (count, seconds), started = _compile_totals(), time.time()
  yield
  after_count, after_seconds = _compile_totals()
  _ROWS.append({"test": item.nodeid, "wall": time.time() - started, "compile": after_seconds - seconds,
                "ncompile": after_count - count})


def pytest_sessionfinish(session):
  out = os.environ.get("COMPILE_PROFILE_OUT", "/tmp")
  with open(os.path.join(out, f"tests_{os.getpid()}.json"), "w") as f:
    json.dump(_ROWS, f, indent=0)
