"""The emotion classifier: learns generated faces quickly, saves/loads, resumes exactly,
selects on validation (never test), and the CLI verb."""

import csv
import json

import pytest
import torch
from conftest import REAL_FER

from ccyclegan.classifier.config import ClassifierConfig
from ccyclegan.classifier.nets import (
    EmotionNet,
    classify,
    confusion_matrix,
    export_classifier,
    features,
    load_classifier,
    predict,
)
from ccyclegan.classifier.train import (
    augment,
    class_weights,
    l2_attack,
    logit_bias,
    lr_at,
    set_logit_bias,
    split_validation,
    train_classifier,
)
from ccyclegan.cli.commands import main
from ccyclegan.core.checkpoint import CheckpointError, load_tensors
from ccyclegan.core.config import ConfigError
from ccyclegan.core.data import load_split, write_fer2013_csv
from ccyclegan.core.synthetic import synthetic_faces

TINY = dict(width=8, feature_dim=32, dropout=0.1, batch_size=16, val_fraction=0.1, threads=1,
            optimizer="adamw")


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def faces_csv(tmp_path_factory):
    path = tmp_path_factory.mktemp("clf") / "faces.csv"
    write_fer2013_csv(path, {"Training": synthetic_faces(30, seed=1),
                             "PublicTest": synthetic_faces(10, seed=2)})
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory, faces_csv):
    out = tmp_path_factory.mktemp("clf") / "run"
    cfg = ClassifierConfig(data=str(faces_csv), out=str(out), epochs=8, **TINY)
    return train_classifier(cfg, log=lambda _: None), out


def test_learns_generated_faces_well_above_chance(trained):
    summary, out = trained
    assert summary["test"]["accuracy"] > 0.45  # chance is 1/7
    assert summary["test"]["n"] == 70
    counts = summary["data"].pop("train_class_counts")
    assert summary["data"] == {"n_train": 189, "n_val": 21, "n_test": 70, "n_blank_dropped": 0}
    assert sum(counts) == 189 and len(counts) == 7 and summary["logit_bias"] is None
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    assert [int(r["epoch"]) for r in rows] == list(range(1, 9))
    assert float(rows[-1]["loss"]) < float(rows[0]["loss"])


def test_run_directory_and_loading(trained, faces_csv):
    summary, out = trained
    for name in ("classifier.safetensors", "classifier.json", "last.safetensors",
                 "state.safetensors", "metrics.csv", "confusion.png", "config.json"):
        assert (out / name).is_file(), name
    info = json.loads((out / "classifier.json").read_text())
    info["data"].pop("train_class_counts")
    assert info == json.loads(json.dumps(summary))
    cm = info["test"]["confusion"]
    assert sum(map(sum, cm)) == 70 and sum(cm[k][k] for k in range(7)) / 70 == \
        pytest.approx(info["test"]["accuracy"])
    # the judge is the best validation epoch; the test split played no part in choosing it
    vals = [float(r["val_acc"]) for r in csv.DictReader((out / "metrics.csv").open())]
    assert info["val_acc"] == pytest.approx(max(vals), abs=1e-5)
    assert info["selected_epoch"] == max(i + 1 for i, v in enumerate(vals) if v == max(vals))
    model, meta = load_classifier(out)
    assert meta["kind"] == "classifier" and not model.training
    test = load_split(faces_csv, "test")
    p = predict(model, test.images)
    assert p.shape == (70, 7) and torch.allclose(p.sum(1), torch.ones(70), atol=1e-5)
    assert (p.argmax(1) == test.labels).float().mean().item() == \
        pytest.approx(info["test"]["accuracy"])
    f = features(model, test.images[:5])
    assert f.shape == (5, 32) and (f >= 0).all()  # after ReLU
    # float input in [-1, 1] gives the same as uint8
    p2, f2 = classify(model, test.images[:5].float() / 127.5 - 1)
    assert torch.allclose(p2, p[:5], atol=1e-6) and torch.allclose(f2, f, atol=1e-6)
    last, _ = load_classifier(out / "last.safetensors")
    assert isinstance(last, EmotionNet)
    (out / "broken.safetensors").write_bytes(b"garbage")
    with pytest.raises(CheckpointError):
        load_classifier(out / "broken.safetensors")


def test_resume_reproduces_an_uninterrupted_run(tmp_path, faces_csv):
    kw = dict(data=str(faces_csv), epochs=3, **{**TINY, "width": 4, "feature_dim": 8})
    train_classifier(ClassifierConfig(out=str(tmp_path / "full"), **kw), log=lambda _: None)

    def stop_in_epoch_2(msg):
        if msg.startswith("epoch 2/"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_classifier(ClassifierConfig(out=str(tmp_path / "split"), **kw),
                         log=stop_in_epoch_2)
    _, meta = load_tensors(tmp_path / "split" / "state.safetensors")
    assert meta["progress"]["epoch"] == 1
    train_classifier(ClassifierConfig(out=str(tmp_path / "split"), **kw), resume=True,
                     overrides={"out": str(tmp_path / "split")}, log=lambda _: None)
    a, _ = load_tensors(tmp_path / "full" / "last.safetensors")
    b, _ = load_tensors(tmp_path / "split" / "last.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    ra = list(csv.DictReader((tmp_path / "full" / "metrics.csv").open()))
    rb = list(csv.DictReader((tmp_path / "split" / "metrics.csv").open()))
    strip = ("seconds", "img_per_s")
    assert [{k: v for k, v in r.items() if k not in strip} for r in ra] == \
        [{k: v for k, v in r.items() if k not in strip} for r in rb]
    with pytest.raises(ConfigError, match="width"):
        train_classifier(ClassifierConfig(out=str(tmp_path / "split"), **kw), resume=True,
                         overrides={"width": 8}, log=lambda _: None)
    with pytest.raises(CheckpointError, match="nothing to resume"):
        train_classifier(ClassifierConfig(out=str(tmp_path / "none"), **kw), resume=True)


def test_augment_and_schedule():
    x = torch.rand(4, 1, 48, 48) * 2 - 1
    cfg = ClassifierConfig(shift=0, scale=0, rotate=0, flip=False, jitter=0)
    assert torch.allclose(augment(x, cfg, torch.Generator().manual_seed(0)), x, atol=1e-5)
    cfg = ClassifierConfig()
    a = augment(x, cfg, torch.Generator().manual_seed(1))
    assert torch.equal(a, augment(x, cfg, torch.Generator().manual_seed(1)))
    assert not torch.allclose(a, x, atol=1e-2) and a.min() >= -1 and a.max() <= 1
    mirror = ClassifierConfig(shift=0, scale=0, rotate=0, flip=True, jitter=0)
    m = augment(x, mirror, torch.Generator().manual_seed(2))
    for i in range(4):  # each face either unchanged or mirrored
        assert torch.allclose(m[i], x[i], atol=1e-5) or torch.allclose(m[i], x[i].flip(-1),
                                                                        atol=1e-5)
    cfg = ClassifierConfig(lr=0.1, warmup=0.2)
    assert lr_at(0, 100, cfg) == pytest.approx(0.1 / 25)
    assert lr_at(20, 100, cfg) == pytest.approx(0.1)
    assert lr_at(100, 100, cfg) == pytest.approx(1e-5)
    assert ClassifierConfig(optimizer="adamw").base_lr == 2e-3


def test_validation_split_is_stratified_and_disjoint():
    data = synthetic_faces(20, seed=0)
    tr, va = split_validation(data, 0.1, seed=0)
    assert len(tr) + len(va) == len(data) and va.class_counts() == [2] * 7
    tr2, va2 = split_validation(data, 0.1, seed=0)
    assert torch.equal(va.images, va2.images)
    rows = {bytes(t.flatten().tolist()) for t in tr.images}
    assert not any(bytes(v.flatten().tolist()) in rows for v in va.images)


def test_confusion_matrix():
    cm = confusion_matrix([0, 0, 1, 6], [0, 1, 1, 0])
    assert cm.shape == (7, 7) and cm[0, 0] == 1 and cm[0, 1] == 1 and cm[1, 1] == 1
    assert cm[6, 0] == 1 and cm.sum() == 4


def test_balanced_class_weights_give_every_class_the_same_total_weight():
    labels = torch.tensor([3] * 50 + [1] * 2 + [0] * 10 + [6] * 8)  # classes 2, 4, 5 absent
    assert class_weights(labels, "none") is None
    w = class_weights(labels, "balanced")
    per_class = torch.bincount(labels, weights=w[labels], minlength=7)
    present = torch.tensor([1, 1, 0, 1, 0, 0, 1], dtype=torch.bool)
    torch.testing.assert_close(per_class[present], torch.full((4,), 70 / 7))
    assert (w[~present] == 0).all() and w[1] > w[0] > w[3]  # the rarest weighs most
    with pytest.raises(ConfigError, match="class_weight"):
        ClassifierConfig(class_weight="inverse")


def test_l2_attack_raises_the_loss_inside_the_ball_and_the_pixel_range():
    torch.manual_seed(0)
    model = EmotionNet(width=4, feature_dim=8, dropout=0.0).eval()  # deterministic
    x = torch.rand(6, 1, 48, 48) * 2 - 1
    x[0] = 1.0  # a saturated face: the attack may not leave [-1, 1]
    y = torch.arange(6)
    adv = l2_attack(model, x, y, eps=0.5, steps=3)
    assert (adv - x).flatten(1).norm(dim=1).max() <= 0.5 + 1e-5
    assert adv.min() >= -1 and adv.max() <= 1 and not adv.requires_grad
    with torch.no_grad():
        clean = torch.nn.functional.cross_entropy(model(x), y)
        worse = torch.nn.functional.cross_entropy(model(adv), y)
    assert worse > clean
    happy = torch.full((6,), 3)
    closer = l2_attack(model, x, happy, eps=0.5, steps=3, targeted=True)
    assert (closer - x).flatten(1).norm(dim=1).max() <= 0.5 + 1e-5
    with torch.no_grad():
        assert (torch.nn.functional.cross_entropy(model(closer), happy)
                < torch.nn.functional.cross_entropy(model(x), happy))
    with pytest.raises(ConfigError, match="adv_eps"):
        ClassifierConfig(adv_eps=-1.0)
    with pytest.raises(ConfigError, match="adv_steps"):
        ClassifierConfig(adv_steps=0)


def test_config_validation():
    with pytest.raises(ConfigError, match="width"):
        ClassifierConfig(width=0)
    with pytest.raises(ConfigError, match="val_fraction"):
        ClassifierConfig(val_fraction=1.0)
    with pytest.raises(ConfigError, match="optimizer"):
        ClassifierConfig(optimizer="rmsprop")
    with pytest.raises(ConfigError, match="unknown"):
        ClassifierConfig.from_dict({"widht": 3})


def test_cli_train_classifier(tmp_path, faces_csv, capsys):
    rc = main(["train-classifier", "--data", str(faces_csv), "--out", str(tmp_path / "c"),
               "--epochs", "1", "--width", "4", "--feature-dim", "8", "--batch-size", "32",
               "--threads", "1", "--no-flip", "--class-weight", "balanced",
               "--adv-eps", "0.5", "--adv-steps", "1"])
    assert rc == 0
    assert "test accuracy" in capsys.readouterr().out
    cfg = json.loads((tmp_path / "c" / "config.json").read_text())
    assert cfg["flip"] is False and cfg["width"] == 4 and cfg["class_weight"] == "balanced"
    assert cfg["adv_eps"] == 0.5 and cfg["adv_steps"] == 1
    assert main(["train-classifier", "--data", str(faces_csv), "--out", str(tmp_path / "d"),
                 "--width", "-1"]) == 2
    assert main(["train-classifier", "--data", str(tmp_path / "missing.csv"),
                 "--out", str(tmp_path / "e")]) == 2


@pytest.mark.skipif(not REAL_FER.exists(), reason=f"real FER2013 not at {REAL_FER}")
def test_real_fer2013_smoke(tmp_path):
    cfg = ClassifierConfig(data=str(REAL_FER), out=str(tmp_path / "r"), epochs=1, width=4,
                           feature_dim=8, limit=256, batch_size=64, threads=1)
    summary = train_classifier(cfg, log=lambda _: None)
    assert summary["data"]["n_train"] + summary["data"]["n_val"] == 256
    assert summary["test"]["n"] == 3589  # the whole PublicTest split


def test_unknown_config_fields_are_named_on_one_line():
    """A garbled file's keys can hold newlines (found by the metadata fuzz test)."""
    from ccyclegan.classifier.config import ClassifierConfig
    from ccyclegan.core.config import Config

    for cls in (ClassifierConfig, Config):
        with pytest.raises(ConfigError) as e:
            cls.from_dict({"bad\nkey": 1, **{f"k{i}": 0 for i in range(6)}}, source="m.json")
        msg = str(e.value)
        assert "\n" not in msg and "bad\\nkey" in msg and msg.endswith(" ...")


def test_resnet_judge_learns_and_loads_as_its_own_family(tmp_path, faces_csv):
    """--arch resnet: the second judge's family trains, is selected and loads back as a
    ResNetEmotion with the same interface (probabilities and FED features)."""
    from ccyclegan.classifier.nets import ResNetEmotion

    cfg = ClassifierConfig(data=str(faces_csv), out=str(tmp_path / "res"), epochs=15,
                           arch="resnet", **{**TINY, "optimizer": "sgd", "label_smoothing": 0.0})
    summary = train_classifier(cfg, log=lambda _: None)
    rows = list(csv.DictReader((tmp_path / "res" / "metrics.csv").open()))
    assert float(rows[-1]["loss"]) < 0.8 * float(rows[0]["loss"])
    assert summary["test"]["accuracy"] > 0.3  # chance is 1/7
    model, meta = load_classifier(tmp_path / "res")
    assert isinstance(model, ResNetEmotion) and meta["config"]["arch"] == "resnet"
    probs, feats = classify(model, load_split(faces_csv, "test").images[:5])
    assert probs.shape == (5, 7) and feats.shape == (5, 32)
    torch.testing.assert_close(probs.sum(1), torch.ones(5))
    with pytest.raises(ConfigError, match="arch"):
        ClassifierConfig(arch="vit")


def test_resnet_projection_is_a_strided_1x1_conv():
    """The block's projection (slice, then 1x1 conv; a workaround for a oneDNN crash) computes
    what a strided 1x1 conv with the same weights does, so judges trained before load alike."""
    from torch.nn.functional import conv2d, relu

    from ccyclegan.classifier.nets import _Block

    torch.manual_seed(0)
    block = _Block(8, 16, 2).eval()
    for n in (48, 3):  # even and odd sizes
        x = torch.randn(2, 8, n, n)
        h = relu(block.bn1(x))
        ref = conv2d(h, block.proj.weight, stride=2) + block.conv2(relu(block.bn2(block.conv1(h))))
        assert torch.allclose(block(x), ref, atol=1e-5)


def test_sigterm_stops_classifier_training_and_resume_continues(tmp_path, tiny_csv):
    """The run layer shared with the GAN (core/run.py): SIGTERM stops between two steps, exit
    143, the state of the last finished epoch intact and metrics.csv with its rows; --resume
    continues from there."""
    import os
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "clf"
    cmd = [sys.executable, "-m", "ccyclegan", "train-classifier", "--data", str(tiny_csv),
           "--out", str(out), "--width", "4", "--feature-dim", "8", "--epochs", "150",
           "--batch-size", "8", "--threads", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    deadline = time.time() + 60
    while time.time() < deadline and not (out / "state.safetensors").exists():
        time.sleep(0.1)
    time.sleep(0.3)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err.decode()
    assert b"--resume" in err
    rows = (out / "metrics.csv").read_text().splitlines()
    assert rows[0].startswith("epoch,loss,train_acc,val_acc,lr") and len(rows) >= 2
    done = int(rows[-1].split(",")[0])
    assert done < 150  # stopped early
    r = subprocess.run([*cmd, "--resume"], capture_output=True, timeout=300)
    assert r.returncode == 0, r.stderr.decode()
    rows = (out / "metrics.csv").read_text().splitlines()
    assert [int(x.split(",")[0]) for x in rows[1:]] == list(range(1, 151))


def test_logit_adjustment_rescores_a_finished_run_and_exports_baked_in(tmp_path, trained,
                                                                       faces_csv):
    """--logit-adjust: -tau log(class share) is added to the saved judge's logits (rare classes
    gain), a finished run is rescored with a new tau on --resume, and export bakes it in."""
    import math
    import shutil

    bias = logit_bias([900, 10, 90, 0, 0, 0, 0], 0.5)
    assert bias[1] - bias[0] == pytest.approx(0.5 * math.log(90)) and all(map(math.isfinite, bias))
    assert logit_bias([1] * 7, 0.0) is None
    _, out = trained
    run = tmp_path / "run"
    shutil.copytree(out, run)
    test = load_split(faces_csv, "test")
    raw = predict(load_classifier(run)[0], test.images, tta=False)
    set_logit_bias(run / "classifier.safetensors", [0.0, 50.0, 0, 0, 0, 0, 0])
    assert (predict(load_classifier(run)[0], test.images).argmax(1) == 1).all()
    tensors, _ = load_tensors(run / "classifier.safetensors")  # the weights as trained
    before, _ = load_tensors(out / "classifier.safetensors")
    assert all(torch.equal(tensors[k], v) for k, v in before.items())

    summary = train_classifier(ClassifierConfig(data=str(faces_csv), out=str(run)), resume=True,
                               overrides={"out": str(run), "logit_adjust": 1.0},
                               log=lambda _: None)
    counts = summary["data"]["train_class_counts"]
    assert summary["config"]["logit_adjust"] == 1.0
    assert summary["logit_bias"] == pytest.approx(logit_bias(counts, 1.0), abs=1e-5)
    _, meta = load_classifier(run)
    assert meta["logit_bias"] == summary["logit_bias"]
    shares = torch.tensor(counts, dtype=torch.float) / sum(counts)
    want = raw / shares  # softmax(z - log p) is proportional to softmax(z) / p
    adjusted = predict(load_classifier(run)[0], test.images, tta=False)
    assert torch.allclose(adjusted, want / want.sum(1, keepdim=True), atol=1e-5)

    exported = export_classifier(run, tmp_path / "judge.safetensors", half=False)
    model, meta = load_classifier(exported)
    assert "logit_bias" not in meta and meta["logit_bias_applied"] == summary["logit_bias"]
    assert torch.allclose(predict(model, test.images, tta=False), adjusted, atol=1e-5)
    set_logit_bias(run / "classifier.safetensors", [0.0] * 6)
    with pytest.raises(CheckpointError, match="logit_bias"):
        load_classifier(run)
