"""The Colab demo (tools/demo.ipynb) executed headless on the tiny quickstart run."""

import os
import sys

import nbformat
import pytest
from nbclient import NotebookClient

from avdit_jax.media import mediafile

pytestmark = pytest.mark.xdist_group("tokenizers")     # it shares the quickstart_run fixture
ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))


def test_demo_notebook_samples_every_task_with_sound(quickstart_run, monkeypatch):
  root, _, _ = quickstart_run
  monkeypatch.setenv("AVDIT_DEMO_WORKDIR", str(root))
  monkeypatch.setenv("AVDIT_DEMO_CONFIG", os.path.join(ROOT, "configs", "quickstart.py") + ":test")
  monkeypatch.setenv("PATH", os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])  # this venv's kernel
  nb = nbformat.read(os.path.join(ROOT, "tools", "demo.ipynb"), as_version=4)
  NotebookClient(nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": ROOT}}).execute()

  tasks = ["joint", "a2v", "v2a", "av_continue:1", "av_inpaint:1:1", "audio_continue:1", "video_continue:1",
           "audio:all,video:0"]
  shown = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
  html = "".join(o.get("data", {}).get("text/html", "") for o in shown)
  assert html.count("data:video/mp4;base64") == len(tasks) + 1  # the input (mediapy) and every result inline
  for task in tasks:
    folder = os.path.join(root, "demo", task.replace(":", "_").replace(",", "+"))
    mp4 = os.path.join(folder, "0_sample.mp4")
    got = mediafile.stream_durations(mp4)
    assert got["video"] > 0 and got["audio"] > 0, (task, got)     # both streams present
    assert os.path.exists(os.path.join(folder, "0_side_by_side.mp4")) == (task != "joint")
  assert any("## a2v" in o.get("data", {}).get("text/markdown", "") for o in shown), "the report is shown"
