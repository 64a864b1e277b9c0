r"""Speed as ratios measured in one run on this machine.

  python tools/benchmark.py                       # AVDiT-S, 256 video + 64 audio tokens, batch 8
  python tools/benchmark.py --variant=B --batch=4 --only=train
  python tools/benchmark.py --variant=L --batch=32 --dtype=bfloat16 --only=peak,train   # on a GPU: bf16 MFU

Prints:
  * matmul peak: a large jitted f32 matmul, the machine's reference FLOP/s;
  * train step: model FLOP/s (analytic, 3x forward) over that peak;
  * modulation: a gradient step with per-(modality, segment) adaLN over one with one adaLN per example;
  * sampling: N reverse steps over N forward passes, for the Python-loop and fori_loop forms;
  * input: the grain pipeline's examples/s over latent files (0 and 2 workers) over what the step consumes;
  * memory: per-device train-state memory with FSDP over 8 devices over 1 device, from the compiled
    step's memory analysis (in a subprocess that sees 8 host devices);
  * checkpoint: a process's first save of the train state on 8 host devices (FSDP off, so every array is
    replicated), with orbax's default array handler (every array saved replica-parallel: one eager jit(slice)
    per shape and device) over avdit_jax/train/checkpoint.py's (small arrays whole); each in a fresh
    subprocess, blocking time and time until the save is on disk;
  * av_dit (not in the default list: --only=av_dit): AV-DiT's recipe next to the quickstart's AVDiT at the
    quickstart's shapes: trainable / total params, optimizer state, train step times (alternated);
  * lora: per-device memory of params + EMA + optimizer state (the compiled step's arguments) with
    train.trainable='lora' over full fine-tuning, and the fraction of the params that trains;
  * malloc: the train step's time, minor page faults and peak resident memory with glibc's defaults
    (AVDIT_MALLOC=system), with the README's plain command's malloc (avdit_jax/perf/malloc.py: mimalloc
    preloaded by a restart, as `python -m avdit_jax.main` does first thing) and with tcmalloc preloaded, over
    the tcmalloc step
    (subprocesses, interleaved, --malloc_rounds times, best of each). XLA on the CPU maps and unmaps its
    temporary buffers every step with glibc's defaults. tcmalloc needs Debian's libtcmalloc-minimal4;
    --shapes=quickstart times the quickstart's AVDiT stage instead of DiT-S.
  * profile: where the train step's time goes, from a jax.profiler trace of a few steps: each op of the
    compiled step is timed and sorted into matmuls (their GFLOP/s, and the time they would take at the
    matmul peak), fusions around a batched matmul (attention with its softmax), copies, and the other
    elementwise work of the forward pass, the backward pass and the update. XLA runs independent ops side
    by side on the cores, so op times add up to more than the wall time; their shares are what to read;
  * preemption: steps/s of an uninterrupted 2-process run (launch/local.py, 4 CPU devices each,
    configs/gaussian.py) with JAX's preemption sync point checked every step, with the service on but the
    check skipped (the loop's check patched out in the subprocess: what the check itself costs), and with the
    service off (JAX_ENABLE_PREEMPTION_SERVICE=false: no service threads either), interleaved
    --preemption_rounds times in a rotating order, best of each; and the cost of one check (the sync point
    against the allgather of a flag the loop used before; `--only=preemption_calls` alone); not in the
    default set (minutes);
  * torch: this train step's time over the same step written in PyTorch (tools/torch_reference.py, eager,
    the faster of its two attention forms), each in its own subprocess, with glibc's malloc and, where
    installed, with tcmalloc. Needs `pip install torch==2.13.0`.
Each timing is the best of --repeats after a warm-up call, so compilation is left out.
"""

import collections
import dataclasses
import glob
import gzip
import importlib.util
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time

from absl import app, flags

from avdit_jax.perf import malloc

MALLOC = malloc.restart_with_mimalloc()  # as python -m avdit_jax.main does, first thing

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from avdit_jax import factory
from avdit_jax.core import monl, sampling
from avdit_jax.core import objective as objective_lib
from avdit_jax.data import streams
from avdit_jax.models import avdit
from avdit_jax.perf import hlo_text, speed
from avdit_jax.train import sharding, trainable, trainer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

flags.DEFINE_string("variant", "S", "Model variant.")
flags.DEFINE_integer("batch", 8, "Batch size.")
flags.DEFINE_integer("segments", 4, "N time segments.")
flags.DEFINE_enum("shapes", "dit", ["dit", "quickstart"],
                  "dit: the latent shapes below; quickstart: the quickstart's AVDiT stage (its latents' shapes and "
                  "patches; give --variant=mini --batch=32 --segments=3 for the whole stage).")
flags.DEFINE_integer("preemption_rounds", 2, "Interleaved rounds of the 2-process runs of --only=preemption.")
flags.DEFINE_integer("preemption_steps", 300, "Train steps of each 2-process run of --only=preemption.")
flags.DEFINE_integer("malloc_rounds", 2, "Interleaved rounds of the malloc subprocesses (best of each is kept).")
flags.DEFINE_string("attention", None,
                    "model.attention (avdit_jax.models.avdit.ATTENTION_IMPLS); default: the config's.")
flags.DEFINE_enum("dtype", "float32", ["float32", "bfloat16"],
                  "model.dtype (compute; params stay f32) and the dtype of the peak matmul: bfloat16 for an "
                  "accelerator's bf16 MFU.")
flags.DEFINE_integer("sample_steps", 10, "Reverse steps in the sampling benchmark.")
flags.DEFINE_integer("repeats", 3, "Timed repeats per measurement (best is kept).")
flags.DEFINE_list("only", ["peak", "train", "modulation", "sampling", "input", "memory", "checkpoint", "lora", "malloc",
                           "profile", "torch"],
                  "Which measurements to run.")
FLAGS = flags.FLAGS

AUDIO_SHAPE = (64, 8)          # 64 audio tokens at audio_patch 1
VIDEO_SHAPE = (4, 16, 16, 4)   # 4 x 8 x 8 = 256 video tokens at video_patch (1, 2, 2)
# --shapes -> (audio shape, video shape, audio patch); quickstart: the tokenized 9-frame clips of synthetic_av/small
# (configs/quickstart.py), 15 audio + 48 video tokens.
SHAPES = {"dit": (AUDIO_SHAPE, VIDEO_SHAPE, 1), "quickstart": ((75, 8), (3, 8, 8, 16), 5)}


def matmul_peak(repeats):
  return speed.matmul_peak(FLAGS.dtype, repeats=max(repeats, 10))   # short calls: take the best of many


def real_train_step(config):
  """The training system's own sharded step (trainer.build) on a fixed batch, threading its donated state.

  Returns (step() -> metrics, setup, holder) where holder[0] is the current state.
  """
  setup = trainer.build(config)
  rng = np.random.default_rng(0)
  b = config.data.batch_size
  batch = sharding.global_batch({"audio": rng.normal(size=(b, *config.data.audio_shape)).astype(np.float32),
                                 "video": rng.normal(size=(b, *config.data.video_shape)).astype(np.float32)},
                                setup.batch_sharding)
  holder = [setup.init_fn()]

  def step():
    with jax.set_mesh(setup.mesh):
      holder[0], metrics = setup.step_fn(holder[0], batch)
    return metrics

  return step, setup, holder


class PerExampleAVDiT(avdit.AVDiT):
  """Plain DiT's adaLN cost: one modulation per example, from t[:, 0, 0] (ignores the rest of t): the
  baseline that per-(modality, segment) adaLN is compared with."""

  def conditioning(self, t, layout):
    cond = avdit.TimestepEmbedder(self.width, param_dtype=self.param_dtype, name="t_embed")(t[:, :1, :1])
    return nn.silu(cond), None                                                     # (B, 1, D)


def as_per_example(model: avdit.AVDiT) -> PerExampleAVDiT:
  return PerExampleAVDiT(**{f.name: getattr(model, f.name) for f in dataclasses.fields(avdit.AVDiT)
                            if f.name not in ("parent", "name")})


def loss_gradient(config, model):
  """() -> gradients of the MoNL loss of `model` on a fixed batch, jitted (no optimizer): two models' costs
  side by side."""
  objective = factory.training_objective(config)
  rng = np.random.default_rng(0)
  b = config.data.batch_size
  audio = jnp.asarray(rng.normal(size=(b, *AUDIO_SHAPE)), jnp.float32)
  video = jnp.asarray(rng.normal(size=(b, *VIDEO_SHAPE)), jnp.float32)
  t = jnp.zeros((1, 2, config.num_segments), jnp.int32)
  params = jax.jit(model.init)(jax.random.PRNGKey(0), audio[:1], video[:1], t)["params"]
  loss = lambda p: objective_lib.loss_fn(objective, avdit.denoiser(model, p), audio, video, jax.random.PRNGKey(1))[0]
  grad = jax.jit(jax.grad(loss))
  return lambda: grad(params)


def bench_config(variant, batch, segments, mesh_shape=(-1, 1, 1)):
  """configs/gaussian.py at the benchmark's shapes."""
  config = factory.load_config(os.path.join(ROOT, "configs", "gaussian.py"))
  audio_shape, video_shape, audio_patch = SHAPES[FLAGS.shapes]
  config.num_segments = segments
  config.model.variant, config.model.audio_patch, config.model.video_patch = variant, audio_patch, (1, 2, 2)
  config.data.audio_shape, config.data.video_shape, config.data.batch_size = audio_shape, video_shape, batch
  config.mesh.shape = mesh_shape
  config.model.attention = FLAGS.attention or config.model.attention
  config.model.dtype = FLAGS.dtype
  return config


def state_memory_per_device(config, mesh=None) -> int:
  """Argument bytes per device of the compiled, sharded train step, minus the batch's."""
  setup = trainer.build(config, mesh)
  batch = trainer.abstract_batch(config, setup)
  compiled = setup.step_fn.lower(setup.abstract_state, batch).compile()
  batch_bytes = sum(x.sharding.shard_shape(x.shape)[0] * int(np.prod(x.shape[1:])) * 4 for x in batch.values())
  return compiled.memory_analysis().argument_size_in_bytes - batch_bytes


def op_times(step, steps: int) -> dict[str, float]:
  """Seconds per step of each op (by HLO instruction name) of a jax.profiler trace of `steps` calls."""
  jax.block_until_ready(step())
  with tempfile.TemporaryDirectory() as directory:
    with jax.profiler.trace(directory, create_perfetto_trace=True):
      for _ in range(steps):
        jax.block_until_ready(step())
    path, = glob.glob(os.path.join(directory, "**", "*.trace.json.gz"), recursive=True)
    with gzip.open(path) as f:
      events = json.load(f)["traceEvents"]
  times = collections.Counter()
  for e in events:
    if e.get("ph") == "X":
      times[e["name"]] += e.get("dur", 0) / 1e6 / steps
  return times


def profile_parts(times: dict, instructions: dict) -> dict[str, list]:
  """Op times sorted into parts: name -> [seconds per step, matmul FLOPs per step]."""
  parts = collections.defaultdict(lambda: [0.0, 0.0])
  for name, info in instructions.items():
    if name not in times:
      continue
    where = info["op_name"]
    phase = "backward" if "transpose(jvp(" in where else "forward" if "jvp(" in where else "update, loss, EMA"
    if info["matmul_flops"]:
      part = "fusions with a batched matmul (attention + softmax)" if info["batched"] else "other matmuls"
    elif info["op"] in ("copy", "transpose") or name.startswith(("copy", "transpose")):
      part = f"copies, transposes ({phase})"
    else:
      part = f"elementwise, reductions ({phase})"
    parts[part][0] += times[name]
    parts[part][1] += info["matmul_flops"]
  return dict(parts)


TCMALLOC = f"/usr/lib/{platform.machine()}-linux-gnu/libtcmalloc_minimal.so.4"   # where .ci/run looks too


def first_save_seconds(config, handler: str) -> tuple[float, float]:
  """(blocking, total) seconds of this process's first checkpoint.save of config's initial train state, with
  orbax's default array handler ('orbax') or the one avdit_jax/train/checkpoint.py registers ('project')."""
  import orbax.checkpoint as ocp
  from orbax.checkpoint._src.metadata import array_metadata_store
  from avdit_jax.train import checkpoint
  if handler == "orbax":
    ocp.type_handlers.register_type_handler(jax.Array, ocp.type_handlers.ArrayHandler(
        array_metadata_store=array_metadata_store.Store()), override=True)
  setup = trainer.build(config)
  state = jax.block_until_ready(setup.init_fn())
  with tempfile.TemporaryDirectory() as workdir:
    manager = checkpoint.make_manager(workdir, config)
    t = time.perf_counter()
    checkpoint.save(manager, 1, state, {}, config)
    blocking = time.perf_counter() - t
    manager.wait_until_finished()
    total = time.perf_counter() - t
    manager.close()
  return blocking, total


def _subprocess(only: str, marker: str, env: dict) -> list:
  """Runs this tool with --only=only and returns the numbers on its output line that starts with marker."""
  out = subprocess.run([sys.executable, os.path.abspath(__file__), f"--only={only}", f"--variant={FLAGS.variant}",
                        f"--batch={FLAGS.batch}", f"--segments={FLAGS.segments}", f"--repeats={FLAGS.repeats}",
                        f"--dtype={FLAGS.dtype}", f"--shapes={FLAGS.shapes}",
                        *([f"--attention={FLAGS.attention}"] if FLAGS.attention else [])],
                       env=env, capture_output=True, text=True, check=True).stdout
  return _parse(out, marker)


def _parse(out: str, marker: str) -> list:
  return [x if x.isalpha() else float(x) for x in out.split(marker + " ")[1].split("\n")[0].split()]


def _torch_step(env: dict) -> list:
  """(seconds, torch's matmul FLOP/s, parameter count, threads, attention form) of tools/torch_reference.py."""
  out = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "torch_reference.py"), f"--variant={FLAGS.variant}",
                        f"--batch={FLAGS.batch}", f"--segments={FLAGS.segments}", f"--repeats={FLAGS.repeats}"],
                       env=env, capture_output=True, text=True, check=True).stdout
  return _parse(out, "TORCH")


def malloc_rows() -> list:
  """The train step with glibc's defaults, with the README's plain command's malloc, and with tcmalloc."""
  plain = {k: v for k, v in os.environ.items()
           if k not in ("LD_PRELOAD", malloc.OPT_OUT) and not k.startswith("MIMALLOC_")}
  envs = {"glibc defaults": dict(plain, **{malloc.OPT_OUT: "system"}), "README's command": plain}
  if os.path.exists(TCMALLOC):
    envs["tcmalloc"] = dict(plain, LD_PRELOAD=TCMALLOC)
  best = {}
  for _ in range(FLAGS.malloc_rounds):     # interleaved: a shared machine's load moves between runs
    for name, env in envs.items():
      t, peak, flops, faults, rss = _subprocess("train_inner", "TRAIN", env)
      if name not in best or t < best[name][0]:
        best[name] = (t, peak, flops, faults, rss)
  rows = []
  for name, (t, peak, flops, faults, rss) in best.items():
    versus = f"{t / best['tcmalloc'][0]:.2f}x the tcmalloc step, " if "tcmalloc" in best else ""
    rows.append((f"train step, {name}", f"{t * 1e3:.0f} ms, {faults:.0f} minor faults/step",
                 f"{versus}{flops / t / peak:.2f} of its run's peak, max RSS {rss / 2**30:.1f} GiB"))
  if "tcmalloc" not in best:
    rows.append(("train step, tcmalloc", "tcmalloc not found", "(apt install libtcmalloc-minimal4)"))
  return rows


# Run by launch/local.py in 2 processes (it appends --coordinator_address/--num_processes/--process_id): the cost of
# one preemption check, JAX's sync point against the allgather of a flag that the loop used before.
PREEMPTION_CALLS = """
import sys, time
import numpy as np
import jax
from jax.experimental import multihost_utils
args = dict(a.lstrip("-").split("=", 1) for a in sys.argv[1:] if "=" in a)
jax.distributed.initialize(args["coordinator_address"], int(args["num_processes"]), int(args["process_id"]))
t = time.perf_counter()
for i in range(20000):
  multihost_utils.reached_preemption_sync_point(i)
sync = (time.perf_counter() - t) / 20000
t = time.perf_counter()
for i in range(50):
  multihost_utils.process_allgather(np.asarray(False))
print(f"CALLS {sync} {(time.perf_counter() - t) / 50}", flush=True)
"""


def preemption_call_rows() -> list:
  launch = [sys.executable, os.path.join(ROOT, "launch", "local.py"), "--num_processes=2", "--"]
  out = subprocess.run(launch + [sys.executable, "-c", PREEMPTION_CALLS], cwd=ROOT, capture_output=True, text=True,
                       timeout=600)
  sync, gather = (max(v) for v in zip(*[map(float, line.split()[-2:]) for line in out.stdout.splitlines()
                                          if "CALLS" in line]))
  return [("preemption check per step, 2 processes: sync point / allgather of a flag (the old check)",
           f"{sync * 1e6:.2f} us / {gather * 1e3:.2f} ms", f"{gather / sync:.0f}x")]


def av_dit_rows() -> list:
  """AV-DiT's CPU recipe (configs/av_dit_quickstart.py) next to the quickstart's AVDiT (configs/quickstart.py), each
  its job's AVDiT-stage config at the quickstart's latent shapes: trainable / total params, the optimizer's state
  (Adam moments + EMA of the trainable params, from the state's shapes), and the train step's time (the two
  alternated, best of each)."""
  audio_shape, video_shape, _ = SHAPES["quickstart"]
  rows, steps = [], {}
  for name, file in (("AVDiT", "quickstart.py"), ("AV-DiT", "av_dit_quickstart.py")):
    c = factory.load_config(os.path.join(ROOT, "configs", file)).avdit
    c.data.update(kind="latents", audio_shape=audio_shape, video_shape=video_shape)
    step, setup, _ = real_train_step(c)
    state = setup.abstract_state
    trained, total = setup.selection.count(state.params)
    nbytes = lambda tree: sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(tree))
    rows.append((f"{name} (quickstart shapes, batch {c.data.batch_size}): params trainable / total",
                 f"{trained:,} / {total:,}", f"{trained / total:.2%}"))
    rows.append((f"{name}: optimizer state (Adam moments + EMA) / all params",
                 f"{(nbytes(state.opt_state) + nbytes(state.ema_params)) / 2**20:.2f} / "
                 f"{nbytes(state.params) / 2**20:.2f} MiB", ""))
    steps[name] = step
  best = {name: float("inf") for name in steps}
  for _ in range(2):
    for name, step in steps.items():
      best[name] = min(best[name], speed.best_time(step, repeats=FLAGS.repeats))
  rows.append(("train step, AV-DiT / AVDiT", f"{best['AV-DiT'] * 1e3:.1f} / {best['AVDiT'] * 1e3:.1f} ms",
               f"{best['AV-DiT'] / best['AVDiT']:.3f}x"))
  return rows


# The main job with the loop's preemption check answered False without asking the service (re-executed as it is
# by main's malloc restart, so the patch holds in the restarted process too).
_MAIN_WITHOUT_CHECK = ("import runpy; from avdit_jax.train import checkpoint; "
                       "checkpoint.Preemption.reached = lambda self, step: False; "
                       "runpy.run_module('avdit_jax.main', run_name='__main__', alter_sys=True)")
PREEMPTION_ARMS = {      # name: (JAX_ENABLE_PREEMPTION_SERVICE, how the main job starts)
    "sync point": ("true", ["-m", "avdit_jax.main"]),
    "service on, no check": ("true", ["-c", _MAIN_WITHOUT_CHECK]),
    "service off": ("false", ["-m", "avdit_jax.main"]),
}


def preemption_rows() -> list:
  """Steps/s of 2-process runs: the preemption check (JAX's sync point, every step), the service on but the check
  skipped, and the service off; each round starts with the next arm, so none always runs first."""
  n, names = FLAGS.preemption_steps, list(PREEMPTION_ARMS)
  best = {}
  for round_ in range(FLAGS.preemption_rounds):
    for name in names[round_ % len(names):] + names[:round_ % len(names)]:
      service, entry = PREEMPTION_ARMS[name]
      with tempfile.TemporaryDirectory() as workdir:
        cmd = [sys.executable, os.path.join(ROOT, "launch", "local.py"), "--num_processes=2", "--devices_per_process=4",
               "--", sys.executable, *entry, "--config=configs/gaussian.py", f"--workdir={workdir}",
               f"--config.train.num_steps={n}", f"--config.train.log_every={n}",
               f"--config.checkpoint.every_steps={n}", "--config.evals.gaussian_toy.tasks=()"]
        out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=1800,
                             env=dict(os.environ, JAX_ENABLE_PREEMPTION_SERVICE=service))
        if out.returncode:
          raise RuntimeError(f"2-process run ({name}) failed:\n{out.stdout[-3000:]}")
        rows = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
        rate = next(r["steps_per_sec"] for r in reversed(rows) if "steps_per_sec" in r)
        best[name] = max(best.get(name, 0.0), rate)
        print(f"preemption round {round_}: {name}: {1e3 / rate:.1f} ms/step", flush=True)
  ms = {name: 1e3 / rate for name, rate in best.items()}
  return [(f"2-process train step, sync point / service on, no check ({n} steps, configs/gaussian.py)",
           f"{ms['sync point']:.1f} / {ms['service on, no check']:.1f} ms",
           f"{ms['sync point'] / ms['service on, no check']:.3f}x"),
          ("2-process train step, service on, no check / service off (the service's own cost)",
           f"{ms['service on, no check']:.1f} / {ms['service off']:.1f} ms",
           f"{ms['service on, no check'] / ms['service off']:.3f}x")]


def main(_):
  if FLAGS.only == ["train_inner"]:    # the malloc subprocesses
    config = bench_config(FLAGS.variant, FLAGS.batch, FLAGS.segments)
    step, setup, _ = real_train_step(config)
    peak = matmul_peak(FLAGS.repeats)
    seconds = speed.best_time(step, repeats=FLAGS.repeats)
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    jax.block_until_ready(step())
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(f"TRAIN {seconds} {peak} {setup.step_flops} {faults} {rss}")
    print(f"MALLOC {MALLOC}")
    return
  if FLAGS.only[0] == "checkpoint_inner":   # the checkpoint subprocesses: --only=checkpoint_inner,HANDLER
    config = bench_config(FLAGS.variant, FLAGS.batch, FLAGS.segments)
    print("SAVE", *first_save_seconds(config, FLAGS.only[1]))
    return
  if FLAGS.only == ["memory_inner"]:   # the subprocess with 8 host devices
    fsdp = state_memory_per_device(bench_config(FLAGS.variant, FLAGS.batch, FLAGS.segments, (1, -1, 1)))
    config = bench_config(FLAGS.variant, FLAGS.batch, FLAGS.segments, (1, 1, 1))
    one = state_memory_per_device(config, sharding.single_device_mesh(config))
    print(f"MEMORY {one} {fsdp}")
    return

  config = bench_config(FLAGS.variant, FLAGS.batch, FLAGS.segments)
  step, setup, holder = real_train_step(config)
  net = setup.model
  layout = avdit.layout_for(net, config.data.audio_shape, config.data.video_shape)
  tokens = layout.num_audio_tokens + layout.num_video_tokens
  print(f"devices: {jax.devices()}  variant {FLAGS.variant}, {tokens} tokens, batch {FLAGS.batch}")
  rows = []
  peak = None
  if "peak" in FLAGS.only or "train" in FLAGS.only:
    peak = matmul_peak(FLAGS.repeats)
    rows.append((f"matmul peak ({FLAGS.dtype} 2048^2)", f"{peak / 1e9:.1f} GFLOP/s", ""))

  t_seg = None
  if {"train", "input"} & set(FLAGS.only):
    t_seg = speed.best_time(step, repeats=FLAGS.repeats)
  if "train" in FLAGS.only:
    flops = setup.step_flops
    rows.append(("train step", f"{t_seg * 1e3:.0f} ms, {flops / t_seg / 1e9:.1f} GFLOP/s",
                 f"{flops / t_seg / peak:.2f} of matmul peak"))
  if "modulation" in FLAGS.only:
    model = factory.model(config)
    t_cell = speed.best_time(loss_gradient(config, model), repeats=FLAGS.repeats)
    t_ex = speed.best_time(loss_gradient(config, as_per_example(model)), repeats=FLAGS.repeats)
    rows.append(("gradient step, per-cell adaLN / per-example adaLN", f"{t_cell * 1e3:.0f} / {t_ex * 1e3:.0f} ms",
                 f"{t_cell / t_ex:.3f}x"))

  if "sampling" in FLAGS.only:
    params = sharding.to_host(holder[0].params)
    rng = np.random.default_rng(1)
    audio = jnp.asarray(rng.normal(size=(FLAGS.batch, *config.data.audio_shape)), jnp.float32)
    video = jnp.asarray(rng.normal(size=(FLAGS.batch, *config.data.video_shape)), jnp.float32)
    t_grid = jnp.full((FLAGS.batch, 2, FLAGS.segments), 500, jnp.int32)
    forward = jax.jit(lambda p, a, v, t: net.apply({"params": p}, a, v, t))
    t_fwd = speed.best_time(forward, params, audio, video, t_grid, repeats=FLAGS.repeats)
    n = FLAGS.sample_steps
    for loop in ("python", "fori"):
      sampler = factory.sampler(config, num_steps=n, loop=loop)
      run = sampling.make_sampler(avdit.network(net), sampler)
      cond = sampling.make_condition(sampler, monl.a2v(FLAGS.segments), audio, video)
      t_run = speed.best_time(run, params, cond, jax.random.PRNGKey(0), repeats=FLAGS.repeats)
      rows.append((f"sampling {n} steps, {loop} loop", f"{t_run * 1e3:.0f} ms vs {n} x {t_fwd * 1e3:.0f} ms",
                   f"{t_run / (n * t_fwd):.3f}x of {n} forward passes"))
    rows.append(("sampling default loop on this backend", sampling.default_loop(), ""))

  if "input" in FLAGS.only:
    consumed = FLAGS.batch / t_seg
    with tempfile.TemporaryDirectory() as directory:
      config.data.kind, config.data.dir = "latents", directory
      streams.write_gaussian_latents(factory.gaussian_toy(config), config, directory, 256, num_shards=4)
      for workers in (0, 2):
        config.data.num_workers = workers
        it = iter(streams.latent_dataset(config))
        next(it)                                   # start-up (and worker launch) left out
        n = 64
        t0 = time.perf_counter()
        for _ in range(n):
          next(it)
        rate = n * FLAGS.batch / (time.perf_counter() - t0)
        rows.append((f"input pipeline, {workers} workers", f"{rate:.0f} ex/s vs step {consumed:.1f} ex/s",
                     f"{rate / consumed:.0f}x what the step consumes"))

  if "memory" in FLAGS.only:
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu")
    one, fsdp = map(int, _subprocess("memory_inner", "MEMORY", env))
    rows.append(("train state per device: FSDP 8 / 1 device", f"{fsdp / 2**20:.1f} / {one / 2**20:.1f} MiB",
                 f"{fsdp / one:.3f}x"))

  if "checkpoint" in FLAGS.only:        # each in a fresh process: the compiles are a process's first save's
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu")
    (orbax_block, orbax_total), (ours_block, ours_total) = (
        _subprocess(f"checkpoint_inner,{h}", "SAVE", env) for h in ("orbax", "project"))
    rows.append(("first save, 8 devices: orbax's handler / ours, blocking",
                 f"{orbax_block:.2f} / {ours_block:.2f} s", f"{orbax_block / ours_block:.1f}x"))
    rows.append(("  until on disk", f"{orbax_total:.2f} / {ours_total:.2f} s", f"{orbax_total / ours_total:.1f}x"))

  if "lora" in FLAGS.only:              # params + EMA + optimizer state of the compiled step, one device
    tuned = bench_config(FLAGS.variant, FLAGS.batch, FLAGS.segments)
    tuned.train.trainable = "lora"
    mesh = sharding.single_device_mesh(tuned)
    full, lora = state_memory_per_device(config, mesh), state_memory_per_device(tuned, mesh)
    params = trainer.build(tuned, mesh).abstract_state.params
    trained, total = trainable.for_config(tuned).count(params)
    rows.append((f"train state per device: LoRA (rank {tuned.train.lora.rank}, {trained / total:.2%} of the params "
                 "train) / full fine-tuning", f"{lora / 2**20:.1f} / {full / 2**20:.1f} MiB", f"{lora / full:.3f}x"))

  if "av_dit" in FLAGS.only:
    rows += av_dit_rows()
  if "preemption_calls" in FLAGS.only or "preemption" in FLAGS.only:
    rows += preemption_call_rows()
  if "preemption" in FLAGS.only:
    rows += preemption_rows()
  if "malloc" in FLAGS.only:
    rows += malloc_rows()

  if "profile" in FLAGS.only:
    batch = trainer.abstract_batch(config, setup)
    instructions = hlo_text.entry_instructions(setup.step_fn.lower(setup.abstract_state, batch).compile().as_text())
    times = op_times(step, steps=FLAGS.repeats)
    parts = profile_parts(times, instructions)
    traced = sum(t for t, _ in parts.values())
    wall = t_seg if t_seg is not None else speed.best_time(step, repeats=FLAGS.repeats)
    peak = peak or matmul_peak(FLAGS.repeats)
    malloc = "tcmalloc" if "tcmalloc" in os.environ.get("LD_PRELOAD", "") else "glibc malloc"
    rows.append((f"profile ({malloc}): op time per step", f"{traced * 1e3:.0f} ms vs {wall * 1e3:.0f} ms wall",
                 f"{traced / wall:.2f}x the wall time"))
    for name, (t, flops) in sorted(parts.items(), key=lambda kv: -kv[1][0]):
      ratio = f"{t / traced:.2f} of op time"
      if flops:
        ratio += (f"; {flops / t / 1e9:.0f} GFLOP/s, {flops / t / peak:.2f} of peak "
                  f"({flops / peak * 1e3:.0f} ms at peak)")
      rows.append((f"  {name}", f"{t * 1e3:.0f} ms", ratio))

  if "torch" in FLAGS.only and importlib.util.find_spec("torch") is None:
    rows.append(("train step, JAX / PyTorch", "torch not installed", "(pip install torch==2.13.0)"))
  elif "torch" in FLAGS.only and FLAGS.dtype != "float32":
    rows.append(("train step, JAX / PyTorch", "skipped", "(tools/torch_reference.py is float32 only)"))
  elif "torch" in FLAGS.only:
    plain = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    for name, env in [("glibc", plain)] + ([("tcmalloc", dict(plain, LD_PRELOAD=TCMALLOC))]
                                            if os.path.exists(TCMALLOC) else []):
      t_jax, peak_jax, flops, _, _ = _subprocess("train_inner", "TRAIN", env)
      t_torch, peak_torch, torch_params, threads, form = _torch_step(env)
      ours = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(holder[0].params))
      if int(torch_params) != ours:
        raise RuntimeError(f"tools/torch_reference.py builds {int(torch_params)} parameters, the AVDiT {ours}: "
                           "the two networks differ; mend the reference.")
      rows.append((f"train step, JAX / PyTorch ({name})", f"{t_jax * 1e3:.0f} / {t_torch * 1e3:.0f} ms",
                   f"{t_jax / t_torch:.2f}x PyTorch's time ({int(threads)} threads, {form} attention); of "
                   f"peak {flops / t_jax / peak_jax:.2f} / {flops / t_torch / peak_jax:.2f}"))
    rows.append(("torch's own matmul peak (f32 2048^2)", f"{peak_torch / 1e9:.1f} GFLOP/s", ""))

  width = max(len(r[0]) for r in rows)
  for name, value, ratio in rows:
    print(f"{name:<{width}}  {value:<36} {ratio}")


if __name__ == "__main__":
  app.run(main)
