"""Measure what a generator does: expression accuracy, realism (FED, FID, KID) and content
preservation, each beside the identity mapping (output = input) as a baseline.

Every test face is translated to each of the other 6 emotions. Then:

* Expression accuracy: the share of translations that our classifier (`ccyclegan
  train-classifier`, never trained on translations) assigns to the target emotion, overall and
  per target; its accuracy on the real faces is the reference.
* Realism: Frechet distance between translated faces of target t and real test faces of emotion
  t, on the classifier's penultimate features (FED, works offline) and, when the FID
  Inception's weights are available, on Inception-v3 pool3 features (FID), plus KID (unbiased
  MMD^2, cubic polynomial kernel, subsets of 1000). The floor is the same distance between
  two random halves of the real faces.
* Content: L1, PSNR and SSIM of the reconstruction G(x|y_x) against x, and the mean absolute
  change of a translation inside and outside the central face box.

The metric functions (evaluate/metrics.py) are pure (numpy/torch in, numbers out); `evaluate`
here does the I/O and report.py writes report.md. All randomness (the `--limit` subset, KID
subsets, the real halves) comes from `seed`.
"""

from __future__ import annotations

import math
import time
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ccyclegan.classifier.nets import classify, load_classifier
from ccyclegan.core.checkpoint import atomic_write_json, atomic_write_text
from ccyclegan.core.data import (
    EMOTIONS,
    NUM_CLASSES,
    DataError,
    denormalize,
    drop_blank,
    load_split,
    normalize,
)
from ccyclegan.core.generator_files import as_ensemble, load_generator, strength_json
from ccyclegan.core.models import one_hot
from ccyclegan.core.plots import confusion_image
from ccyclegan.core.run import say
from ccyclegan.core.runtime import resolve_device
from ccyclegan.core.visualize import grid_image
from ccyclegan.evaluate import (
    identity as face_id,  # FaceEmbedder looked up per call: tests replace it
)
from ccyclegan.evaluate.identity import DLIB_THRESHOLD, FER_THRESHOLD
from ccyclegan.evaluate.inception import InceptionFeatures, InceptionWeightsError
from ccyclegan.evaluate.metrics import (
    FACE_BOX,
    KID_SUBSET_SIZE,
    KID_SUBSETS,
    _as_unit,
    _clean,
    _distances,
    confusion,
    mae,
    psnr,
    region_change,
    ssim,
    unchanged_share,
)
from ccyclegan.evaluate.report import render_report
from ccyclegan.translate.inputs import check_intensity


def _blend(x: torch.Tensor, g: torch.Tensor, intensity: float) -> torch.Tensor:
    """x + a (g - x), clipped; at a = 1 exactly g, so a full-strength evaluation is G's output
    itself (a > 1, an amplified edit, only from the strength sweep)."""
    return g if intensity == 1.0 else (x + intensity * (g - x)).clamp(-1, 1)


def _translate(G, faces: torch.Tensor, batch_size: int, intensity: float = 1.0) -> torch.Tensor:
    """uint8 [N,1,48,48] -> uint8 [N, 7, 1, 48, 48]: each face decoded under every emotion
    from one encoding (the source emotion's column is the reconstruction), blended as the
    translate API does: x + intensity (G(x|k) - x)."""
    device = next(G.parameters()).device
    out = []
    with torch.no_grad():
        for chunk in faces.split(batch_size):
            x = normalize(chunk.to(device))
            feats = G.encode(x)
            per = [denormalize(_blend(x, G.decode(feats, one_hot(torch.full(
                (len(x),), k, dtype=torch.long, device=device))).float(), intensity)).cpu()
                   for k in range(NUM_CLASSES)]
            out.append(torch.stack(per, 1))
    if not out:
        return torch.zeros(0, NUM_CLASSES, 1, 48, 48, dtype=torch.uint8)
    return torch.cat(out)


def same_person(images: torch.Tensor, fakes: torch.Tensor, src: np.ndarray, tgt: np.ndarray,
                labels: np.ndarray, enabled: bool | None, max_faces: int, seed: int,
                log: typing.Callable[[str], None] = say) -> dict[str, Any] | None:
    """dlib's face-descriptor distance between each face and its translations (the first
    max_faces faces), and as a reference between each face and a real face of the target
    emotion, which is another person. None when disabled or (enabled None) not installed."""
    if enabled is False:
        return None
    try:
        embedder = face_id.FaceEmbedder()
    except face_id.IdentityModelError as e:
        if enabled:
            raise
        log(f"evaluate: identity skipped: {e}")
        return None
    t0 = time.perf_counter()
    keep = np.flatnonzero(src < max_faces)
    n = int(src[keep].max()) + 1 if len(keep) else 0
    rng = np.random.default_rng(seed + 2)
    index = np.arange(len(labels))

    def another(i: int, t: int) -> int:  # another face of emotion t (any other if t has none)
        pool = np.flatnonzero((labels == t) & (index != i))
        return int(rng.choice(pool if len(pool) else np.flatnonzero(index != i)))

    others = np.array([another(i, t) for i, t in zip(src[keep], tgt[keep], strict=True)],
                      np.int64)
    emb = embedder.embed(images[:n, 0].numpy())
    emb_fake = embedder.embed(fakes[torch.from_numpy(keep), 0].numpy())
    emb_other = embedder.embed(images[torch.from_numpy(others), 0].numpy())
    d_fake = np.linalg.norm(emb[src[keep]] - emb_fake, axis=1)
    d_other = np.linalg.norm(emb[src[keep]] - emb_other, axis=1)
    log(f"evaluate: identity of {len(keep)} translations of {n} faces "
        f"({time.perf_counter() - t0:.0f} s)")
    return {"faces": n, "translations": len(keep), "model": "dlib face descriptor (128-d)",
            "kept": {str(th): float((d_fake < th).mean()) for th in (FER_THRESHOLD,
                                                                    DLIB_THRESHOLD)},
            "median_distance": float(np.median(d_fake)),
            "per_target": {EMOTIONS[t]: float((d_fake[tgt[keep] == t] < FER_THRESHOLD).mean())
                           for t in range(NUM_CLASSES) if (tgt[keep] == t).any()},
            "another_person_of_the_target_emotion": {
                "kept": {str(th): float((d_other < th).mean())
                         for th in (FER_THRESHOLD, DLIB_THRESHOLD)},
                "median_distance": float(np.median(d_other))},
            "thresholds": {"fer_1pct_far": FER_THRESHOLD, "dlib": DLIB_THRESHOLD}}


def default_out(checkpoint: str | Path) -> Path:
    p = Path(checkpoint)
    return (p if p.is_dir() else p.parent) / "eval"


def translation_pairs(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(source face, target emotion) of every translation evaluated: each face to each of the
    6 emotions it does not show, face by face, targets in EMOTIONS order."""
    src = np.repeat(np.arange(len(labels)), NUM_CLASSES)
    tgt = np.tile(np.arange(NUM_CLASSES), len(labels))
    keep = tgt != labels[src]
    return src[keep], tgt[keep]


def seeded_subset(faces, limit: int, seed: int):
    """`--limit`: the same `limit` faces for a given seed, in their original order (all of them
    when limit is 0 or not smaller)."""
    if not limit or limit >= len(faces):
        return faces
    pick = torch.randperm(len(faces), generator=torch.Generator().manual_seed(seed))[:limit]
    return faces.subset(pick.sort().values)


@dataclass
class _Sample:
    """The evaluated test faces and every translation of them."""

    faces: Any  # the test split without blank faces (with --limit, its seeded subset)
    n_blank: int
    n_available: int
    labels: np.ndarray
    all7: torch.Tensor  # [N, 7, 1, 48, 48]: each face under every emotion
    src: np.ndarray  # the source face of each translation
    tgt: np.ndarray  # and its target emotion
    fakes: torch.Tensor  # [6N, 1, 48, 48]
    recon: torch.Tensor  # [N, 1, 48, 48]: each face under its own emotion

    @property
    def images(self) -> torch.Tensor:
        return self.faces.images

    @property
    def n(self) -> int:
        return len(self.faces)


@dataclass
class _Judged:
    """The classifier's verdicts on the real faces, the translations and the reconstructions."""

    pred_real: np.ndarray
    pred_rec: np.ndarray
    feat_real: np.ndarray  # penultimate features, float64
    feat_fake: np.ndarray
    model: dict[str, Any]  # expression accuracy of the translations
    identity: dict[str, Any]  # and of the identity mapping (the source faces)

    def accuracy_real(self, labels: np.ndarray) -> float:
        return float((self.pred_real == labels).mean())


def _load_faces(data: str | Path, limit: int, seed: int) -> tuple[Any, int, int]:
    """(test faces, blank faces dropped, faces available before --limit)."""
    faces = load_split(data, "test")
    faces, n_blank = drop_blank(faces)
    n_available = len(faces)
    faces = seeded_subset(faces, limit, seed)
    if len(faces) < 2:
        raise DataError(f"{data}: need at least 2 test faces to evaluate, got {len(faces)}")
    return faces, n_blank, n_available


def _translate_sample(G, loaded: tuple[Any, int, int], batch_size: int, intensity: float,
                      log: typing.Callable[[str], None], t_start: float) -> _Sample:
    """Each face to all 7 emotions (its own emotion: the reconstruction)."""
    faces, n_blank, n_available = loaded
    labels = faces.labels.numpy()
    all7 = _translate(G, faces.images, batch_size, intensity)
    src, tgt = translation_pairs(labels)
    s = _Sample(faces=faces, n_blank=n_blank, n_available=n_available, labels=labels,
                all7=all7, src=src, tgt=tgt,
                fakes=all7[torch.from_numpy(src), torch.from_numpy(tgt)],
                recon=all7[torch.arange(len(faces)), torch.from_numpy(labels)])
    log(f"evaluate: {s.n} test faces ({n_blank} blank dropped"
        f"{f', a seeded subset of {n_available}' if s.n < n_available else ''}), "
        f"{len(s.fakes)} translations ({time.perf_counter() - t_start:.0f} s)")
    return s


def _expression(pred: np.ndarray, tgt: np.ndarray) -> dict[str, Any]:
    """The share of predictions that are the target emotion, overall and per target."""
    cm = confusion(tgt, pred)
    per = {EMOTIONS[t]: float(cm[t, t] / cm[t].sum()) if cm[t].sum() else None
           for t in range(NUM_CLASSES)}
    return {"overall": float((pred == tgt).mean()), "per_target": per,
            "confusion": cm.tolist()}


def _judge(clf, s: _Sample) -> _Judged:
    p_real, f_real = classify(clf, s.images)
    p_fake, f_fake = classify(clf, s.fakes)
    p_rec, _ = classify(clf, s.recon)
    pred_real = p_real.argmax(1).numpy()
    return _Judged(pred_real=pred_real, pred_rec=p_rec.argmax(1).numpy(),
                   feat_real=f_real.numpy().astype(np.float64),
                   feat_fake=f_fake.numpy().astype(np.float64),
                   model=_expression(p_fake.argmax(1).numpy(), s.tgt),
                   identity=_expression(pred_real[s.src], s.tgt))


def _second_judge(path: str | Path, dev: torch.device, s: _Sample, seed: int,
                  log: typing.Callable[[str], None]) -> dict[str, Any]:
    """Another classifier's expression accuracy and FED, so a generator that games one
    network shows."""
    clf2, cmeta2 = load_classifier(path, dev)
    p2_real, f2_real = classify(clf2, s.images)
    p2_fake, f2_fake = classify(clf2, s.fakes)
    fed2 = _distances(f2_real.numpy().astype(np.float64), f2_fake.numpy().astype(np.float64),
                      s.labels, s.src, s.tgt, seed, False, KID_SUBSET_SIZE, KID_SUBSETS)
    second = {"path": str(path), "config": cmeta2.get("config"),
              "accuracy_real": float((p2_real.argmax(1).numpy() == s.labels).mean()),
              "expression_accuracy": _expression(p2_fake.argmax(1).numpy(), s.tgt),
              "identity_expression_accuracy":
                  _expression(p2_real.argmax(1).numpy()[s.src], s.tgt)["overall"],
              "fed": fed2["model"]["overall"]["frechet"],
              "fed_floor": fed2["floor"]["overall"]["frechet"]}
    log(f"second judge: expression accuracy "
        f"{second['expression_accuracy']['overall']:.4f} (on real faces "
        f"{second['accuracy_real']:.4f}), FED {second['fed']:.3f} "
        f"(floor {second['fed_floor']:.3f})")
    return second


def _inception_extractor(inception, use_inception: bool, weights: str | Path | None,
                         resize: str, dev: torch.device, log: typing.Callable[[str], None]
                         ) -> tuple[Any, dict[str, Any]]:
    """The FID/KID feature extractor (None when skipped), and what the report says of it."""
    inc_info: dict[str, Any] = {"resize": resize, "weights": None, "note": None}
    if inception is None and use_inception:
        try:
            inception = InceptionFeatures(weights, resize=resize, device=dev)
            inc_info["weights"] = str(inception.path)
        except InceptionWeightsError as e:
            inc_info["note"] = str(e)
            log(f"evaluate: FID/KID skipped: {e}")
    elif inception is not None:
        inc_info["weights"] = getattr(inception, "path", None) and str(inception.path)
        inc_info["extractor"] = type(inception).__name__
    if not use_inception and inception is None:
        inc_info["note"] = "FID/KID not requested"
    return inception, inc_info


def _inception_distances(inception, s: _Sample, seed: int, kid_subset_size: int,
                         kid_subsets: int, log: typing.Callable[[str], None]) -> dict[str, Any]:
    """FID and KID of the translations, the identity mapping and the floor."""
    t0 = time.perf_counter()
    i_real = np.asarray(inception(s.images), np.float64)
    i_fake = np.asarray(inception(s.fakes), np.float64)
    log(f"evaluate: Inception features of {s.n + len(s.fakes)} faces in "
        f"{time.perf_counter() - t0:.0f} s")
    return _distances(i_real, i_fake, s.labels, s.src, s.tgt, seed, True, kid_subset_size,
                      kid_subsets)


def _content(s: _Sample, j: _Judged) -> tuple[dict[str, Any], dict[str, Any]]:
    """Content preservation of the model, and of the identity mapping (perfect by definition
    but for the expression the classifier keeps)."""
    recon, images = s.recon, s.images
    model = {
        "reconstruction": {"l1": float(mae(recon, images).mean()),
                           "psnr": float(psnr(recon, images).mean()),
                           "psnr_of_mean_mse": float(10 * torch.log10(
                               1 / (_as_unit(recon) - _as_unit(images)).pow(2).mean())),
                           "ssim": float(ssim(recon, images).mean()),
                           "expression_kept": float((j.pred_rec == s.labels).mean())},
        "translation_change": region_change(images[torch.from_numpy(s.src)], s.fakes),
    }
    identity = {
        "reconstruction": {"l1": 0.0, "psnr": math.inf, "psnr_of_mean_mse": math.inf,
                           "ssim": 1.0, "expression_kept": j.accuracy_real(s.labels)},
        "translation_change": {"inside": 0.0, "outside": 0.0},
    }
    return model, identity


def _generator_info(checkpoint: str | Path, G, gcfg, gprog: dict[str, Any],
                    intensity: float) -> dict[str, Any]:
    E = as_ensemble(G)  # its release settings, for the report
    return {
        "checkpoint": str(checkpoint), "generator_step": gprog.get("step"),
        "intensity": intensity,
        "generator_strength": strength_json(E.strength),
        "generator_flip_average": E.flip_average,
        "generator_condition_scale": strength_json(E.condition_scale),
        "generator_members": len(E.members),
        "generator_config": {k: gcfg.to_dict()[k] for k in
                             ("gen_channels", "label_mode", "lr", "lambda_cl", "lambda_cyc",
                              "cycle_mode", "adv_loss", "seed")},
    }


def _classifier_info(classifier: str | Path, cmeta: dict[str, Any], s: _Sample,
                     j: _Judged) -> dict[str, Any]:
    ref_cm = confusion(s.labels, j.pred_real)
    return {"path": str(classifier), "config": cmeta.get("config"), "epoch": cmeta.get("epoch"),
            "accuracy_real": j.accuracy_real(s.labels),
            "per_class_real": {EMOTIONS[k]: float(ref_cm[k, k] / ref_cm[k].sum())
                               if ref_cm[k].sum() else None for k in range(NUM_CLASSES)},
            "confusion_real": ref_cm.tolist(), "tta": "face and mirror averaged"}


def _sample_info(s: _Sample, limit: int, seed: int) -> dict[str, Any]:
    counts = np.bincount(s.labels, minlength=NUM_CLASSES)
    per_target_n = {EMOTIONS[t]: {"translated": int((s.tgt == t).sum()), "real": int(counts[t])}
                    for t in range(NUM_CLASSES)}
    return {"faces": s.n, "faces_available": s.n_available, "blank_dropped": s.n_blank,
            "limit": limit, "seed": seed, "class_counts": counts.tolist(),
            "translations": len(s.fakes), "per_target": per_target_n}


def _write_outputs(out: Path, metrics: dict[str, Any], s: _Sample, j: _Judged) -> None:
    """metrics.json, the two confusion matrices, sample translations and report.md."""
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "metrics.json", metrics)
    confusion_image(j.model["confusion"], EMOTIONS, EMOTIONS,
                    title=f"translations: expression accuracy "
                          f"{100 * j.model['overall']:.1f}% (n={len(s.fakes)})",
                    row_axis="target emotion", col_axis="classifier's prediction"
                    ).save(out / "confusion.png")
    confusion_image(j.identity["confusion"], EMOTIONS, EMOTIONS,
                    title=f"identity baseline: {100 * j.identity['overall']:.1f}%",
                    row_axis="target emotion", col_axis="classifier's prediction"
                    ).save(out / "confusion_identity.png")
    show = min(8, s.n)
    grid_image(s.images[:show], s.all7[:show, :, 0], s.faces.labels[:show]
               ).save(out / "samples.png")
    atomic_write_text(out / "report.md", render_report(metrics))


def evaluate(checkpoint: str | Path, data: str | Path, classifier: str | Path,
             out: str | Path | None = None, limit: int = 0, seed: int = 0,
             inception_weights: str | Path | None = None, fid_resize: str = "tf",
             batch_size: int = 128, device: str = "auto", threads: int = 0,
             kid_subset_size: int = KID_SUBSET_SIZE, kid_subsets: int = KID_SUBSETS,
             inception: typing.Callable[[torch.Tensor], np.ndarray] | None = None,
             use_inception: bool = True, log: typing.Callable[[str], None] = say,
             second_classifier: str | Path | None = None, identity: bool | None = None,
             identity_faces: int = 200, intensity: float = 1.0) -> dict[str, Any]:
    """Evaluate a generator on the test split; writes metrics.json, report.md and figures
    to `out` (default: <run dir>/eval) and returns the metrics.

    `inception` overrides the feature extractor for FID/KID (any callable uint8 images ->
    [N, d] features); by default the FID Inception is loaded from `inception_weights` or the
    torch hub cache, and when it is missing FID/KID are reported as unavailable with the
    reason. use_inception=False skips FID/KID on purpose (e.g. in sweeps).

    second_classifier: a second judge (best of another architecture family, never in a
    training loss) scored the same way, so a generator that games one network shows.
    identity: the share of translations dlib's face descriptor still calls the same person, on
    the first `identity_faces` faces (None: when the `eval` extra is installed).
    intensity: the edit strength of the translate API (1 = G's output itself)."""
    if threads:
        torch.set_num_threads(threads)
    dev = resolve_device(device)
    out = Path(out) if out is not None else default_out(checkpoint)
    t_start = time.perf_counter()
    G, gcfg, gprog = load_generator(checkpoint, dev)
    clf, cmeta = load_classifier(classifier, dev)
    loaded = _load_faces(data, limit, seed)
    s = _translate_sample(G, loaded, batch_size, check_intensity(intensity), log, t_start)

    # ---- expression: the judge, and a second one
    j = _judge(clf, s)
    second = (None if second_classifier is None
              else _second_judge(second_classifier, dev, s, seed, log))
    log(f"expression accuracy {j.model['overall']:.4f} (identity "
        f"{j.identity['overall']:.4f}; classifier on real faces "
        f"{j.accuracy_real(s.labels):.4f}) ({time.perf_counter() - t_start:.0f} s)")

    # ---- realism on the classifier's features (FED), and on Inception's (FID, KID)
    fed = _distances(j.feat_real, j.feat_fake, s.labels, s.src, s.tgt, seed, False,
                     kid_subset_size, kid_subsets)
    inception, inc_info = _inception_extractor(inception, use_inception, inception_weights,
                                               fid_resize, dev, log)
    fid = (None if inception is None
           else _inception_distances(inception, s, seed, kid_subset_size, kid_subsets, log))

    # ---- the person (a face-recognition network's distance, input vs translation); content
    person = same_person(s.images, s.fakes, s.src, s.tgt, s.labels, identity, identity_faces,
                         seed, log)
    content, identity_content = _content(s, j)

    metrics = _clean({
        **_generator_info(checkpoint, G, gcfg, gprog, intensity),
        "data": str(data), "split": "test (FER2013 PublicTest)",
        "classifier": _classifier_info(classifier, cmeta, s, j),
        "sample": _sample_info(s, limit, seed),
        "face_box": {"rows": list(FACE_BOX[:2]), "cols": list(FACE_BOX[2:]),
                     "note": "central 32x32 box, end exclusive; change is |G(x|t) - x| / 255"},
        "second_judge": second, "person": person,
        "model": {"expression_accuracy": j.model, "fed": fed["model"],
                  "unchanged": unchanged_share(s.images[torch.from_numpy(s.src)], s.fakes),
                  "fid": None if fid is None else fid["model"], **content},
        "identity": {"expression_accuracy": j.identity, "fed": fed["identity"],
                     "fid": None if fid is None else fid["identity"], **identity_content},
        "floor": {"fed": fed["floor"], "fid": None if fid is None else fid["floor"]},
        "inception": inc_info,
        "kid": {"subset_size": kid_subset_size, "subsets": kid_subsets,
                "kernel": "(x.y/d + 1)^3", "estimator": "unbiased MMD^2"},
    })
    _write_outputs(out, metrics, s, j)
    log(f"evaluate: wrote {out}/metrics.json, report.md ({time.perf_counter() - t_start:.0f} s)")
    return metrics
