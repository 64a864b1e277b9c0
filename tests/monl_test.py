"""The timestep matrix: strategy structure, mixture frequencies, clean portions, task masks, guidance."""

import jax
import numpy as np
import pytest

from avdit_jax.core import monl

N, T, B = 5, 1000, 4096


def _draw(weights, clean_prob=0.25, task=None, seed=0, batch=B):
  probs = monl.strategy_probabilities(weights)
  t, strategy = monl.sample_timesteps(jax.random.PRNGKey(seed), batch, N, T, probs,
                                      clean_prob=clean_prob, task=task)
  return np.asarray(t), np.asarray(strategy)


def test_vanilla_is_one_t_per_clip():
  t, strategy = _draw({"vanilla": 1})
  assert (strategy == monl.STRATEGIES.index("vanilla")).all()
  assert (t == t[:, :1, :1]).all()
  assert t.min() >= 1 and t.max() <= T        # never clean: a clean clip has no loss
  assert len(np.unique(t[:, 0, 0])) > 900     # levels spread over 1..T


def test_per_modality_shares_t_within_each_modality():
  t, _ = _draw({"per_modality": 1}, clean_prob=0.0)
  assert (t == t[:, :, :1]).all()
  assert (t[:, 0, 0] != t[:, 1, 0]).mean() > 0.99


def test_per_segment_shares_t_across_modalities():
  t, _ = _draw({"per_segment": 1}, clean_prob=0.0)
  assert (t == t[:, :1, :]).all()
  assert (t[:, 0, :, None] != t[:, 0, None, :]).sum(axis=(1, 2)).min() > 0   # segments differ


def test_per_segment_modality_cells_are_independent():
  t, _ = _draw({"per_segment_modality": 1}, clean_prob=0.0)
  flat = t.reshape(B, -1).astype(float)
  corr = np.corrcoef(flat.T)
  off_diag = corr[~np.eye(2 * N, dtype=bool)]
  assert np.abs(off_diag).max() < 0.1          # independent draws: |corr| ~ 1/sqrt(B) = 0.016


@pytest.mark.parametrize("name,groups", [("per_modality", 2), ("per_segment", N),
                                         ("per_segment_modality", 2 * N)])
def test_clean_groups_follow_clean_prob_and_never_all_clean(name, groups):
  p = 0.3
  t, _ = _draw({name: 1}, clean_prob=p)
  clean = t == 0
  assert not clean.all(axis=(1, 2)).any()      # something always left to denoise
  cells = clean.reshape(B, -1)
  # Each group is clean w.p. p, except that all-clean draws (prob p^G) get one group made noisy.
  expected = p - p**groups / groups
  assert abs(cells.mean() - expected) < 4 * np.sqrt(p * (1 - p) / B)
  if name == "per_modality":                   # clean portions follow the sharing pattern
    assert (clean == clean[:, :, :1]).all()
  if name == "per_segment":
    assert (clean == clean[:, :1, :]).all()


def test_conditional_strategy_cleans_the_task_and_shares_one_t_elsewhere():
  task = monl.av_continue(N, 2)
  t, _ = _draw({"conditional": 1}, task=task)
  assert (t[:, task] == 0).all()
  gen = t[:, ~task]
  assert (gen >= 1).all() and (gen == gen[:, :1]).all()


def test_mixture_frequencies_match_weights():
  weights = {"vanilla": 1, "per_modality": 2, "per_segment": 3, "per_segment_modality": 4}
  _, strategy = _draw(weights, batch=20000)
  probs = monl.strategy_probabilities(weights)
  counts = np.bincount(strategy, minlength=len(monl.STRATEGIES))
  expected = probs * len(strategy)
  chi2 = ((counts - expected) ** 2 / np.maximum(expected, 1))[probs > 0].sum()
  assert chi2 < 16.3                           # chi-square, 3 dof, p = 0.001
  assert counts[monl.STRATEGIES.index("conditional")] == 0


def test_bad_strategy_names_and_weights_raise():
  with pytest.raises(ValueError, match="unknown strategies.*per_modal"):
    monl.strategy_probabilities({"per_modal": 1})
  with pytest.raises(ValueError, match="positive sum"):
    monl.strategy_probabilities({"vanilla": 0})
  with pytest.raises(ValueError, match="no task mask"):
    _draw({"conditional": 1})


def test_named_task_masks():
  assert not monl.task_mask("joint", N).any()
  assert monl.a2v(N)[monl.AUDIO].all() and not monl.a2v(N)[monl.VIDEO].any()
  assert monl.v2a(N)[monl.VIDEO].all() and not monl.v2a(N)[monl.AUDIO].any()
  np.testing.assert_array_equal(monl.task_mask("av_continue", N, num_given=3)[0], [1, 1, 1, 0, 0])
  np.testing.assert_array_equal(monl.av_inpaint(N, 2, 1)[1], [1, 1, 0, 0, 1])
  m = monl.video_continue(N, 2)
  np.testing.assert_array_equal(m[monl.VIDEO], [1, 1, 0, 0, 0])
  assert m[monl.AUDIO].all()
  assert not monl.audio_continue(N, 2, other_given=False)[monl.VIDEO].any()


def test_written_mask_parses_and_bad_masks_raise():
  m = monl.parse_mask("audio:all, video:0-1", N)
  np.testing.assert_array_equal(m, monl.video_continue(N, 2))
  for bad, msg in [("audio:0-9", "outside"), ("sound:1", "must be"), ("video:x", "range"), ("", "empty")]:
    with pytest.raises(ValueError, match=msg):
      monl.parse_mask(bad, N)
  with pytest.raises(ValueError, match=r"shape \(2, 4\), expected \(2, 5\)"):
    monl.validate_mask(np.zeros((2, 4), bool), N)
  with pytest.raises(ValueError, match="nothing to generate"):
    monl.validate_mask(np.ones((2, N), bool), N)
  with pytest.raises(ValueError, match="nothing is given"):
    monl.validate_mask(monl.joint(N), N, allow_nothing_given=False)
  with pytest.raises(ValueError, match="unknown task"):
    monl.task_mask("a2b", N)
  with pytest.raises(ValueError, match="num_given=7"):
    monl.av_continue(N, 7)


def test_inference_and_unconditional_timesteps():
  mask = monl.av_inpaint(N, 1, 1)
  t = np.asarray(monl.inference_timesteps(mask, 321))
  assert (t[mask] == 0).all() and (t[~mask] == 321).all()
  u = np.asarray(monl.unconditional_timesteps(mask, 321, T))
  assert (u[mask] == T).all() and (u[~mask] == 321).all()
  drop_left = np.zeros_like(mask)
  drop_left[:, 0] = True                       # a variant that drops only the first end
  u = np.asarray(monl.unconditional_timesteps(mask, 321, T, drop_left))
  assert (u[:, 0] == T).all() and (u[:, -1] == 0).all() and (u[:, 1:-1] == 321).all()


def test_segment_ids_cut_on_token_grid_and_reject_bad_shapes():
  np.testing.assert_array_equal(monl.segment_ids(10, 2, 5), np.repeat(np.arange(5), 2))
  ids = monl.segment_ids(106, 2, 5)            # 53 tokens -> 10 or 11 per segment, in order
  assert (np.diff(ids) >= 0).all() and set(ids) == set(range(5))
  assert (ids[0::2] == ids[1::2]).all()        # a token's two frames share its segment
  with pytest.raises(ValueError, match="not divisible by the time patch size 4"):
    monl.segment_ids(10, 4, 5)
  with pytest.raises(ValueError, match="cannot be cut into 5 segments"):
    monl.segment_ids(8, 2, 5)
