"""The photo benchmark's parts (ccyclegan.evaluate.photos): the independent detector path finds and
frames a face as FER2013 does, the record of an untouched photo reads as untouched, and the
summary scores what the judges read. Needs the eval extra (dlib); skips without it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ccyclegan.classifier.config import ClassifierConfig
from ccyclegan.classifier.nets import build_classifier
from ccyclegan.core.data import EMOTIONS
from ccyclegan.evaluate.identity import IdentityModelError
from ccyclegan.evaluate.photos import (
    FaceRecord,
    PhotoReader,
    compare,
    face_bootstrap,
    grin,
    laplacian_variance,
    match,
    sharpness,
    summarize,
    translate_and_judge,
)
from ccyclegan.translate.api import ExpressionTranslator
from ccyclegan.translate.faces import Box, detect_faces, frame_box

pytest.importorskip("skimage.data")


@pytest.fixture(scope="module")
def reader():
    try:
        return PhotoReader()
    except IdentityModelError as e:
        pytest.skip(str(e))


@pytest.fixture(scope="module")
def photo_file(astronaut, tmp_path_factory):
    from PIL import Image

    path = tmp_path_factory.mktemp("photos") / "astronaut.png"
    Image.fromarray(astronaut).save(path)
    return path


def test_landmark_frame_agrees_with_the_editing_frame(reader, astronaut):
    """Two detectors, one framing: the FER frame from dlib's landmarks lies on the frame the
    translator edits (from OpenCV's Haar box): centres within a tenth of the side."""
    (haar,) = detect_faces(astronaut)
    edit = frame_box(haar)
    found = match(edit, reader.find(astronaut))
    assert found is not None
    fer = found.fer_frame()
    assert abs(fer.w - edit.w) < 0.15 * edit.w  # FER faces themselves vary by about 10 %
    assert abs(fer.x + fer.w / 2 - edit.x - edit.w / 2) < 0.1 * edit.w
    assert abs(fer.y + fer.h / 2 - edit.y - edit.h / 2) < 0.1 * edit.w
    assert match(Box(0, 0, 40, 40), [found]) is None  # elsewhere: no face


def test_sharpness_falls_with_blur(astronaut):
    import cv2

    frame = Box(160, 50, 130, 130)
    blurred = cv2.GaussianBlur(astronaut, (0, 0), 2.0)
    assert sharpness(astronaut, frame) > 3 * sharpness(blurred, frame)


def test_an_untouched_photo_reads_as_untouched(reader, photo_file, gen_path):
    """At intensity 0 every output is the input: the face is found again in every output, at
    distance 0, sharpness ratio 1, and the judges read the photo as they read the input."""
    tr = ExpressionTranslator.load(gen_path)
    records, info = translate_and_judge(tr, [photo_file], reader, intensity=0.0)
    assert info == {"photos": 1, "no_face": [], "faces_edited": 1, "not_judged": 0}
    (rec,) = records
    assert all(d == 0.0 for d in rec.distance.values())
    assert all(s == 1.0 for s in rec.sharpness.values())
    assert all(c == 1.0 for c in rec.colour.values()) and len(rec.colour) == len(EMOTIONS)
    assert all(np.array_equal(rec.photo_crop[t], rec.before) for t in EMOTIONS)
    assert all(np.array_equal(rec.edit_frame[t], rec.model[t]) for t in EMOTIONS)
    torch.manual_seed(0)
    judge = build_classifier(ClassifierConfig(width=4, feature_dim=8)).eval()
    s = summarize(records, {"tiny": judge})
    res = s["judges"]["tiny"]
    assert {k: v for k, v in res["photo"].items() if k != "ci95"} == res["input"]
    assert res["photo"]["ci95"] == [res["photo"]["overall"]] * 2  # one face: nothing to redraw
    assert len(res["photo_hits"]) == len(s["pairs"]) == len(EMOTIONS)
    assert res["edit_frame"] == res["crop"]  # the photo cut as its crop was: the crop itself
    band = next(b for b, n in s["translations_by_size"].items() if n)  # the one face's size
    assert s["translations_by_size"][band] == len(EMOTIONS)
    assert sum(s["translations_by_size"].values()) == len(EMOTIONS)
    assert res["by_size"]["photo"][band] == res["photo"]["overall"]
    assert res["by_size"]["crop"][band] == res["crop"]["overall"]
    assert s["same_person"] == 1.0 and s["found_again"] == 1.0
    assert s["translations"] == len(EMOTIONS) and s["sharpness"]["min"] == 1.0
    assert s["crop_sharpness_by_target"] == {t: 1.0 for t in EMOTIONS}  # the model's, too
    assert s["colour_by_target"] == {t: 1.0 for t in EMOTIONS}
    assert s["sharpness_by_size"][band] == {"overall": 1.0, **{t: 1.0 for t in EMOTIONS}}
    assert all(v is None for b, v in s["sharpness_by_size"].items() if b != band)
    # one judge answer for the input: exactly one target (its reading) is a hit
    assert sum(res["input"][t] for t in EMOTIONS) == pytest.approx(1.0)
    # the two framings of the one face: the same numbers as the frames themselves give
    f, g = rec.frame, rec.reader_frame
    lo, mid, hi = s["framing"]["side_ratio_q1_median_q3"]
    assert s["framing"]["faces"] == 1 and lo == mid == hi == round(g.w / f.w, 3)
    assert s["framing"]["dx_q1_median_q3"][1] == round((g.x + g.w / 2 - f.x - f.w / 2) / f.w, 3)


class _MouthJudge(torch.nn.Module):
    """Reads happy exactly when the lower face (rows 32 on) is bright: a smile it can see."""

    def __init__(self):
        super().__init__()
        self.head = torch.nn.Linear(1, len(EMOTIONS))
        with torch.no_grad():
            self.head.weight.zero_()
            self.head.bias.zero_()
            self.head.weight[EMOTIONS.index("happy")] = 10.0

    def features(self, x):
        return x[:, :, 32:, :].mean((1, 2, 3))[:, None]

    def forward(self, x):
        return self.head(self.features(x))


def test_grin_counts_the_mouths_that_still_smile():
    """A smiling face turned angry with a dark (closed) mouth no longer smiles; sad with the
    smile kept does; neutral lost in the output counts as kept. A face the judge does not read
    happy is left out, and the 48x48 outputs are read under the model's own input."""
    smile = np.full((48, 48), 60, np.uint8)
    smile[32:] = 250
    closed = np.full((48, 48), 60, np.uint8)
    frame = Box(0, 0, 48, 48)
    rec = FaceRecord("a.jpg", 0, frame, 48, smile, model={}, photo_crop={}, distance={},
                     sharpness={}, model_input=smile)
    rec.photo_crop = {"angry": closed, "sad": smile, "neutral": None}
    rec.model = {"angry": closed, "sad": closed, "neutral": smile}
    calm = FaceRecord("b.jpg", 0, frame, 48, closed, model=dict(rec.model),
                      photo_crop=dict(rec.photo_crop), distance={}, sharpness={},
                      model_input=closed)
    g = grin([rec, calm], {"mouth": _MouthJudge()}, ("angry", "sad", "neutral"))
    assert g["faces"] == 1 and g["targets"] == ["angry", "sad", "neutral"]
    res = g["judges"]["mouth"]
    assert res["photo"] == {"overall": pytest.approx(2 / 3), "angry": 0.0, "sad": 1.0,
                            "neutral": 1.0}
    assert res["crop"] == {"overall": pytest.approx(1 / 3), "angry": 0.0, "sad": 0.0,
                           "neutral": 1.0}
    assert grin([calm], {"mouth": _MouthJudge()}) is None  # no smile to close
    assert grin([rec], {"mouth": _MouthJudge()}, ("happy",)) is None  # no closing target


def test_the_models_own_sharpness_is_reported_beside_the_photos():
    """summarize's crop_sharpness_by_target: the variance of the Laplacian of the model's
    48x48 output over its input's, per target, so a generator that paints a face smoother shows
    there and not only in the photo."""
    import cv2

    face = np.random.default_rng(0).integers(0, 256, (48, 48)).astype(np.uint8)
    soft = cv2.GaussianBlur(face, (0, 0), 1.0)
    rec = FaceRecord("a.jpg", 0, Box(0, 0, 48, 48), 48, face, model={"sad": soft, "happy": face},
                     photo_crop={"sad": soft, "happy": face}, distance={"sad": 0.1, "happy": 0.1},
                     sharpness={"sad": 0.5, "happy": 1.0}, edit_frame={"sad": soft, "happy": face},
                     model_input=face)
    s = summarize([rec], {"mouth": _MouthJudge()}, ("sad", "happy"))
    crop = s["crop_sharpness_by_target"]
    assert s["sharpness_by_size"]["0-63"] == {"overall": 0.75, "sad": 0.5, "happy": 1.0}
    assert crop["happy"] == 1.0 and 0.0 < crop["sad"] < 0.2
    assert crop["sad"] == pytest.approx(laplacian_variance(soft) / laplacian_variance(face))
    rec.model_input = None  # a record without the model's input: nothing to say
    assert summarize([rec], {"mouth": _MouthJudge()}, ("sad",))["crop_sharpness_by_target"] == {
        "sad": None}


def test_compare_pairs_two_runs_of_the_same_translations():
    """compare: the translations one paste gains and loses against another, the exact McNemar
    p of those counts and the difference's interval over faces; runs of other translations are
    refused. face_bootstrap: the faces drawn again."""
    pairs = [f"p.jpg:{i}:{t}" for i in range(10) for t in ("sad", "angry", "fear", "happy")]

    def run(hits):
        return {"pairs": pairs, "judges": {"j": {"photo_hits": hits}}}

    base = [1] * 28 + [0] * 12
    one_more = run(base)
    one_more["judges"]["only_here"] = {}  # a judge the other run did not have: left out
    assert compare(one_more, run(base)) == {"j": {"gained": 0, "lost": 0, "p": 1.0,
                                                  "difference": 0.0, "ci95": [0.0, 0.0]}}
    worse = [h for i in range(10) for h in ([1, 1, 1, 0] if i < 6 else [1, 1, 0, 0])]
    c = compare(run([1] * 40), run(worse))["j"]
    assert (c["gained"], c["lost"]) == (14, 0) and c["p"] == pytest.approx(2 / 2 ** 14)
    assert c["difference"] == pytest.approx(0.35)
    assert 0.25 <= c["ci95"][0] < 0.35 < c["ci95"][1] <= 0.5  # each face gains 1 or 2 of 4
    few = compare(run([1, 1, 1, 0] + [1] * 36), run([0, 0, 0, 1] + [1] * 36))["j"]
    assert (few["gained"], few["lost"]) == (3, 1) and few["p"] == pytest.approx(10 / 16)
    with pytest.raises(ValueError, match="not of the same translations"):
        compare(run(base), {"pairs": pairs[:-1], "judges": {}})
    # two faces, one always right and one never: any mean from 0 to 1
    assert face_bootstrap(np.array([1.0] * 7 + [0.0] * 7), np.array([0] * 7 + [1] * 7)) == [0, 1]
    assert face_bootstrap(np.ones(14), np.arange(14) // 7) == [1.0, 1.0]


def test_a_photo_without_people_is_counted_not_scored(reader, tmp_path, gen_path):
    from PIL import Image

    path = tmp_path / "wall.png"
    Image.fromarray(np.full((200, 300, 3), 128, np.uint8)).save(path)
    tr = ExpressionTranslator.load(gen_path)
    records, info = translate_and_judge(tr, [path], reader)
    assert records == [] and info["no_face"] == ["wall.png"]
    with pytest.raises(ValueError, match="no judged faces"):
        summarize(records, {})


def test_the_benchmark_script_runs_and_compares_pastes(reader, photo_file, gen_path, tmp_path,
                                                       capsys, monkeypatch):
    """benchmarks/photo_quality.py, whose tables are in experiments/photo_release and the model
    card, runs end to end on one photo with a tiny generator and judge: a table and a summary
    per paste, the default paste equal to translate's own image."""
    import importlib.util
    import json
    from pathlib import Path

    from ccyclegan.classifier.nets import _save_model

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "photo_quality.py"
    spec = importlib.util.spec_from_file_location("photo_quality", script)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    torch.manual_seed(0)
    cfg = ClassifierConfig(width=4, feature_dim=8)
    _save_model(tmp_path / "judge.safetensors", build_classifier(cfg).eval(), cfg, {})
    photos = photo_file.parent
    pastes = ["model", "gate:off+match:0+fade:0.1", "legacy"]
    argv = ["--photos", str(photos), "--judge", str(tmp_path / "judge.safetensors"),
            "--model", str(gen_path), "--out", str(tmp_path / "out"), "--threads", "1"]
    assert bench.main(argv + [a for p in pastes for a in ("--paste", p)]) == 0
    out = capsys.readouterr().out
    for tag in ("model", "gateoff_match0_fade0.1", "legacy"):
        assert f"__{tag}" in out
        s = json.loads(next((tmp_path / "out").glob(f"*__{tag}.json")).read_text())
        assert s["faces"] == 1 and s["translations"] == len(EMOTIONS)
    with pytest.raises(SystemExit, match="unknown paste"):
        bench.paste_of("match")
    assert callable(bench.paste_of("parts:0+unblur:0.4"))  # the keys the README's tables use
    # --frame-scale: the translator frames wider, and only for that run
    from ccyclegan.translate import api
    from ccyclegan.translate.faces import frame_box

    model_json = next((tmp_path / "out").glob("*__model.json"))
    capsys.readouterr()
    assert bench.main(argv + ["--frame-scale", "1.3", "--against", str(model_json)]) == 0
    assert "against " in capsys.readouterr().out  # the same translations, framed wider
    (tmp_path / "old.json").write_text("{}")
    with pytest.raises(SystemExit, match="before the benchmark kept"):
        bench.main(argv + ["--against", str(tmp_path / "old.json")])
    assert api.frame_box is frame_box
    wide = json.loads(next((tmp_path / "out").glob("*__model__frame1.3.json")).read_text())
    assert wide["frame_scale"] == 1.3 and wide["translations"] == len(EMOTIONS)
    own = json.loads(next((tmp_path / "out").glob("*__model.json")).read_text())
    assert wide["frame_side_median"] > 1.2 * own["frame_side_median"]
    tr = ExpressionTranslator.load(gen_path)
    result = tr.translate_faces(str(photo_file), to="all")
    assert np.array_equal(bench.paste_with()(result, "sad"), result.image("sad"))
    # flow:0 is the paste with the move off (paint alone)
    painted = bench.paste_of("flow:0")(result, "sad")
    assert not np.array_equal(painted, result.image("sad"))
    # sharpen:1 is the paste with the unsharp mask (off by default): another image of this face
    assert not np.array_equal(bench.paste_of("sharpen:1")(result, "sad"), result.image("sad"))
    # shade:1 scales the chroma with the luminance's change (off by default): another image
    assert not np.array_equal(bench.paste_of("shade:1")(result, "sad"), result.image("sad"))
    # unblur:1 gives back the photo's detail where the edit only blurs it: closer to the input
    before = result.original.pixels.astype(int)
    unblurred = bench.paste_of("unblur:1")(result, "sad").astype(int)
    assert np.abs(unblurred - before).sum() < np.abs(result.image("sad").astype(int) - before).sum()
    # +grain:G gives back only its faint part: another image, and less of the input than all
    grain = bench.paste_of("unblur:1+grain:4")(result, "sad").astype(int)
    assert not np.array_equal(grain, unblurred) and not np.array_equal(grain, result.image("sad"))
    assert np.abs(grain - before).sum() > np.abs(unblurred - before).sum()
    monkeypatch.setattr("ccyclegan.translate.paste.MOVE", False)
    # the same batch of 7 targets: a batch of 1 differs in the float's last bits, which can
    # round a pixel the other way
    again = tr.translate_faces(str(photo_file), to="all")
    assert np.array_equal(painted, again.image("sad"))
