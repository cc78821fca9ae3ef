"""Disk and numeric faults in training: a full disk or read-only run directory stops the run
with one clear line and the last good checkpoint intact; a NaN/inf loss or gradient stops the
run naming the step (or, with --skip-nonfinite, skips that update and counts it)."""

from __future__ import annotations

import csv
import errno
import os
import pathlib
import re
import subprocess
import sys

import pytest
import torch
import torch.distributed as dist

from ccyclegan.cli.commands import main
from ccyclegan.core import losses
from ccyclegan.core.checkpoint import CheckpointWriteError, load_tensors
from ccyclegan.core.config import Config, ConfigError
from ccyclegan.core.generator_files import load_generator
from ccyclegan.train.batches import Batches
from ccyclegan.train.loop import train
from ccyclegan.train.runlog import NonFiniteLossError

TINY = ["--gen-channels", "8", "--disc-channels", "8", "--batch-size", "16", "--threads", "1",
        "--no-progress"]


def cli_train(data, out, *extra) -> list[str]:
    return ["train", "--data", str(data), "--out", str(out), *TINY, *extra]


class Disk:
    """Makes writes under `root` fail with OSError(err) once armed (by hand, or after `after`
    complete checkpoints: checkpoint.json is the last file a checkpoint writes).

    where="write": the data writes fail (ENOSPC: the disk fills up), via the file objects of
    os.fdopen (the atomic writes of checkpoint.py) and Path.open (metrics.csv appends).
    where="open": creating, renaming and deleting files and folders fails (EROFS, EACCES: a
    read-only or foreign run directory). As root, chmod does not stop writes, so this is how
    the tests make a directory read-only.
    """

    def __init__(self, monkeypatch, root, err: int, where: str, after: int | None = None):
        self.root, self.err, self.where = os.path.abspath(root), err, where
        self.after, self.checkpoints, self.armed = after, 0, after == 0
        self.fds: set[int] = set()
        real = {n: getattr(os, n) for n in ("open", "fdopen", "mkdir", "replace", "unlink")}
        real_path_open = pathlib.Path.open

        def os_open(path, flags, mode=0o777, *, dir_fd=None):
            writing = flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT)
            if writing and self.hits(path, "open"):
                raise self.error(path)
            fd = real["open"](path, flags, mode, dir_fd=dir_fd)
            if writing and self.under(path):
                self.fds.add(fd)
            return fd

        def os_fdopen(fd, *a, **k):
            f = real["fdopen"](fd, *a, **k)
            return _Failing(f, self) if fd in self.fds else f

        def mkdir(path, mode=0o777, *, dir_fd=None):
            if self.hits(path, "open"):
                raise self.error(path)
            return real["mkdir"](path, mode, dir_fd=dir_fd)

        def replace(src, dst, **k):
            if self.hits(dst, "open"):
                raise self.error(dst)
            real["replace"](src, dst, **k)
            if self.under(dst) and str(dst).endswith("checkpoint.json"):
                self.checkpoints += 1
                if self.after is not None and self.checkpoints >= self.after:
                    self.armed = True

        def unlink(path, *, dir_fd=None):
            if self.hits(path, "open"):
                raise self.error(path)
            return real["unlink"](path, dir_fd=dir_fd)

        def path_open(p, mode="r", *a, **k):
            if any(c in mode for c in "wax+") and self.hits(p, "open"):
                raise self.error(p)
            f = real_path_open(p, mode, *a, **k)
            return _Failing(f, self) if any(c in mode for c in "wax+") and self.under(p) else f

        for name, fn in (("open", os_open), ("fdopen", os_fdopen), ("mkdir", mkdir),
                         ("replace", replace), ("unlink", unlink)):
            monkeypatch.setattr(os, name, fn)
        monkeypatch.setattr(pathlib.Path, "open", path_open)

    def under(self, path) -> bool:
        return os.path.abspath(os.fspath(path)).startswith(self.root)

    def hits(self, path, where: str) -> bool:
        return self.armed and self.where == where and self.under(path)

    def error(self, path=None) -> OSError:
        return OSError(self.err, os.strerror(self.err), None if path is None else str(path))


class _Failing:
    """A file object whose writes fail while the disk is armed (where="write")."""

    def __init__(self, f, disk: Disk):
        self._f, self._disk = f, disk

    def write(self, data):
        if self._disk.armed and self._disk.where == "write":
            raise self._disk.error()
        return self._f.write(data)

    def __getattr__(self, name):
        return getattr(self._f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._f.close()


def ckpt_step(out) -> int:
    tensors, meta = load_tensors(out / "checkpoint.safetensors")  # checksum verified
    assert all(torch.isfinite(t).all() for k, t in tensors.items() if t.is_floating_point())
    return meta["progress"]["step"]


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


# --------------------------------------------------------------------------- disk faults


@pytest.mark.parametrize("what,every", [
    ("checkpoint", ["--log-every", "100", "--sample-every", "100000"]),
    ("metrics.csv", ["--log-every", "1", "--sample-every", "100000"]),
    ("a sample grid", ["--log-every", "100", "--sample-every", "3"]),
])
def test_disk_full_after_the_first_checkpoint(tmp_path, tiny_csv, monkeypatch, capsys, what,
                                              every):
    out = tmp_path / "full"
    disk = Disk(monkeypatch, out, errno.ENOSPC, "write", after=1)
    rc = main(cli_train(tiny_csv, out, "--max-steps", "6", "--ckpt-every", "2", *every))
    assert rc == 2 and disk.armed
    line = one_error_line(capsys)
    assert line == (f"ccyclegan train: error: cannot write {what} to {out}: [Errno 28] No "
                    "space left on device; the last good checkpoint (step 2) is intact")
    monkeypatch.undo()  # space again
    assert ckpt_step(out) == 2
    assert load_generator(out)[2]["step"] == 2
    assert not list(out.rglob("*.tmp"))  # the failed write left no temp file behind
    if what == "checkpoint":  # and the run continues from there
        assert main(cli_train(tiny_csv, out, "--max-steps", "6", "--ckpt-every", "2",
                              "--resume", *every)) == 0
        assert ckpt_step(out) == 6


def test_read_only_run_directory(tmp_path, tiny_csv, monkeypatch, capsys):
    out = tmp_path / "ro"
    Disk(monkeypatch, out, errno.EROFS, "open", after=0)
    assert main(cli_train(tiny_csv, out, "--max-steps", "2")) == 2
    assert one_error_line(capsys) == (
        f"ccyclegan train: error: cannot write the run directory to {out}: [Errno 30] "
        "Read-only file system; no checkpoint has been written yet")
    assert not out.exists()
    monkeypatch.undo()

    # a run whose folder has become someone else's (EACCES) since its last checkpoint
    assert main(cli_train(tiny_csv, out, "--max-steps", "2", "--log-every", "1")) == 0
    capsys.readouterr()
    Disk(monkeypatch, out, errno.EACCES, "open", after=0)
    assert main(cli_train(tiny_csv, out, "--max-steps", "4", "--resume")) == 2
    assert one_error_line(capsys) == (
        f"ccyclegan train: error: cannot write config.json to {out}: [Errno 13] Permission "
        "denied; the last good checkpoint (step 2) is intact")
    monkeypatch.undo()
    assert ckpt_step(out) == 2


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0,
                    reason="chmod does not stop root; Disk(where='open') simulates it above")
def test_read_only_run_directory_for_real(tmp_path, tiny_csv):
    out = tmp_path / "ro"
    cfg = Config(data=str(tiny_csv), out=str(out), gen_channels=8, disc_channels=8,
                 batch_size=16, threads=1, max_steps=2, ckpt_every=1, log_every=1)
    train(cfg, progress_bar=False)
    out.chmod(0o555)
    try:
        cfg.max_steps = 4
        with pytest.raises(CheckpointWriteError, match=r"\(step 2\) is intact"):
            train(cfg, resume=True, overrides={"max_steps": 4}, progress_bar=False)
    finally:
        out.chmod(0o755)
    assert ckpt_step(out) == 2


# --------------------------------------------------------------------------- NaN / inf


class _NanGrad(torch.autograd.Function):
    """Identity forward, NaN backward: a finite loss whose gradients are not."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, g):
        return g * float("nan")


def inject(monkeypatch, kind: str, steps: set[int]) -> None:
    """Poison the given (1-based) steps: NaN loss_D, inf loss_G, NaN gradients of D with a
    finite loss, or a NaN pixel in the batch."""
    if kind == "data":
        real_get = Batches.get

        def get(self, step):
            x, y, src, y_t = real_get(self, step)
            if step + 1 in steps:
                x = x.clone()
                x[0, 0, 0, 0] = float("nan")
            return x, y, src, y_t

        monkeypatch.setattr(Batches, "get", get)
        return
    name = "g_adversarial" if kind == "inf_G" else "d_adversarial"
    real = getattr(losses, name)
    calls = [0]

    def poisoned(*a, **k):
        calls[0] += 1
        loss = real(*a, **k)
        if calls[0] not in steps:
            return loss
        if kind == "grad_D":
            return _NanGrad.apply(loss)
        return loss * float("inf" if kind == "inf_G" else "nan")

    monkeypatch.setattr(losses, name, poisoned)


@pytest.mark.parametrize("kind,why", [
    ("nan_D", r"D update at step 5 \(loss_D = nan\)"),
    ("inf_G", r"G update at step 5 \(loss_G = inf\)"),
    ("grad_D", r"D update at step 5 \(loss_D = \S+ is finite here, so: its gradients"),
    ("data", r"D update at step 5 \(loss_D = nan\)"),
])
def test_nonfinite_stops_naming_the_step(tmp_path, tiny_csv, monkeypatch, capsys, kind, why):
    out = tmp_path / kind
    inject(monkeypatch, kind, {5})
    rc = main(cli_train(tiny_csv, out, "--max-steps", "8", "--ckpt-every", "2",
                        "--log-every", "1", "--sample-every", "100000"))
    assert rc == 2
    line = one_error_line(capsys)
    assert re.search(why, line), line
    assert line.startswith("ccyclegan train: error: non-finite loss or gradient")
    assert f"the last good checkpoint (step 4) is intact in {out}" in line
    assert "--skip-nonfinite" in line
    assert ckpt_step(out) == 4  # the checkpoint on disk is the last good one, and loads
    G, _, _ = load_generator(out)
    assert all(torch.isfinite(p).all() for p in G.parameters())
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4]


@pytest.mark.parametrize("kind", ["nan_D", "inf_G", "grad_D", "data"])
def test_skip_nonfinite_finishes_and_counts(tmp_path, tiny_csv, monkeypatch, capsys, kind):
    out = tmp_path / kind
    inject(monkeypatch, kind, {3, 5})
    rc = main(cli_train(tiny_csv, out, "--max-steps", "6", "--ckpt-every", "3",
                        "--log-every", "1", "--sample-every", "100000", "--skip-nonfinite"))
    assert rc == 0
    cap = capsys.readouterr()
    assert "done: 6 steps (2 skipped: non-finite loss)" in cap.out
    assert cap.out.count("update skipped (--skip-nonfinite") == 2
    tensors, meta = load_tensors(out / "checkpoint.safetensors")
    assert meta["progress"]["step"] == 6 and meta["progress"]["skipped_steps"] == 2
    assert all(torch.isfinite(t).all() for t in tensors.values() if t.is_floating_point())
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4, 5, 6]
    assert [int(r["skipped_steps"]) for r in rows] == [0, 0, 1, 1, 2, 2]
    assert rows[2]["loss_D"] == "" and rows[3]["loss_D"] != ""  # skipped: nothing logged
    assert all(float(r["loss_D"]) == float(r["loss_D"]) for r in rows if r["loss_D"])
    # the count survives a resume
    monkeypatch.undo()
    cfg = Config.load(out / "config.json")
    res = train(cfg, resume=True, overrides={"max_steps": 7}, progress_bar=False)
    assert res["skipped_steps"] == 2 and res["step"] == 7


def test_skip_nonfinite_is_a_config_field():
    assert Config().skip_nonfinite is False
    with pytest.raises(ConfigError, match="'skip_nonfinite'"):
        Config(skip_nonfinite="yes")
    with pytest.raises(ConfigError, match="'lr' must be a finite number"):
        Config.from_dict({"lr": float("nan")})


def test_nonfinite_error_type(tmp_path, tiny_csv, monkeypatch):
    inject(monkeypatch, "nan_D", {1})
    cfg = Config(data=str(tiny_csv), out=str(tmp_path / "t"), gen_channels=8, disc_channels=8,
                 batch_size=16, threads=1, max_steps=3)
    with pytest.raises(NonFiniteLossError, match="step 1.*no checkpoint has been written") as e:
        train(cfg, progress_bar=False)
    assert e.value.step == 1


# --------------------------------------------------------------------------- under torchrun

FAULTY_RANKS = """
import errno, os, sys
from ccyclegan.core import losses
real_loss, calls = losses.d_adversarial, [0]
def poisoned(*a, **k):  # rank 1 only: a NaN loss_D at step POISON_STEP
    calls[0] += 1
    loss = real_loss(*a, **k)
    bad = os.environ.get("RANK") == "1" and calls[0] == int(os.environ["POISON_STEP"])
    return loss * float("nan") if bad else loss
losses.d_adversarial = poisoned
real_replace, ckpts = os.replace, [0]
def replace(src, dst, *a, **k):  # rank 0 (the writer): the disk is full from checkpoint FULL_AT
    if str(dst).endswith("checkpoint.safetensors"):
        ckpts[0] += 1
        if ckpts[0] >= int(os.environ["FULL_AT"]):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    return real_replace(src, dst, *a, **k)
os.replace = replace
from ccyclegan.cli.commands import main
rc = main(sys.argv[1:])
print(f"rank {os.environ['RANK']} returned {rc}", file=sys.stderr, flush=True)
sys.exit(rc)
"""


@pytest.mark.skipif(not (dist.is_available() and dist.is_gloo_available())
                    or sys.platform == "win32", reason="needs torch.distributed with gloo")
def test_ranks_agree_on_nonfinite_steps_and_write_failures(tmp_path, tiny_csv):
    """Under torchrun (2 processes, one run to save time): only rank 1's loss is NaN at step 1,
    and both ranks skip that update (a rank stepping alone would desynchronise the weights;
    one raising alone would hang the other). Then only rank 0, the writer, finds the disk full
    at the second checkpoint (step 4), and both ranks stop with an error instead of rank 1
    waiting forever for rank 0."""
    script = tmp_path / "faulty.py"
    script.write_text(FAULTY_RANKS)
    out = tmp_path / "ddp"
    # torchrun checks on its workers every 2 s: once rank 0 has failed it kills rank 1, which
    # must have stopped on its own by then (it does within ~0.2 s)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
           "2", "--monitor-interval", "2", str(script),
           *cli_train(tiny_csv, out, "--max-steps", "6", "--ckpt-every", "2",
                                        "--log-every", "1", "--sample-every", "100000",
                                        "--skip-nonfinite")]
    cmd[cmd.index("16")] = "8"  # batch 8 per rank
    env = {**os.environ, "OMP_NUM_THREADS": "1", "POISON_STEP": "1", "FULL_AT": "2",
           "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180, env=env)
    assert proc.returncode != 0, proc.stdout + proc.stderr
    assert proc.stdout.count("update skipped (--skip-nonfinite; 1 skipped so far)") == 1
    errors = sorted(ln for ln in proc.stderr.splitlines()
                    if ln.startswith("ccyclegan train: error"))  # the ranks print in any order
    assert errors == [
        f"ccyclegan train: error: cannot write checkpoint to {out}: [Errno 28] No space left on "
        "device; the last good checkpoint (step 2) is intact",  # rank 0
        f"ccyclegan train: error: rank 0 cannot write to {out} (its error says why); the last "
        "good checkpoint (step 2) is intact"], proc.stderr  # rank 1
    assert "rank 0 returned 2" in proc.stderr and "rank 1 returned 2" in proc.stderr
    tensors, meta = load_tensors(out / "checkpoint.safetensors")
    assert meta["progress"]["step"] == 2 and meta["progress"]["skipped_steps"] == 1
    assert all(torch.isfinite(t).all() for t in tensors.values() if t.is_floating_point())
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    assert [int(r["skipped_steps"]) for r in rows] == [1, 1, 1, 1]
