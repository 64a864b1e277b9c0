"""avdit_jax/paths.py, locally and on the GCS emulator: appends, staged writes, local copies, waits that time out."""

import time

import pytest

from avdit_jax import paths


def test_a_wait_for_another_process_times_out_naming_what_it_waited_for(tmp_path):
  marker = tmp_path / "latents-00001-of-00002.done"
  started = time.monotonic()
  with pytest.raises(TimeoutError, match=r"^waited 0.3s for .*latents-00001-of-00002.done \(written by process 1\); "
                                         r"the process that writes it may have died"):
    paths.wait_for(marker.exists, lambda: f"{marker} (written by process 1)", timeout_s=0.3, poll_s=0.05)
  assert time.monotonic() - started < 5
  marker.write_text("{}")
  paths.wait_for(marker.exists, "it", timeout_s=0.3)                 # there: no wait, no error


@pytest.mark.parametrize("where", ["local", "gs"])
def test_append_stage_and_copy(where, tmp_path, request):
  root = str(tmp_path) if where == "local" else f"{request.getfixturevalue('gcs')}/paths_test"
  log = paths.join(root, "log.txt")
  paths.append_text(log, "a\n")
  paths.append_text(log, "b\n")
  assert paths.path(log).read_text() == "a\nb\n"
  with paths.staged_dir(paths.join(root, "out")) as local:
    with open(f"{local}/x.bin", "wb") as f:
      f.write(b"123")
  assert paths.path(root, "out", "x.bin").read_bytes() == b"123"
  copy = paths.local_copy(paths.join(root, "out", "x.bin"))
  assert open(copy, "rb").read() == b"123" and "://" not in copy
  paths.path(root, "out", "x.bin").write_bytes(b"12345")               # rewritten: fetched again
  assert open(paths.local_copy(paths.join(root, "out", "x.bin")), "rb").read() == b"12345"
  assert paths.is_remote(root) == (where == "gs")
  assert paths.absolute(root) == root if where == "gs" else paths.absolute(root).startswith("/")
