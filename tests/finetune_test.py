"""The fine-tuning recipe (configs/finetune_lora.py, pipeline.finetune) on the quickstart test run: a folder of mp4s
-> av_folder -> latents with the base tokenizers -> LoRA from the base AVDiT -> every task next to the base."""

import os
import re
import subprocess
import sys

import jax
import numpy as np
import pytest
from flax import traverse_util

from avdit_jax import factory, pipeline
from avdit_jax.inference import frontend
from avdit_jax.train import checkpoint, trainable, trainer

pytestmark = pytest.mark.xdist_group("tokenizers")     # it shares the quickstart_run fixture
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_finetune_job_trains_lora_on_a_folder_and_reports_against_the_base(quickstart_run, tmp_path, monkeypatch):
  base, _, _ = quickstart_run
  folder = tmp_path / "my_clips"
  subprocess.run([sys.executable, os.path.join(ROOT, "tools", "write_synthetic_folder.py"), f"--out={folder}",
                  "--dataset=synthetic_av/tiny_unseen", "--num_files=3", "--clips_per_file=3"], check=True,
                 cwd=ROOT, capture_output=True)
  config = factory.load_config(os.path.join(ROOT, "configs", "finetune_lora.py") + ":test")
  # Paths relative to another directory, as a user gives them: the job resolves them once (saved configs
  # name absolute paths) and reads the base's latents where the base is now.
  monkeypatch.chdir(tmp_path)
  config.finetune.update(base=os.path.relpath(base, tmp_path), folder="my_clips")
  report = open(pipeline.finetune(config, "run")).read()
  monkeypatch.undo()

  trained, total, fraction = re.search(r"Trainable parameters: ([\d,]+) of ([\d,]+) \(([\d.]+)%\)", report).groups()
  assert 0 < float(fraction) < 20 and int(trained.replace(",", "")) < int(total.replace(",", ""))
  rows = [line.split(" | ") for line in report.splitlines() if line.startswith("| a2v") or line.startswith("| v2a")]
  assert rows and all(np.isfinite(float(cell.strip(" |"))) for row in rows for cell in row[2:])
  # The run trained only LoRA factors from the base's params, and it samples with them merged.
  run_dir = str(tmp_path / "run" / "avdit")
  saved = checkpoint.saved_config(run_dir)
  assert saved.train.trainable == "lora" and saved.init_from == os.path.join(str(base), "avdit")
  tuned, _, _ = trainer.restore_params(saved, run_dir, use_ema=False)
  base_params, _, _ = trainer.restore_params(checkpoint.saved_config(saved.init_from), saved.init_from, use_ema=False)
  flat_tuned, flat_base = (traverse_util.flatten_dict(jax.device_get(p)) for p in (tuned, base_params))
  assert flat_tuned.keys() == flat_base.keys()
  changed = {k for k in flat_tuned if not np.array_equal(flat_tuned[k], flat_base[k])}
  assert changed and all(re.search(r"attn/(query|key|value|out)_kernel|mlp_(in|out)/kernel", "/".join(k))
                         for k in changed)
  assert trainable.LORA_KEY not in tuned
  assert frontend.Run.load(run_dir).step == 4
  assert any(name.endswith(".mp4") for _, _, names in os.walk(tmp_path / "run" / "samples") for name in names)
