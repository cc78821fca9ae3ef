"""The docs' figure scripts run (on a tiny random generator), so a figure's command cannot rot."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
from PIL import Image

DOCS = Path(__file__).resolve().parents[1] / "docs"


@pytest.fixture(scope="module")
def figures():
    spec = importlib.util.spec_from_file_location("figures", DOCS / "figures.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["figures"] = module
    spec.loader.exec_module(module)
    return module


def test_photos_figure(figures, gen_path, tmp_path):
    pytest.importorskip("skimage.data")
    out = tmp_path / "photos.jpg"
    figures.main(["photos", "--checkpoint", str(gen_path), "-o", str(out)])
    with Image.open(out) as img:
        assert img.width > 8 * 96 and img.height > 3 * (96 + 96)  # 3 photos, 2 rows each


def test_faces_figure(figures, gen_path, tmp_path, astronaut):
    photo = tmp_path / "astro.png"
    Image.fromarray(astronaut).save(photo)
    out = tmp_path / "faces.jpg"
    figures.main(["faces", str(photo), "--checkpoint", str(gen_path), "-o", str(out)])
    with Image.open(out) as img:  # one face: its native region (~105 px) and the crops
        assert img.width >= 8 * 96 and 96 + 96 < img.height < 400
