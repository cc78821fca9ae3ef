"""Crash safety: SIGKILL at random moments and mid-checkpoint-write, SIGTERM, resume."""

import csv
import os
import random
import signal
import subprocess
import sys
import time

import torch

from ccyclegan.core.checkpoint import load_tensors
from ccyclegan.core.config import Config
from ccyclegan.train.loop import train

TINY = ["--gen-channels", "8", "--disc-channels", "8", "--batch-size", "16", "--threads", "1",
        "--log-every", "1", "--sample-every", "100000", "--no-progress"]

# Run the CLI with os.replace slowed down for the checkpoint file: the parent sees a marker
# once the temp file is complete and kills the child before the rename.
SLOW_RENAME = """
import os, sys, time
from pathlib import Path
real = os.replace
def slow(src, dst, *a, **k):
    if str(dst).endswith("checkpoint.safetensors") and os.environ.get("MARK"):
        Path(os.environ["MARK"]).touch()
        time.sleep(60)
    return real(src, dst, *a, **k)
os.replace = slow
from ccyclegan.cli.commands import main
sys.exit(main(sys.argv[1:]))
"""


def _cmd(data, out, steps, ckpt_every, resume):
    args = ["train", "--data", str(data), "--out", str(out), "--max-steps", str(steps),
            "--ckpt-every", str(ckpt_every), *TINY] + (["--resume"] if resume else [])
    return [sys.executable, "-c", SLOW_RENAME, *args]


def _last_logged(out):
    p = out / "metrics.csv"
    if not p.exists():
        return 0
    steps = [int(r["step"]) for r in csv.DictReader(p.open()) if r.get("step", "").isdigit()]
    return max(steps, default=0)


def _logged_since(out, t):
    """The child has written a new metrics row since it was launched at time t."""
    p = out / "metrics.csv"
    return p.exists() and p.stat().st_mtime > t and _last_logged(out) > 0


def _wait(pred, timeout=60.0):
    end = time.time() + timeout
    while time.time() < end:
        if pred():
            return True
        time.sleep(0.05)
    return False


def _ckpt_step(out):
    tensors, meta = load_tensors(out / "checkpoint.safetensors")  # raises if corrupt
    assert meta["kind"] == "train" and "G.out.weight" in tensors
    return meta["progress"]["step"]


def test_sigkill_at_random_moments_and_mid_write(tmp_path, tiny_csv):
    total, every = 60, 2
    ref = Config(data=str(tiny_csv), out=str(tmp_path / "ref"), gen_channels=8, disc_channels=8,
                 batch_size=16, threads=1, max_steps=total, ckpt_every=every, log_every=1,
                 sample_every=100000)
    train(ref, progress_bar=False)
    out = tmp_path / "crash"
    rng = random.Random(7)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    kills, mid_write, checked = 0, 0, 0
    while kills < 6:
        resume = (out / "checkpoint.safetensors").exists()
        mark = tmp_path / f"mark{kills}"
        during_write = kills in (2, 4)
        e = {**env, "MARK": str(mark)} if during_write else env
        launched = time.time()
        proc = subprocess.Popen(_cmd(tiny_csv, out, total, every, resume), env=e,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if during_write:
            assert _wait(mark.exists), proc.stderr.read().decode() if proc.poll() else "no mark"
        else:
            assert _wait(lambda p=proc, t=launched: _logged_since(out, t) or p.poll() is not None)
            time.sleep(rng.uniform(0.0, 0.4))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += 1
        if during_write:
            mid_write += 1
            assert list(out.glob(".checkpoint.safetensors.*.tmp")), "kill was not mid-write"
        if not (out / "checkpoint.safetensors").exists():
            assert _last_logged(out) <= every  # nothing saved yet: at most one interval ran
            continue
        step = _ckpt_step(out)  # every checkpoint on disk loads
        checked += 1
        lost = _last_logged(out) - step
        assert lost <= every, f"lost {lost} steps after kill {kills}"
    assert mid_write == 2 and checked >= 3
    resume = (out / "checkpoint.safetensors").exists()
    done = subprocess.run(_cmd(tiny_csv, out, total, every, resume), env=env,
                          capture_output=True, timeout=300)
    assert done.returncode == 0, done.stderr.decode()
    assert not list(out.glob(".*.tmp"))
    a, _ = load_tensors(tmp_path / "ref" / "checkpoint.safetensors")
    b, meta = load_tensors(out / "checkpoint.safetensors")
    assert meta["progress"]["step"] == total
    for k in a:
        if not k.startswith("rng"):
            torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6, msg=k)
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    assert [int(r["step"]) for r in rows] == list(range(1, total + 1))


def test_sigterm_saves_cleanly(tmp_path, tiny_csv):
    out = tmp_path / "term"
    cmd = _cmd(tiny_csv, out, 100000, 100000, False)
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert _wait(lambda: _last_logged(out) >= 2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, err.decode()
    assert _ckpt_step(out) >= 2
