"""Evaluation against known answers: on the Gaussian toy every task's true conditional is analytic.

For each task and a few conditioning draws, the squared error of the samples' mean against the exact
conditional mean, next to two references: the prior mean of the generated part (a model that ignores
the conditioning) and the exact denoiser run through the same sampler (the floor, set by the
sampler's steps and the number of samples). The squared error of the samples' per-element standard
deviation against the exact conditional one comes with it ('*_std'): a model can get the mean right
and the spread wrong. Their sum is the moment error of tools/table1.py.

The evaluator of AVDiT runs on the toy (config.evals.gaussian_toy) writes WORKDIR/report.md.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from avdit_jax import factory, paths
from avdit_jax.inference import frontend
from avdit_jax.train import trainees, trainer


def exact_run(config) -> frontend.Run:
  """The toy's Bayes-optimal denoiser behind the inference front end: the floor of every task."""
  toy = factory.gaussian_toy(config)
  return frontend.Run.for_denoiser(config, toy.denoiser(factory.process(config), config.diffusion.prediction))


def task_errors(config, run: frontend.Run, tasks, *, num_conditions: int, samples_per_condition: int) -> dict:
  """{task: {'mean', 'std', 'prior_mean'}}: per element, the squared error of the samples' mean (and of their
  standard deviation) against the exact conditional's, and the prior mean's error; averaged over draws."""
  toy = factory.gaussian_toy(config)
  n = samples_per_condition
  results = {}
  for spec in tasks:
    mask = factory.task(spec, config.num_segments)
    errors = {"mean": [], "std": [], "prior_mean": []}
    for k in range(num_conditions):
      a0, v0 = toy.sample(jax.random.PRNGKey(10_000 + k), 1)   # held out: training uses data.seed's stream
      gen, mean, cov = toy.conditional(mask, a0, v0)
      x = np.asarray(toy.flatten(*run.sample(mask, jnp.repeat(a0, n, 0), jnp.repeat(v0, n, 0), jax.random.PRNGKey(k))))
      errors["mean"].append(np.mean((x[:, gen].mean(0) - mean) ** 2))
      errors["std"].append(np.mean((x[:, gen].std(0) - np.sqrt(np.diag(cov))) ** 2))
      errors["prior_mean"].append(np.mean((toy.mean[gen] - mean) ** 2))
    results[spec] = {name: float(np.mean(v)) for name, v in errors.items()}
  return results


def markdown_table(model: dict, floor: dict) -> str:
  lines = ["| task | model | prior mean (ignores conditioning) | exact denoiser (floor) |",
           "|---|---|---|---|"]
  for task, r in model.items():
    lines.append(f"| {task} | {r['mean']:.4f} | {r['prior_mean']:.4f} | {floor[task]['mean']:.4f} |")
  return "\n".join(lines)


class GaussianToy:
  """config.evals.gaussian_toy: every_steps, tasks, num_conditions, samples_per_condition."""

  def __init__(self, config, workdir: str, name: str, *, tasks, every_steps: int = 0, num_conditions: int = 4,
               samples_per_condition: int = 64):
    if tasks and config.data.kind != "gaussian":        # tasks=() switches it off (e.g. for latents on disk)
      raise ValueError(f"config.evals.{name}: the Gaussian-toy evaluation needs data.kind 'gaussian', got "
                       f"{config.data.kind!r} (--config.evals.{name}.tasks=() switches it off).")
    for spec in tasks:
      factory.task(spec, config.num_segments)                      # a bad task fails before training
    self.config, self.workdir, self.name, self.every_steps = config, workdir, name, every_steps
    self.tasks = tuple(tasks)
    self.draws = dict(num_conditions=num_conditions, samples_per_condition=samples_per_condition)
    self.model = trainees.for_config(config).module
    self._floor = self._run = None

  def floor(self) -> dict:
    if self._floor is None:                                        # the exact denoiser's: the same every time
      self._floor = task_errors(self.config, exact_run(self.config), self.tasks, **self.draws)
    return self._floor

  def __call__(self, state, step: int) -> dict:
    params = trainer.sampling_params(self.config, state, frontend.use_ema(self.config))
    # One Run for every call: its compiled samplers take the params as an argument, so nothing retraces.
    self._run = (frontend.Run.for_params(self.config, self.model, params, step=step) if self._run is None
                 else self._run.with_params(params, step=step))
    model = task_errors(self.config, self._run, self.tasks, **self.draws)
    floor = self.floor()
    if self.workdir and jax.process_index() == 0:
      (paths.path(self.workdir) / "report.md").write_text(report(model, floor, step))
    return {f"{task}/{kind}_error": r[kind] for task, r in model.items() for kind in ("mean", "std")}


def report(model: dict, floor: dict, step: int) -> str:
  return (f"# Gaussian toy: squared error of the sample mean vs the exact conditional mean (step {step})\n\n"
          + markdown_table(model, floor) + "\n")
