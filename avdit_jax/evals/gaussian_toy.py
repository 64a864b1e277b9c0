"""Evaluation against known answers: on the Gaussian toy every task's true conditional is analytic.

For each task and a few conditioning draws, the squared error of the samples' mean against the exact
conditional mean, next to two references: the prior mean of the generated part (a model that ignores
the conditioning) and the exact denoiser run through the same sampler (the floor, set by the
sampler's steps and the number of samples). The squared error of the samples' per-element standard
deviation against the exact conditional one comes with it ('*_std'): a model can get the mean right
and the spread wrong. Their sum is the moment error of tools/table1.py.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from avdit_jax import factory
from avdit_jax.core import sampling


def gaussian_task_errors(config: ml_collections.ConfigDict, denoise, tasks=None) -> dict:
  """{task: {'model': err, 'prior_mean': err, 'exact_denoiser': err, 'model_std': err, 'exact_denoiser_std': err}}:
  mean squared error per element of the sample mean (and of the sample standard deviation)."""
  toy = factory.gaussian_toy(config)
  sampler = factory.sampler(config)
  runners = {"model": sampling.make_sampler(denoise, sampler),
             "exact_denoiser": sampling.make_sampler(toy.denoiser(sampler.schedule.alpha_bar, sampler.prediction),
                                                     sampler)}
  n = config.eval.samples_per_condition
  results = {}
  for spec in tasks or config.eval.tasks:
    mask = factory.task(spec, config.num_segments)
    errors = {"model": [], "prior_mean": [], "exact_denoiser": [], "model_std": [], "exact_denoiser_std": []}
    for k in range(config.eval.num_conditions):
      a0, v0 = toy.sample(jax.random.PRNGKey(10_000 + k), 1)   # held out: training uses data.seed's stream
      cond = sampling.make_condition(sampler, mask, jnp.repeat(a0, n, 0), jnp.repeat(v0, n, 0))
      gen, mean, cov = toy.conditional(mask, a0, v0)
      for name, run in runners.items():
        x = np.asarray(toy.flatten(*run(cond, jax.random.PRNGKey(k))))
        errors[name].append(np.mean((x[:, gen].mean(0) - mean) ** 2))
        errors[name + "_std"].append(np.mean((x[:, gen].std(0) - np.sqrt(np.diag(cov))) ** 2))
      errors["prior_mean"].append(np.mean((toy.mean[gen] - mean) ** 2))
    results[spec] = {name: float(np.mean(v)) for name, v in errors.items()}
  return results


def markdown_table(results: dict) -> str:
  lines = ["| task | model | prior mean (ignores conditioning) | exact denoiser (floor) |",
           "|---|---|---|---|"]
  for task, r in results.items():
    lines.append(f"| {task} | {r['model']:.4f} | {r['prior_mean']:.4f} | {r['exact_denoiser']:.4f} |")
  return "\n".join(lines)
