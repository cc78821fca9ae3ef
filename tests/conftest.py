import os
from pathlib import Path

import pytest

REAL_FER = Path(os.environ.get(
    "CCYCLEGAN_FER2013",
    Path(__file__).resolve().parents[2] / "shared/data/fer2013/fer2013.csv.gz"))


@pytest.fixture(scope="session")
def tiny_csv(tmp_path_factory):
    """A small FER2013-format CSV of generated faces: 10 train + 3 test faces per emotion."""
    from ccyclegan.data import synthetic_faces, write_fer2013_csv

    path = tmp_path_factory.mktemp("data") / "tiny.csv"
    write_fer2013_csv(path, {"Training": synthetic_faces(10, seed=1),
                             "PublicTest": synthetic_faces(3, seed=2)})
    return path
