"""What every training run shares, the GAN's and the classifier's: the resume check, the
metrics CSV (and TensorBoard), and stopping on a signal. The run directory's own files
(checkpoints, samples) are each training's."""

from __future__ import annotations

import csv
import io
import signal
from pathlib import Path
from typing import Any

from ccyclegan.core.checkpoint import atomic_write_text
from ccyclegan.core.config import ConfigError

__all__ = ["MetricsLog", "StopFlag", "resumed_settings", "say"]


def say(message: str) -> None:
    """print, flushed: a run's lines reach a log file as they happen (redirected stdout is
    block-buffered, so `nohup ... > log` would show nothing for an hour)."""
    print(message, flush=True)


def resumed_settings(saved: dict[str, Any], overrides: dict[str, Any] | None,
                     resumable: set[str], source: str = "checkpoint") -> dict[str, Any]:
    """The saved config with the flags given on --resume applied: a field outside resumable
    defines the run and may not change (ConfigError naming it)."""
    saved = dict(saved)
    for k, v in (overrides or {}).items():
        if k not in resumable and saved.get(k) != v:
            raise ConfigError(f"config field '{k}' cannot change when resuming "
                              f"({source} has {saved.get(k)!r}, got {v!r})")
        saved[k] = v
    return saved


class MetricsLog:
    """metrics.csv (always) and TensorBoard (when installed). On resume, rows past the
    checkpoint are dropped so the log reads like one uninterrupted run. key: the column that
    counts (the GAN's step, the classifier's epoch)."""

    def __init__(self, run_dir: Path, resume_step: int | None, key: str = "step"):
        self.key = key
        self.path = run_dir / "metrics.csv"
        self.fields: list[str] | None = None
        if resume_step is not None and self.path.exists():
            with self.path.open(newline="") as f:
                reader = csv.DictReader(f)
                # a crash can leave a half-written last row: keep complete rows only (G
                # columns may be empty: a window without a G step, d_steps_per_g > 1)
                rows = [r for r in reader
                        if None not in r and None not in r.values()
                        and r[reader.fieldnames[-1]] and _is_int(r.get(key))
                        and int(r[key]) <= resume_step]
                self.fields = list(reader.fieldnames or []) or None
            buf = io.StringIO()
            if self.fields and rows:
                w = csv.DictWriter(buf, self.fields)
                w.writeheader()
                w.writerows(rows)
            else:
                self.fields = None
            atomic_write_text(self.path, buf.getvalue())
        elif self.path.exists():
            self.path.unlink()
        self.tb = None
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(run_dir / "tensorboard"))
        except Exception:  # tensorboard is an optional extra
            self.tb = None

    def write(self, row: dict[str, float | None]) -> None:
        """Append a row; None (a loss not computed in this window) is an empty cell."""
        if self.fields is None:
            self.fields = list(row.keys())
            with self.path.open("w", newline="") as f:
                csv.DictWriter(f, self.fields).writeheader()
        with self.path.open("a", newline="") as f:
            csv.DictWriter(f, self.fields, extrasaction="ignore").writerow(row)
        if self.tb is not None:
            for k, v in row.items():
                if k != self.key and isinstance(v, int | float):
                    self.tb.add_scalar(k, v, int(row[self.key]))

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()

    def __enter__(self) -> MetricsLog:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _is_int(v: str | None) -> bool:
    return v is not None and v.strip().isdigit()


class StopFlag:
    """SIGINT/SIGTERM ask a training loop to stop after its current step (flag.signal); a
    second Ctrl-C interrupts at once."""

    def __init__(self):
        self.signal: int | None = None
        self._old: dict[int, Any] = {}

    def __enter__(self):
        for s in (signal.SIGINT, signal.SIGTERM):
            try:
                self._old[s] = signal.signal(s, self._handle)
            except ValueError:  # not the main thread
                pass
        return self

    def _handle(self, signum, frame):
        if self.signal is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signal = signum

    def __exit__(self, *exc):
        for s, h in self._old.items():
            signal.signal(s, h)
