"""Test setup: 8 CPU devices (so sharding code runs as on a pod slice), set before jax is imported."""

import os

os.environ["XLA_FLAGS"] = " ".join(
    [os.environ.get("XLA_FLAGS", ""), "--xla_force_host_platform_device_count=8"]).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

from absl import flags  # noqa: E402

# grain's worker processes read absl flags; pytest never parses them.
flags.FLAGS.mark_as_parsed()


import pytest  # noqa: E402


@pytest.fixture(scope="session")
def quickstart_run(tmp_path_factory):
  """configs/quickstart.py:test run end to end once (tiny synthetic clips: tokenizers, latents, AVDiT,
  every task, report). Tests that use it are in the xdist group 'tokenizers', so one worker runs it."""
  from avdit_jax import factory, pipeline
  root = tmp_path_factory.mktemp("quickstart")
  config = factory.load_config(os.path.join(os.path.dirname(__file__), "..", "configs", "quickstart.py") + ":test")
  report = pipeline.run(config, str(root))
  return root, config, report
