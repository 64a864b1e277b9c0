"""Test setup: 8 CPU devices (so sharding code runs as on a pod slice), set before jax is imported."""

import os

os.environ["XLA_FLAGS"] = " ".join(
    [os.environ.get("XLA_FLAGS", ""), "--xla_force_host_platform_device_count=8"]).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# One persistent compilation cache for the whole session: both xdist workers and every process they start (the
# environment carries it) compile the same small programs again and again (configs/gaussian.py:test's train
# step in a dozen tests and subprocesses, the samplers of every Run of the quickstart run); a program compiled
# once is read back after that. Its own directory per test run (xdist's run id, shared by the workers), removed
# at the end; a JAX_COMPILATION_CACHE_DIR already set is used as it is.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
  import tempfile
  _run_id = os.environ.get("PYTEST_XDIST_TESTRUNUID") or f"pid{os.getpid()}"
  os.environ["JAX_COMPILATION_CACHE_DIR"] = os.path.join(tempfile.gettempdir(), f"avdit_jax_xla_cache_{_run_id}")
  os.environ["AVDIT_TEST_OWNS_CACHE"] = os.environ["JAX_COMPILATION_CACHE_DIR"]
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")

from absl import flags  # noqa: E402

# grain's worker processes read absl flags; pytest never parses them.
flags.FLAGS.mark_as_parsed()


import pytest  # noqa: E402


def pytest_xdist_node_collection_finished(node, ids):
  """Under --dist loadgroup, xdist tags each grouped test's node id with '@group' on the workers; pytest 9.2
  drops that tag (pytest-xdist issue #1386) and the groups are silently split, so the session fixtures
  (quickstart_run, ~7 min) are built on both workers. The controller stops the run instead."""
  if node.config.getvalue("dist") != "loadgroup":
    return
  grouped = {}
  for nodeid in ids:
    path = nodeid.split("::")[0]
    if path not in grouped:
      source = node.config.rootpath / path
      grouped[path] = source.is_file() and "pytest.mark.xdist_group" in source.read_text()
    if grouped[path] and "@" not in nodeid:
      raise pytest.UsageError(f"--dist loadgroup: {nodeid} is marked xdist_group but xdist did not group it; "
                              "install the pytest that pyproject.toml's 'test' extra pins (<9.2).")


def pytest_unconfigure(config):
  """The controller (not an xdist worker) removes the session's compilation cache when it made it."""
  owned = os.environ.get("AVDIT_TEST_OWNS_CACHE")
  if owned and not hasattr(config, "workerinput"):
    import shutil
    shutil.rmtree(owned, ignore_errors=True)


@pytest.fixture(scope="session")
def quickstart_run(tmp_path_factory):
  """configs/quickstart.py:test run end to end once (tiny synthetic clips: tokenizers, latents, AVDiT,
  every task, report). Tests that use it are in the xdist group 'tokenizers', so one worker runs it."""
  from avdit_jax import factory, pipeline
  root = tmp_path_factory.mktemp("quickstart")
  config = factory.load_config(os.path.join(os.path.dirname(__file__), "..", "configs", "quickstart.py") + ":test")
  report = pipeline.run(config, str(root))
  return root, config, report


@pytest.fixture(scope="session")
def gcs():
  """A GCS emulator (gcp-storage-emulator, in memory; tests/gcs_emulator.py) in its own process, with bucket 'bkt';
  every gs:// path of this process and of the processes it starts goes there (gcsfs and the Google client by
  STORAGE_EMULATOR_HOST, tensorstore, which orbax writes arrays with, by TENSORSTORE_GCS_HTTP_URL). Yields
  the bucket's URL."""
  import socket
  import subprocess
  import sys
  import time
  import urllib.request
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
  url = f"http://127.0.0.1:{port}"
  server = subprocess.Popen([sys.executable, os.path.join(os.path.dirname(__file__), "gcs_emulator.py"), str(port)],
                            stderr=subprocess.DEVNULL)
  deadline = time.time() + 60
  while True:
    try:
      urllib.request.urlopen(f"{url}/storage/v1/b/bkt", timeout=2)
      break
    except OSError:
      if time.time() > deadline or server.poll() is not None:
        server.kill()
        raise RuntimeError("the GCS emulator did not start") from None
      time.sleep(0.2)
  env = {"STORAGE_EMULATOR_HOST": url, "TENSORSTORE_GCS_HTTP_URL": url, "GOOGLE_AUTH_TOKEN_FOR_TESTING": "x",
         "GOOGLE_CLOUD_PROJECT": "test"}
  saved = {k: os.environ.get(k) for k in env}
  os.environ.update(env)
  yield "gs://bkt"
  for k, v in saved.items():
    if v is None:
      os.environ.pop(k, None)
    else:
      os.environ[k] = v
  server.terminate()
  server.wait(timeout=30)
