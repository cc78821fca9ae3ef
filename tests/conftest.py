import os
from pathlib import Path

import pytest
import torch

REAL_FER = Path(os.environ.get(
    "CCYCLEGAN_FER2013",
    Path(__file__).resolve().parents[2] / "shared/data/fer2013/fer2013.csv.gz"))


@pytest.fixture(scope="session")
def tiny_csv(tmp_path_factory):
    """A small FER2013-format CSV of generated faces: 10 train + 3 test faces per emotion."""
    from ccyclegan.core.data import write_fer2013_csv
    from ccyclegan.core.synthetic import synthetic_faces

    path = tmp_path_factory.mktemp("data") / "tiny.csv"
    write_fer2013_csv(path, {"Training": synthetic_faces(10, seed=1),
                             "PublicTest": synthetic_faces(3, seed=2)})
    return path


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a module: on a small shared CPU it avoids oversubscription."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def gen_path(tmp_path_factory):
    """A tiny randomly initialised generator checkpoint: enough to test the plumbing."""
    from ccyclegan.core.config import Config
    from ccyclegan.core.generator_files import save_generator
    from ccyclegan.core.models import Generator

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "generator.safetensors"
    save_generator(path, Generator(8), Config(gen_channels=8), {})
    return path


@pytest.fixture(scope="module")
def astronaut():
    """scikit-image's astronaut photo (a real photograph with one face)."""
    return pytest.importorskip("skimage.data").astronaut()


@pytest.fixture(scope="session")
def tiny_artifacts(tmp_path_factory, tiny_csv):
    """A 2-step training run (checkpoint + generator) and a small classifier, for the loader
    tests. Shared: tests copy these files before changing them."""
    from ccyclegan.classifier.config import ClassifierConfig
    from ccyclegan.classifier.nets import _save_model, build_classifier
    from ccyclegan.core.config import Config
    from ccyclegan.train.loop import train

    root = tmp_path_factory.mktemp("artifacts")
    cfg = Config(data=str(tiny_csv), out=str(root / "run"), gen_channels=8, disc_channels=8,
                 batch_size=16, threads=1, max_steps=2, sample_every=100000)
    train(cfg, progress_bar=False)
    ccfg = ClassifierConfig(width=4, feature_dim=8)
    torch.manual_seed(0)
    _save_model(root / "classifier.safetensors", build_classifier(ccfg), ccfg, {})
    return {"generator": root / "run" / "generator.safetensors",
            "checkpoint": root / "run" / "checkpoint.safetensors",
            "classifier": root / "classifier.safetensors", "cfg": cfg}
