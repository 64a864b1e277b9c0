"""tools/table1.py end to end on the Gaussian toy's test config: a row per setting, from the right runs."""

import json
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(workdir, *flags):
  cmd = [sys.executable, os.path.join(ROOT, "tools", "table1.py"), f"--workdir={workdir}",
         f"--config={os.path.join(ROOT, 'configs', 'gaussian.py')}:test", "--tasks=a2v,v2a", *flags]
  out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900, check=False,
                       env={**os.environ, "JAX_PLATFORMS": "cpu"})
  assert out.returncode == 0, out.stderr[-3000:]
  return out


def _rows(text: str) -> dict:
  rows = {}
  for line in text.splitlines():
    cells = [c.strip() for c in line.strip().strip("|").split("|")]
    if len(cells) == 4 and re.fullmatch(r"[0-9.]+", cells[-1]):
      rows[cells[0]] = [float(c) for c in cells[1:]]
  return rows


def test_table1_trains_every_setting_on_a_finite_toy_set(tmp_path):
  settings = "--settings=Conditional (task-specific),MoNL"
  _run(tmp_path, settings, "--toy_clips=64")
  text = (tmp_path / "table.md").read_text()
  rows = _rows(text)
  assert set(rows) == {"Conditional (task-specific)", "MoNL", "exact denoiser (floor)"}, text
  for name, (a2v, v2a, avg) in rows.items():
    assert abs(avg - (a2v + v2a) / 2) < 1e-3, (name, text)
  assert "on 64 fixed clips" in text
  # One model per task for the task-specific row, one for MoNL, all on the same written clips; each cell is its
  # own model's score (cells.json: [scores, floors, seconds]), and the exact denoiser is below every model.
  assert sorted(os.listdir(tmp_path / "conditional_task_specific")) == ["a2v", "v2a"]
  cells = lambda *parts: json.load(open(os.path.join(tmp_path, *parts, "cells.json")))[0]
  task_specific = rows["Conditional (task-specific)"]
  assert task_specific[:2] == [round(cells("conditional_task_specific", t)[t], 4) for t in ("a2v", "v2a")], text
  assert rows["MoNL"][:2] == [round(cells("monl")[t], 4) for t in ("a2v", "v2a")], text
  floor = rows["exact denoiser (floor)"]
  for name in ("Conditional (task-specific)", "MoNL"):
    assert all(f < m for f, m in zip(floor[:2], rows[name][:2])), (name, text)
  assert (tmp_path / "toy_clips_64" / "metadata.json").exists()
