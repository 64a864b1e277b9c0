"""Ahead-of-time compilation for a TPU topology on this CPU host (libtpu is installed by .ci/run)."""

import pytest
from train_test import load_config

from avdit_jax.train import aot

pytestmark = pytest.mark.xdist_group("libtpu")   # one process holds libtpu; the others need not load it


def test_tiny_train_and_sampling_steps_compile_for_a_v5e_slice():
  config = load_config(arg="test")
  config.mesh.shape = (2, 2, 1)                       # data x fsdp over the 4 chips of v5e:2x2
  config.model.scan_layers = True                     # as the paper configs: XLA counts the scan's body once ...
  report = aot.compile_report(config, "v5e:2x2")
  assert report["flops_recounted"]                    # ... so the FLOPs come from unrolled compiles at depth 1, 2
  assert report["chips"] == 4 and report["hbm_per_chip"] == 16 * 2**30
  for part in ("train", "sample"):
    r = report[part]
    assert r["fits"] and 0 < r["memory"]["total"] < 2**30
    # XLA's count also holds the optimizer, norms and the loss; the analytic one only the network.
    assert 0.95 < r["flops_ratio"] < 1.3, (part, r["flops_ratio"])
  assert report["train"]["collectives"], "a data + FSDP step must communicate"
  assert report["projected_examples_per_s"] > 0


def test_a_mesh_that_does_not_match_the_topology_names_the_field():
  config = load_config(arg="test")
  config.mesh.shape = (8, 1, 1)
  with pytest.raises(ValueError, match=r"v5e:2x2 has 4 chips: config.mesh.shape \(8, 1, 1\) needs 8 devices"):
    aot.compile_report(config, "v5e:2x2")
  config.mesh.shape = (3, -1, 1)
  with pytest.raises(ValueError, match="config.mesh.shape .* does not divide the 4 devices"):
    aot.compile_report(config, "v5e:2x2")
  with pytest.raises(ValueError, match="topology 'v9z:1x1'"):
    aot.compile_report(config, "v9z:1x1")


def test_av_dit_steps_compile_with_its_own_flop_count_and_frozen_backbone():
  import os

  from avdit_jax import factory
  config = factory.load_config(os.path.join(os.path.dirname(__file__), "..", "configs", "av_dit.py") + ":test")
  config.mesh.shape = (2, 2, 1)
  report = aot.compile_report(config, "v5e:2x2")     # no scan_layers, no remat: AVDiT's fields are not assumed
  for part in ("train", "sample"):
    assert report[part]["fits"] and 0.9 < report[part]["flops_ratio"] < 1.5, (part, report[part]["flops_ratio"])
  assert not report["flops_recounted"]               # no loops in its programs: XLA's own count is whole
  trained, total = report["params"]
  assert 0 < trained < total, (trained, total)      # only the adapters train; the image DiT is frozen
  assert f"{trained / 1e6:.3g}M / {total / 1e6:.3g}M" in aot.markdown_row("av_dit.py:test", report)
