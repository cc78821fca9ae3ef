"""End to end on generated data: train, checkpoint, resume, compare with an uninterrupted run."""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace

import pytest
import torch
from PIL import Image

from ccyclegan.cli.commands import main
from ccyclegan.core.checkpoint import CheckpointError, load_tensors
from ccyclegan.core.config import Config, ConfigError
from ccyclegan.core.generator_files import load_generator
from ccyclegan.train.batches import Batches
from ccyclegan.train.loop import train

TINY = dict(gen_channels=8, disc_channels=8, batch_size=16, log_every=1, ckpt_every=3,
            sample_every=2, n_sample_faces=4, threads=1)


def run(tmp, data, name, **kw):
    cfg = Config(data=str(data), out=str(tmp / name), **{**TINY, **kw})
    return train(cfg, progress_bar=False), cfg


def weights(run_dir):
    tensors, meta = load_tensors(run_dir / "checkpoint.safetensors")
    return tensors, meta


def assert_same_training_state(run_a, run_b):
    """Every tensor of two runs' checkpoints but the RNG states (resumed = uninterrupted)."""
    a, _ = weights(run_a)
    b, _ = weights(run_b)
    assert set(a) == set(b)
    for k in a:
        if not k.startswith("rng"):
            torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6, msg=k)


def test_tiny_run_writes_everything(tmp_path, tiny_csv):
    res, cfg = run(tmp_path, tiny_csv, "a", max_steps=4)
    d = tmp_path / "a"
    assert res["step"] == 4 and res["steps_per_epoch"] == 70 // 16
    assert Config.load(d / "config.json") == cfg
    rows = list(csv.DictReader((d / "metrics.csv").open()))
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4]
    for key in ("loss_D", "loss_G", "D_adv", "D_cl", "G_adv", "G_cl", "G_cyc", "img_per_s"):
        assert float(rows[-1][key]) == float(rows[-1][key])  # present and a number
    grid = Image.open(d / "samples" / "final.png")
    assert grid.width == 8 * (96 + 4) + 4  # input + 7 emotions
    assert (d / "samples" / "step_0000002.png").exists()
    prog = json.loads((d / "checkpoint.json").read_text())["progress"]
    assert prog["step"] == 4
    G, cfg2, _ = load_generator(d)
    assert cfg2 == cfg and G(torch.zeros(1, 1, 48, 48), torch.eye(7)[:1]).shape == (1, 1, 48, 48)


@pytest.mark.parametrize("kw", [
    {},
    {"cycle_mode": "both", "adv_loss": "lsgan", "targets": "all", "ema_decay": 0.9,
     "d_steps_per_g": 2, "label_mode": "planes", "spectral_norm": True, "cl_loss": "sigmoid",
     "d_augment": "color,translation,cutout"},
    {"output": "residual", "r1_gamma": 1.0, "label_mode": "norm"},
    {"output": "attention", "adv_loss": "wgan-gp", "d_steps_per_g": 2, "cycle_mode": "cycle"},
])
def test_resume_matches_uninterrupted(tmp_path, tiny_csv, kw):
    run(tmp_path, tiny_csv, "full", max_steps=6, **kw)
    run(tmp_path, tiny_csv, "split", max_steps=3, **kw)
    cfg = Config(data=str(tiny_csv), out=str(tmp_path / "split"), **{**TINY, **kw}, max_steps=6)
    train(cfg, resume=True, overrides={"max_steps": 6}, progress_bar=False)
    _, ma = weights(tmp_path / "full")
    _, mb = weights(tmp_path / "split")
    assert ma["progress"]["step"] == mb["progress"]["step"] == 6
    assert_same_training_state(tmp_path / "full", tmp_path / "split")
    rows = list(csv.DictReader((tmp_path / "split" / "metrics.csv").open()))
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4, 5, 6]


def test_training_changes_weights_and_lowers_reconstruction(tmp_path, tiny_csv):
    run(tmp_path, tiny_csv, "r", max_steps=30, log_every=10, lr=1e-3, ckpt_every=100)
    rows = list(csv.DictReader((tmp_path / "r" / "metrics.csv").open()))
    assert float(rows[-1]["G_cyc"]) < float(rows[0]["G_cyc"])


def test_resume_refuses_changed_hyperparameters(tmp_path, tiny_csv):
    run(tmp_path, tiny_csv, "c", max_steps=3)
    cfg = Config(data=str(tiny_csv), out=str(tmp_path / "c"))
    with pytest.raises(ConfigError, match="'lr'"):
        train(cfg, resume=True, overrides={"lr": 1e-3}, progress_bar=False)
    with pytest.raises(CheckpointError, match="nothing to resume"):
        train(Config(data=str(tiny_csv), out=str(tmp_path / "none")), resume=True)


def test_corrupt_checkpoint_is_a_clear_error(tmp_path, tiny_csv):
    run(tmp_path, tiny_csv, "k", max_steps=3)
    p = tmp_path / "k" / "checkpoint.safetensors"
    p.write_bytes(p.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="truncated or corrupted"):
        load_tensors(p)


def test_batches_are_a_pure_function_of_step(tiny_csv):
    from ccyclegan.core.data import load_split

    data = load_split(tiny_csv, "train")
    a = Batches(data, 16, 0, True, "random", torch.device("cpu"))
    b = Batches(data, 16, 0, True, "random", torch.device("cpu"))
    for s in (5, 0, 9):
        for t1, t2 in zip(a.get(s), b.get(s), strict=True):
            assert torch.equal(t1, t2)
    _, y, _, y_t = a.get(1)
    assert (y != y_t).all()
    # two ranks of 8 together see exactly the global batch of 16
    r0 = Batches(data, 8, 0, True, "random", torch.device("cpu"), rank=0, world=2)
    r1 = Batches(data, 8, 0, True, "random", torch.device("cpu"), rank=1, world=2)
    x = torch.cat([r0.get(3)[0], r1.get(3)[0]])
    assert torch.equal(x, a.get(3)[0])
    _, y, src, y_t = Batches(data, 4, 0, False, "all", torch.device("cpu")).get(0)
    assert len(y_t) == 24 and all(set(y_t[src == i].tolist()) == set(range(7)) - {int(y[i])}
                                  for i in range(4))


def test_cli_train_and_errors(tmp_path, tiny_csv, capsys):
    out = tmp_path / "cli"
    rc = main(["train", "--data", str(tiny_csv), "--out", str(out), "--max-steps", "2",
               "--gen-channels", "8", "--disc-channels", "8", "--batch-size", "16",
               "--no-flip", "--adv-loss", "hinge", "--no-progress"])
    assert rc == 0
    cfg = Config.load(out / "config.json")
    assert (cfg.flip, cfg.adv_loss, cfg.max_steps) == (False, "hinge", 2)
    rc = main(["train", "--data", str(tmp_path / "missing.csv"), "--out", str(out / "x"),
               "--no-progress"])
    assert rc == 2 and "missing.csv" in capsys.readouterr().err


def test_ctrl_c_saves_a_checkpoint_and_resumes(tmp_path, tiny_csv):
    out = tmp_path / "sig"
    cmd = [sys.executable, "-m", "ccyclegan", "train", "--data", str(tiny_csv), "--out",
           str(out), "--max-steps", "100000", "--gen-channels", "8", "--disc-channels", "8",
           "--batch-size", "16", "--log-every", "1", "--ckpt-every", "100000",
           "--sample-every", "100000", "--threads", "1", "--no-progress"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    deadline = time.time() + 60
    while time.time() < deadline and not (out / "metrics.csv").exists():
        time.sleep(0.2)
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err.decode()
    _, meta = load_tensors(out / "checkpoint.safetensors")
    step = meta["progress"]["step"]
    assert step >= 1 and b"--resume" in err
    cfg = Config.load(out / "config.json")
    res = train(cfg, resume=True, overrides={"max_steps": step + 2}, progress_bar=False)
    assert res["step"] == step + 2


def test_linear_lr_decay_schedule_and_run(tmp_path, tiny_csv):
    """CycleGAN's schedule: constant for the first half of the steps, then linearly to 0."""
    from ccyclegan.train.loop import lr_at

    cfg = Config(lr=1e-3, lr_decay="linear")
    lrs = [lr_at(cfg, s, 10) for s in range(10)]
    assert lrs[:6] == [1e-3] * 6
    assert lrs[5:] == pytest.approx([1e-3, 8e-4, 6e-4, 4e-4, 2e-4])
    assert all(lr_at(Config(lr=1e-3), s, 10) == 1e-3 for s in range(10))
    with pytest.raises(ConfigError, match="lr_decay"):
        Config(lr_decay="cosine")
    run(tmp_path, tiny_csv, "flat", max_steps=4)
    run(tmp_path, tiny_csv, "decay", max_steps=4, lr_decay="linear")
    a, _ = weights(tmp_path / "flat")
    b, _ = weights(tmp_path / "decay")
    g = [k for k in a if k.startswith("G.")]
    # steps 0-2 share the lr; the last step (3 of 4) runs at half of it, so the runs part
    assert any(not torch.equal(a[k], b[k]) for k in g)


def test_expression_classifier_loss_trains_g_towards_its_targets(tmp_path, tiny_csv,
                                                                 tiny_artifacts):
    """lambda_expr: a frozen classifier's cross-entropy on the translations joins G's loss
    (logged as G_expr), resumes exactly, and never changes the classifier itself."""
    from ccyclegan.classifier.nets import load_classifier

    clf = str(tiny_artifacts["classifier"])
    kw = dict(output="residual", expr_classifier=f"{clf},{clf}", lambda_expr=2.0)
    run(tmp_path, tiny_csv, "full", max_steps=4, **kw)
    run(tmp_path, tiny_csv, "split", max_steps=2, **kw)
    cfg = Config(data=str(tiny_csv), out=str(tmp_path / "split"), **{**TINY, **kw}, max_steps=4)
    train(cfg, resume=True, overrides={"max_steps": 4}, progress_bar=False)
    assert_same_training_state(tmp_path / "full", tmp_path / "split")
    rows = list(csv.DictReader((tmp_path / "full" / "metrics.csv").open()))
    assert all(float(r["G_expr"]) > 0 for r in rows)
    before, _ = load_classifier(clf)
    after = load_tensors(tiny_artifacts["classifier"])[0]
    for k, v in before.state_dict().items():
        torch.testing.assert_close(v, after[k].to(v.dtype), msg=k)
    with pytest.raises(ConfigError, match="expr_classifier"):
        Config(lambda_expr=1.0)
    with pytest.raises(ConfigError, match="expr_confidence"):
        Config(expr_confidence=1.0)


def test_change_penalty_makes_g_edit_less(tmp_path, tiny_csv):
    """lambda_change: the mean |G(x|t) - x| over translations joins G's loss (logged as
    G_change); with a large weight the trained G changes faces less than without it."""
    from ccyclegan.core.data import read_fer2013_csv

    x = read_fer2013_csv(tiny_csv)["Training"].images[:32].float() / 127.5 - 1
    t = torch.eye(7)[torch.arange(len(x)) % 7]

    def change(name, **kw):
        run(tmp_path, tiny_csv, name, max_steps=8, lr=1e-3, output="residual", **kw)
        G, _, _ = load_generator(tmp_path / name)
        with torch.no_grad():
            return (G(x, t) - x).abs().mean().item()

    free, sparse = change("free"), change("sparse", lambda_change=30.0)
    assert sparse < 0.5 * free
    rows = list(csv.DictReader((tmp_path / "sparse" / "metrics.csv").open()))
    assert all(float(r["G_change"]) >= 0 for r in rows)
    assert "G_change" not in next(csv.DictReader((tmp_path / "free" / "metrics.csv").open()))
    with pytest.raises(ConfigError, match="lambda_change"):
        Config(lambda_change=-1.0)


def test_max_minutes_stops_a_run_and_resume_spends_the_rest(tmp_path, tiny_csv):
    """--max-minutes: a finished run (final grid) once the training time is spent, summed over
    resumes, so settings whose steps cost differently compare at equal wall-clock."""
    res, cfg = run(tmp_path, tiny_csv, "t", max_steps=1000, max_minutes=1e-6)
    assert res["interrupted"] is None and res["step"] == 1  # the first log step ends it
    assert (tmp_path / "t" / "samples" / "final.png").is_file()
    _, meta = weights(tmp_path / "t")
    spent = meta["progress"]["train_seconds"]
    assert spent > 0
    res = train(replace(cfg, max_minutes=spent / 60 + 1e-6), resume=True,
                overrides={"max_minutes": spent / 60 + 1e-6}, progress_bar=False)
    assert res["step"] == 2  # the budget was already spent but for one more log window
    _, meta = weights(tmp_path / "t")
    assert meta["progress"]["train_seconds"] > spent


def test_max_minutes_stops_within_a_step_between_log_steps(tmp_path, tiny_csv):
    """A single process checks the budget every step, not only at --log-every steps."""
    res, _ = run(tmp_path, tiny_csv, "t", max_steps=1000, max_minutes=1e-6, log_every=500,
                 ckpt_every=500, sample_every=500)
    assert res["step"] == 1 and res["interrupted"] is None
    rows = list(csv.DictReader((tmp_path / "t" / "metrics.csv").open()))
    assert [r["step"] for r in rows] == ["1"]


def test_distillation_alone_trains_g_towards_the_teacher_and_no_d(tmp_path, tiny_csv):
    """--teacher with --lambda-adv 0 --lambda-cl 0: G learns the teacher's edits (G_distill
    falls), D is never trained; --init-from starts G from another generator's weights (a warp
    G from an attention one: its field starts at zero, so it starts as that generator)."""
    from ccyclegan.core.data import read_fer2013_csv
    from ccyclegan.core.models import one_hot

    run(tmp_path, tiny_csv, "teacher", max_steps=6, output="attention", label_mode="norm")
    teacher = tmp_path / "teacher" / "generator.safetensors"
    kw = dict(output="warp", label_mode="norm", teacher=str(teacher), lambda_distill=1.0,
              lambda_adv=0.0, lambda_cl=0.0, lambda_cyc=0.0, lr=2e-3)
    run(tmp_path, tiny_csv, "start", max_steps=1, lr=1e-12, init_from=str(teacher),
        **{k: v for k, v in kw.items() if k != "lr"})
    x = read_fer2013_csv(tiny_csv)["Training"].images[:14].float() / 127.5 - 1
    c = one_hot(torch.arange(14) % 7)
    T, _, _ = load_generator(teacher)
    S, _, _ = load_generator(tmp_path / "start")
    with torch.no_grad():
        torch.testing.assert_close(S(x, c), T(x, c), atol=1e-4, rtol=0)
    res, _ = run(tmp_path, tiny_csv, "student", max_steps=12, **kw)
    rows = list(csv.DictReader((tmp_path / "student" / "metrics.csv").open()))
    assert float(rows[-1]["G_distill"]) < 0.8 * float(rows[0]["G_distill"])
    assert all(r["loss_D"] == "" and float(r["G_flow"]) >= 0 for r in rows)
    tensors, _ = weights(tmp_path / "student")
    assert not any(k.startswith("opt_D.") and "exp_avg" in k for k in tensors)  # D never stepped
    with pytest.raises(ConfigError, match="teacher"):
        Config(lambda_distill=1.0)
    with pytest.raises(CheckpointError, match="does not fit"):
        run(tmp_path, tiny_csv, "wrong", max_steps=1, init_from=str(teacher), gen_channels=16)


def test_progress_lines_count_down_the_budget(tmp_path, tiny_csv, capsys):
    """Without a bar, each metrics row prints a line whose time left is the --max-minutes budget
    when that ends the run first (not the time to finish every epoch)."""
    run(tmp_path, tiny_csv, "t", max_steps=100000, max_minutes=0.05, log_every=1,
        ckpt_every=100000, sample_every=100000, epochs=10000)
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("step ")]
    assert lines, "no progress line"
    left = [int(ln.rsplit("~", 1)[1].split()[0]) for ln in lines if "min left" in ln]
    assert left and max(left) == 0  # 3 s of budget; all 100,000 steps would take hours
