"""The code passes the lint rules that pyproject.toml selects (ruff: pyflakes, pycodestyle, bugbear)."""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_ruff_finds_nothing():
  result = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "."], cwd=ROOT,
                          capture_output=True, text=True, check=False)
  assert result.returncode == 0, result.stdout + result.stderr
