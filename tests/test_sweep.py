"""`ccyclegan sweep` on generated data: every setting trained and evaluated, table and plot
written, a second call resumes/skips instead of redoing work."""

import csv
import json

import pytest
import torch

from ccyclegan.classifier.config import ClassifierConfig
from ccyclegan.classifier.nets import EmotionNet, _save_model
from ccyclegan.cli.commands import main
from ccyclegan.core.config import Config, ConfigError
from ccyclegan.evaluate.sweep import setting_name, sweep
from ccyclegan.train.loop import train

BASE = dict(gen_channels=8, disc_channels=8, batch_size=16, log_every=1, ckpt_every=100,
            sample_every=100, n_sample_faces=2)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture()
def clf_dir(tmp_path):
    torch.manual_seed(0)
    d = tmp_path / "clf"
    d.mkdir()
    _save_model(d / "classifier.safetensors", EmotionNet(4, 8).eval(),
                ClassifierConfig(width=4, feature_dim=8), {"epoch": 1, "val_acc": None})
    return d


def test_sweep_trains_evaluates_and_resumes(tmp_path, tiny_csv, clf_dir, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    out = tmp_path / "sweep"
    # one setting was stopped after 1 of its 2 steps
    train(Config(data=str(tiny_csv), out=str(out / setting_name(2e-4, 1, 1)), lr=2e-4,
                 max_steps=1, threads=1, **BASE), progress_bar=False)
    lines = []
    kw = dict(eval_limit=7, seed=0, base=BASE, threads=1, progress_bar=False, log=lines.append)
    res = sweep(str(tiny_csv), out, clf_dir, [1e-4, 2e-4], [1.0], [1.0], 2, **kw)
    assert not res["interrupted"] and len(res["rows"]) == 2
    assert any("lr0.0001_cl1_cyc1: training" in s for s in lines)
    assert any("lr0.0002_cl1_cyc1: resuming at step 1" in s for s in lines)
    for name in ("sweep.csv", "sweep.md", "sweep.png", "sweep.json"):
        assert (out / name).is_file()
    rows = list(csv.DictReader((out / "sweep.csv").open()))
    assert [r["setting"] for r in rows] == ["lr0.0001_cl1_cyc1", "lr0.0002_cl1_cyc1"]
    assert all(int(r["steps"]) == 2 and float(r["fed_mean_targets"]) >= 0 for r in rows)
    for r in rows:
        m = json.loads((out / r["setting"] / "eval" / "metrics.json").read_text())
        assert m["sample"]["faces"] == 7 and m["generator_step"] == 2
        cfg = json.loads((out / r["setting"] / "config.json").read_text())
        assert cfg["lr"] == float(r["lr"]) and cfg["gen_channels"] == 8
    table = (out / "sweep.md").read_text()
    assert "| lr0.0001_cl1_cyc1 | 0.0001 | 1 | 1 |" in table
    # a second call does no work: trained and evaluated settings are reused
    lines.clear()
    before = (out / "lr0.0001_cl1_cyc1" / "eval" / "metrics.json").stat().st_mtime_ns
    res2 = sweep(str(tiny_csv), out, clf_dir, [1e-4, 2e-4], [1.0], [1.0], 2, **kw)
    assert res2["rows"] == res["rows"]
    assert all("trained (2 steps)" in s for s in lines if s.startswith("sweep ["))
    assert (out / "lr0.0001_cl1_cyc1" / "eval" / "metrics.json").stat().st_mtime_ns == before


def test_sweep_arguments(tmp_path, tiny_csv, clf_dir):
    with pytest.raises(ConfigError, match="max-steps"):
        sweep(str(tiny_csv), tmp_path, clf_dir, [1e-4], [1.0], [1.0], 0)
    with pytest.raises(ConfigError, match="axis"):
        sweep(str(tiny_csv), tmp_path, clf_dir, [], [1.0], [1.0], 2)
    assert main(["sweep", "--data", str(tiny_csv), "--out", str(tmp_path / "s"),
                 "--classifier", str(clf_dir), "--lr", "-1", "--lambda-cl", "1",
                 "--lambda-cyc", "1", "--max-steps", "1"]) == 2  # lr must be > 0
