"""What a training run reports and writes, and how its ranks agree on it.

Rank 0 writes the run directory: config.json, metrics.csv (and TensorBoard when installed),
sample grids, checkpoints, and shows the progress bar. A write that fails (disk full,
read-only folder, ...) becomes a CheckpointWriteError that names the last good checkpoint.
Under torchrun every write phase ends in one collective in which all ranks learn whether
rank 0's writes failed and whether any rank was asked to stop, so all raise or stop together
and none is left waiting in a collective.
"""

from __future__ import annotations

import io
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from tqdm import tqdm

from ccyclegan.core.checkpoint import (
    CheckpointError,
    CheckpointWriteError,
    atomic_write_bytes,
    load_tensors,
    oserror_text,
)
from ccyclegan.core.data import NUM_CLASSES, FaceData
from ccyclegan.core.generator_files import CKPT_NAME, save_checkpoint
from ccyclegan.core.run import MetricsLog
from ccyclegan.core.runtime import maxes_over_ranks
from ccyclegan.core.visualize import translation_grid
from ccyclegan.train.batches import Batches

TIME_UP = 1000  # above any signal number: the max_minutes budget is spent
# what train_step logs, in this order (the columns of metrics.csv between epoch and img_per_s)
LOG_KEYS = ("loss_D", "D_adv", "D_cl", "D_acc", "loss_G", "G_adv", "G_cl", "G_cyc", "G_acc",
            "D_gp", "G_expr", "G_mask")

Write = tuple[str, Callable[[], Any]]  # (what, for the error message; the write itself)


class NonFiniteLossError(RuntimeError):
    """A loss (or gradient) became NaN or inf at `step`. The update was not applied, so the
    weights in memory and the last good checkpoint on disk stay finite."""

    def __init__(self, message: str, step: int | None = None):
        super().__init__(message)
        self.step = step


class RunLog:
    """The run directory of training state st (a train.TrainState) on this rank.

    record() takes each step's losses; metrics(), checkpoint() and sample() return writes
    that commit() runs on rank 0 and agrees on across ranks."""

    def __init__(self, st, batches: Batches, view_data: FaceData, resumed: dict[str, Any]):
        self.st, self.cfg = st, st.cfg
        self.dir = Path(st.cfg.out)
        self.ckpt_path = self.dir / CKPT_NAME
        self.main, self.world, self.device = batches.rank == 0, batches.world, batches.device
        self.steps_per_epoch, self.global_batch = batches.steps_per_epoch, batches.global_batch
        self.faces, self.face_labels = sample_faces(view_data, st.cfg.n_sample_faces)
        self.skipped = int(resumed.get("skipped_steps", 0) or 0)
        self._trained_s = float(resumed.get("train_seconds", 0) or 0)
        self._window: dict[str, list[torch.Tensor]] = {}
        self._t0 = self._t_run = time.perf_counter()  # start() sets the clocks again
        self._seen0 = st.step
        self._time_up = False
        self.total = self._step0 = 0
        self.log: MetricsLog | None = None
        self.bar = None

    # ------------------------------------------------------------------ start and end

    def open(self, resume: bool) -> None:
        """Create the run directory, config.json and metrics.csv (one write phase)."""
        def set_up() -> None:
            self.dir.mkdir(parents=True, exist_ok=True)
            (self.dir / "samples").mkdir(exist_ok=True)
            for stale in self.dir.glob(".*.tmp"):  # left by a crash mid-write; never read
                stale.unlink(missing_ok=True)

        def open_log() -> None:
            self.log = MetricsLog(self.dir, self.st.step if resume else None)

        self.commit([("the run directory", set_up),
                     ("config.json", lambda: self.cfg.save(self.dir / "config.json")),
                     ("metrics.csv", open_log)])

    def start(self, total: int, progress_bar: bool) -> None:
        """The progress bar (rank 0) and the clocks, just before the first step."""
        if self.main and progress_bar:
            self.bar = tqdm(total=total, initial=self.st.step, unit="step", dynamic_ncols=True)
        self.total, self._step0 = total, self.st.step
        self._t0, self._seen0 = time.perf_counter(), self.st.step
        self._t_run = time.perf_counter()

    def finish(self, final: bool) -> None:
        """The last checkpoint and sample grid (final.png too, unless interrupted)."""
        self._close_bar()
        names = [f"step_{self.st.step:07d}.png"] + (["final.png"] if final else [])
        self.commit([self.checkpoint(), self.sample(*names)])

    def __enter__(self) -> RunLog:
        return self

    def __exit__(self, *exc) -> None:
        self._close_bar()
        if self.log is not None:
            self.log.close()

    def _close_bar(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def say(self, message: str) -> None:
        """A line on rank 0's console (above the progress bar)."""
        if not self.main:
            return
        if self.bar is not None:
            self.bar.write(message)
        else:
            print(message, flush=True)

    # ------------------------------------------------------------------ each step

    def record(self, logs: dict[str, torch.Tensor]) -> None:
        """A step's detached losses join the window; a skipped step is counted and said."""
        if self.bar is not None:
            self.bar.update(1)
        if "skipped" not in logs:
            for k, v in logs.items():
                self._window.setdefault(k, []).append(v)
            return
        self.skipped += 1
        if self.main:
            reason = self.st.extra.pop("nonfinite", "non-finite loss")
            self.say(f"ccyclegan: warning: {reason}; update skipped (--skip-nonfinite; "
                     f"{self.skipped} skipped so far)")

    def metrics(self) -> Write:
        """The window's mean losses as a metrics.csv row (under DDP the mean over ranks: the
        global batch's losses). NonFiniteLossError if one is NaN or inf. At the end of
        max_minutes, rank 0 also asks the next commit() to stop."""
        step = self.st.step
        row = self._flush(step)
        row["skipped_steps"] = self.skipped
        bad = [k for k, v in row.items() if v is not None and not math.isfinite(v)]
        if bad:
            raise NonFiniteLossError(f"non-finite loss ({', '.join(bad)}) by step {step}; "
                                     f"{self.last_good()} in {self.dir}", step=step)
        self._t0, self._seen0 = time.perf_counter(), step
        if self.bar is not None:
            self.bar.set_postfix({k: f"{row[k]:.3f}" for k in ("loss_D", "loss_G", "G_cyc",
                                                                "D_acc") if row.get(k) is not None})
        if self.main and self.budget_spent():
            self._time_up = True  # a finished run, decided by rank 0
        if self.main and self.bar is None and self.total:  # no bar: a line per metrics row
            self.say(self._progress_line(row))
        return "metrics.csv", lambda: self.log.write(row)

    def _progress_line(self, row: dict[str, float | None]) -> str:
        """'step 500/8000 (6%), 120 img/s, loss_G 1.234, ~14 min left'."""
        step = int(row["step"])
        done = (step - self._step0) / max(self.total - self._step0, 1)
        losses = "".join(f", {k} {row[k]:.3f}" for k in ("loss_D", "loss_G", "G_distill")
                         if row.get(k) is not None)
        spent = time.perf_counter() - self._t_run
        left_s = spent * (1 - done) / done if done > 0 else None
        if self.cfg.max_minutes:  # the budget ends the run first when it is shorter
            budget_s = max(60 * self.cfg.max_minutes - self.train_seconds(), 0.0)
            left_s = budget_s if left_s is None else min(left_s, budget_s)
        left = f", ~{left_s / 60:.0f} min left" if left_s is not None else ""
        return (f"step {step}/{self.total} ({step / self.total:.0%}), "
                f"{row['img_per_s']:.0f} img/s{losses}{left}")

    def budget_spent(self) -> bool:
        """Whether max_minutes of training (summed over resumes) are spent."""
        budget = self.cfg.max_minutes
        return bool(budget) and self.train_seconds() >= 60 * budget

    def checkpoint(self) -> Write:
        return "checkpoint", lambda: save_checkpoint(self.st, self.dir, self.progress())

    def sample(self, *names: str) -> Write:
        return "a sample grid", lambda: self._save_sample(*names)

    def commit(self, writes: list[Write], signal: int | None = None) -> int:
        """Rank 0 runs the writes; then every rank learns, in one collective (which also keeps
        the others from running ahead of rank 0's files), whether they failed and whether any
        rank was asked to stop. Returns the signal that stops the run (TIME_UP when
        max_minutes is spent), or 0; raises CheckpointWriteError on every rank on a failure.

        Ranks may get a signal at different steps: they stop together at the next step with
        writes (all ranks reach the same ones), so none leaves the others waiting in a
        collective (torchrun waits --shutdown-timeout s). A single process stops at once."""
        stopping = signal or 0
        if self._time_up:
            stopping, self._time_up = max(stopping, TIME_UP), False
        if not writes:
            return stopping if self.world == 1 else 0
        err: CheckpointWriteError | None = None
        if self.main:
            for what, write in writes:
                try:
                    write()
                except OSError as e:
                    err = CheckpointWriteError(f"cannot write {what} to {self.dir}: "
                                               f"{oserror_text(e)}; {self.last_good()}")
                    break
        if self.world > 1:
            failed, stopping = maxes_over_ranks([int(err is not None), stopping], self.device)
            if failed and err is None:
                err = CheckpointWriteError(f"rank 0 cannot write to {self.dir} (its error says "
                                           f"why); {self.last_good()}")
        if err is not None:
            raise err
        return stopping

    def stopped_by(self, e: NonFiniteLossError) -> NonFiniteLossError:
        """e (from train_step) with what the failed run leaves on disk."""
        return NonFiniteLossError(f"{e}; training stopped; {self.last_good()} in {self.dir} "
                                  f"(--skip-nonfinite skips such steps instead)", step=e.step)

    # ------------------------------------------------------------------ helpers

    def train_seconds(self) -> float:
        """Training time summed over this run and the ones it resumed."""
        return self._trained_s + time.perf_counter() - self._t_run

    def progress(self) -> dict[str, Any]:
        """What a checkpoint records besides the step."""
        return {"epoch": self.st.step / self.steps_per_epoch, "world_size": self.world,
                "global_batch": self.global_batch, "skipped_steps": self.skipped,
                "train_seconds": round(self.train_seconds(), 3)}

    def last_good(self) -> str:
        """What a failed run leaves: the checkpoint on disk, read back in full (checksum)."""
        if not self.ckpt_path.is_file():
            return "no checkpoint has been written yet"
        try:
            _, meta = load_tensors(self.ckpt_path)
            step = int(meta["progress"]["step"])
        except (CheckpointError, KeyError, TypeError, ValueError) as e:
            return f"the checkpoint on disk cannot be read back ({e})"
        return f"the last good checkpoint (step {step}) is intact"

    def _save_sample(self, *names: str) -> None:
        buf = io.BytesIO()
        translation_grid(self.st.G_eval, self.faces, self.face_labels).save(buf, format="PNG")
        for name in names:  # atomic, like the checkpoint: never a half-written PNG
            atomic_write_bytes(self.dir / "samples" / name, buf.getvalue())

    def _flush(self, step: int) -> dict[str, float | None]:
        """The window's mean losses (None where none was computed: no G step in the window,
        or every step in it skipped), epoch and images/s."""
        row: dict[str, float | None] = {"step": step,
                                        "epoch": round(step / self.steps_per_epoch, 4)}
        row.update(dict.fromkeys(LOG_KEYS))
        keys = list(self._window)  # the same keys in the same order on every rank
        if keys:
            means = torch.stack([torch.stack(self._window[k]).mean() for k in keys])
            if self.world > 1:  # equal per-rank batches: mean of rank means = global mean
                dist.all_reduce(means)
                means /= self.world
            row.update(zip(keys, means.tolist(), strict=True))
        self._window.clear()
        dt = max(time.perf_counter() - self._t0, 1e-9)
        row["img_per_s"] = (step - self._seen0) * self.global_batch / dt
        return row


def sample_faces(data: FaceData, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """n fixed faces cycling through the emotions, for comparable grids across steps."""
    picks: list[int] = []
    per_class = [torch.nonzero(data.labels == k).flatten().tolist() for k in range(NUM_CLASSES)]
    j = 0
    while len(picks) < min(n, len(data)):
        for k in range(NUM_CLASSES):
            if j < len(per_class[k]) and len(picks) < n:
                picks.append(per_class[k][j])
        j += 1
    idx = torch.tensor(picks, dtype=torch.long)
    return data.images[idx], data.labels[idx]
