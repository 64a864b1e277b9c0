"""Test setup: 8 CPU devices (so sharding code runs as on a pod slice), set before jax is imported."""

import os

os.environ["XLA_FLAGS"] = " ".join(
    [os.environ.get("XLA_FLAGS", ""), "--xla_force_host_platform_device_count=8"]).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

from absl import flags  # noqa: E402

# grain's worker processes read absl flags; pytest never parses them.
flags.FLAGS.mark_as_parsed()
