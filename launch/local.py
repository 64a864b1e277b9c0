r"""Runs the same command as N processes on this machine, each with its own CPU devices (multi-host rehearsal).

  python launch/local.py --num_processes=2 --devices_per_process=4 -- \
      python -m avdit_jax.main --config=configs/gaussian.py --workdir=workdir/mp

Adds --multiprocess --coordinator_address --num_processes --process_id to each copy, prefixes its output
with [pN], and exits with the first non-zero status (stopping the others).
"""

import argparse
import os
import socket
import subprocess
import sys
import threading


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--num_processes", type=int, default=2)
  parser.add_argument("--devices_per_process", type=int, default=1, help="CPU devices each process sees.")
  parser.add_argument("command", nargs=argparse.REMAINDER, help="-- then the command to run")
  args = parser.parse_args()
  command = args.command[1:] if args.command[:1] == ["--"] else args.command
  if not command:
    parser.error("give the command after --")
  address = f"127.0.0.1:{free_port()}"
  procs = []
  for i in range(args.num_processes):
    env = dict(os.environ, JAX_PLATFORMS="cpu",
               XLA_FLAGS=f"--xla_force_host_platform_device_count={args.devices_per_process}")
    cmd = command + ["--multiprocess", f"--coordinator_address={address}",
                     f"--num_processes={args.num_processes}", f"--process_id={i}"]
    procs.append(subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    print(f"[launch] process {i}: pid {procs[-1].pid}", flush=True)    # e.g. to send one of them SIGTERM

  def relay(i, proc):
    for line in proc.stdout:
      sys.stdout.write(f"[p{i}] {line}")
  threads = [threading.Thread(target=relay, args=(i, p), daemon=True) for i, p in enumerate(procs)]
  for t in threads:
    t.start()
  status = 0
  for p in procs:
    rc = p.wait()
    if rc and not status:
      status = rc
      for other in procs:
        if other.poll() is None:
          other.terminate()
  for t in threads:
    t.join()
  return status


if __name__ == "__main__":
  sys.exit(main())
