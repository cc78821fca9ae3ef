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

The metric functions at the top are pure (numpy/torch in, numbers out); `evaluate` does the
I/O. All randomness (the `--limit` subset, KID subsets, the real halves) comes from `seed`.
"""

from __future__ import annotations

import math
import time
import typing
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

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
from ccyclegan.core.generator_files import as_ensemble, load_generator, strength_json, strength_text
from ccyclegan.core.models import one_hot
from ccyclegan.core.plots import confusion_image
from ccyclegan.core.runtime import resolve_device
from ccyclegan.core.visualize import grid_image
from ccyclegan.evaluate import (
    identity as face_id,  # FaceEmbedder looked up per call: tests replace it
)
from ccyclegan.evaluate.identity import DLIB_THRESHOLD, FER_THRESHOLD
from ccyclegan.evaluate.inception import InceptionFeatures, InceptionWeightsError
from ccyclegan.translate.inputs import check_intensity

# Central face box (rows and columns [8, 40) of the 48x48 face): in FER2013's aligned crops it
# holds the brows, eyes, nose and mouth; outside it are hair, ears, jaw line and background,
# which an expression change should leave alone.
FACE_BOX = (8, 40, 8, 40)  # top, bottom, left, right (bottom/right exclusive)
KID_SUBSET_SIZE = 1000
KID_SUBSETS = 100


# =========================================================================== pure metrics


def mean_cov(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and unbiased covariance (ddof=1, as the reference FID code) in float64."""
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2 or f.shape[0] < 2:
        raise ValueError(f"need features [n >= 2, d], got shape {f.shape}")
    return f.mean(0), np.atleast_2d(np.cov(f, rowvar=False))


def _sqrt_psd(m: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh((m + m.T) / 2)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray,
                     sigma2: np.ndarray) -> float:
    """||mu1 - mu2||^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^1/2), in float64.

    tr((S1 S2)^1/2) = tr((S1^1/2 S2 S1^1/2)^1/2): the eigenvalues of S1 S2 are those of the
    symmetric PSD matrix S1^1/2 S2 S1^1/2, so two symmetric eigendecompositions replace the
    general (and sometimes complex-valued) matrix square root; singular covariances (fewer
    samples than dimensions) are fine."""
    mu1 = np.atleast_1d(np.asarray(mu1, np.float64))
    mu2 = np.atleast_1d(np.asarray(mu2, np.float64))
    s1 = np.atleast_2d(np.asarray(sigma1, np.float64))
    s2 = np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != (mu1.size, mu1.size):
        raise ValueError(f"shapes do not match: mu {mu1.shape}, {mu2.shape}; "
                         f"sigma {s1.shape}, {s2.shape}")
    r = _sqrt_psd(s1)
    inner = r @ s2 @ r
    tr_sqrt = np.sqrt(np.clip(np.linalg.eigvalsh((inner + inner.T) / 2), 0.0, None)).sum()
    diff = mu1 - mu2
    return max(float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * tr_sqrt), 0.0)


def frechet_from_features(f1: np.ndarray, f2: np.ndarray) -> float | None:
    """Frechet distance of two feature sets; None when either has fewer than 2 rows."""
    if len(f1) < 2 or len(f2) < 2:
        return None
    return frechet_distance(*mean_cov(f1), *mean_cov(f2))


def polynomial_kernel(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """k(x, y) = (x.y / d + 1)^3, the KID kernel."""
    return (a @ b.T / a.shape[1] + 1.0) ** 3


def mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD^2 of two equal-size samples under the cubic polynomial kernel:
    mean_{i!=j} k(x_i,x_j) + mean_{i!=j} k(y_i,y_j) - 2 mean_{i,j} k(x_i,y_j)."""
    m = len(x)
    if m < 2 or len(y) != m:
        raise ValueError(f"need two samples of equal size >= 2, got {len(x)} and {len(y)}")
    kxx, kyy, kxy = polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y)
    off = m * (m - 1)
    return float((kxx.sum() - np.trace(kxx)) / off + (kyy.sum() - np.trace(kyy)) / off
                 - 2.0 * kxy.mean())


def kid(f1: np.ndarray, f2: np.ndarray, subset_size: int = KID_SUBSET_SIZE,
        n_subsets: int = KID_SUBSETS, seed: int = 0) -> dict[str, float | int] | None:
    """Kernel Inception Distance: unbiased MMD^2 averaged over `n_subsets` random subsets of
    min(subset_size, |f1|, |f2|) rows drawn without replacement from each set.
    Returns {"mean", "std", "subset_size", "subsets"}, or None with fewer than 2 rows."""
    f1, f2 = np.asarray(f1, np.float64), np.asarray(f2, np.float64)
    m = min(subset_size, len(f1), len(f2))
    if m < 2:
        return None
    rng = np.random.default_rng(seed)
    vals = np.array([mmd2_unbiased(f1[rng.choice(len(f1), m, replace=False)],
                                   f2[rng.choice(len(f2), m, replace=False)])
                     for _ in range(n_subsets)])
    return {"mean": float(vals.mean()), "std": float(vals.std()), "subset_size": int(m),
            "subsets": int(n_subsets)}


def _as_unit(x: torch.Tensor) -> torch.Tensor:
    """uint8 0..255 -> float64 0..1; floats are taken as already in [0, data_range]."""
    if x.dtype == torch.uint8:
        return x.to(torch.float64) / 255.0
    return x.to(torch.float64)


def mae(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-image mean absolute difference [N] (uint8 inputs: in units of the full range)."""
    return (_as_unit(x) - _as_unit(y)).abs().flatten(1).mean(1)


def psnr(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Per-image PSNR in dB [N]: 10 log10(range^2 / MSE); inf for identical images. uint8
    inputs are scaled to [0, 1] (range 1)."""
    mse = (_as_unit(x) - _as_unit(y)).pow(2).flatten(1).mean(1)
    return 10.0 * torch.log10(data_range ** 2 / mse)


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    t = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-t ** 2 / (2 * sigma ** 2))
    return g / g.sum()


def ssim(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0, window: int = 11,
         sigma: float = 1.5, k1: float = 0.01, k2: float = 0.03) -> torch.Tensor:
    """Per-image SSIM [N] (Wang et al. 2004): 11x11 Gaussian window with sigma 1.5, K1 0.01,
    K2 0.03, population (co)variances, averaged over the windows that fit inside the image
    (no padding; 38x38 windows for a 48x48 face), per channel then over channels. Equals
    skimage's structural_similarity(gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False, data_range=...). uint8 inputs are scaled to [0, 1]."""
    a, b = _as_unit(x), _as_unit(y)
    if a.shape != b.shape or a.ndim != 4:
        raise ValueError(f"need two [N, C, H, W] batches of one shape, got {a.shape}, {b.shape}")
    c = a.shape[1]
    g = _gaussian_window(window, sigma)
    gh = g.view(1, 1, 1, -1).repeat(c, 1, 1, 1)
    gv = g.view(1, 1, -1, 1).repeat(c, 1, 1, 1)

    def blur(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.conv2d(t, gh, groups=c), gv, groups=c)

    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a ** 2
    var_b = blur(b * b) - mu_b ** 2
    cov = blur(a * b) - mu_a * mu_b
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1)
                                                     * (var_a + var_b + c2))
    return s.flatten(1).mean(1)


def box_mask(size: int = 48, box: tuple[int, int, int, int] = FACE_BOX) -> torch.Tensor:
    """bool [size, size], True inside the face box."""
    m = torch.zeros(size, size, dtype=torch.bool)
    m[box[0]:box[1], box[2]:box[3]] = True
    return m


def region_change(src: torch.Tensor, out: torch.Tensor,
                  box: tuple[int, int, int, int] = FACE_BOX) -> dict[str, float]:
    """Mean absolute change |out - src| (uint8 -> fraction of the full range) inside and
    outside the face box, over all images."""
    d = (_as_unit(out) - _as_unit(src)).abs()
    inside = box_mask(d.shape[-1], box)
    return {"inside": float(d[..., inside].mean()) if d.numel() else math.nan,
            "outside": float(d[..., ~inside].mean()) if d.numel() else math.nan}


def confusion(true: np.ndarray, pred: np.ndarray, k: int = NUM_CLASSES) -> np.ndarray:
    t, p = np.asarray(true, np.int64), np.asarray(pred, np.int64)
    return np.bincount(t * k + p, minlength=k * k).reshape(k, k)


# =========================================================================== evaluation


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


def _halves(labels: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Stratified random split of the real faces into two halves (the realism floor)."""
    rng = np.random.default_rng(seed + 1)
    a, b = [], []
    for k in range(NUM_CLASSES):
        idx = rng.permutation(np.flatnonzero(labels == k))
        a.append(idx[: len(idx) // 2])
        b.append(idx[len(idx) // 2:])
    return np.sort(np.concatenate(a)), np.sort(np.concatenate(b))


def real_halves(features: np.ndarray, labels: np.ndarray, seed: int
                ) -> typing.Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """Per emotion, then "overall": the features of two stratified random halves of the real
    faces. The distance between them is the realism floor: what sampling alone costs."""
    h1, h2 = _halves(labels, seed)
    masks = [(EMOTIONS[t], labels == t) for t in range(NUM_CLASSES)]
    for name, mask in [*masks, ("overall", np.ones_like(labels, bool))]:
        yield name, features[h1[mask[h1]]], features[h2[mask[h2]]]


def fed_floor(features: np.ndarray, labels: np.ndarray, seed: int = 0) -> dict[str, float]:
    """Per emotion, the Frechet distance between two halves of its real faces (evaluate's
    floor, for scripts that measure FED on their own translations)."""
    return {name: frechet_from_features(a, b)
            for name, a, b in real_halves(features, labels, seed) if name != "overall"}


def _distances(feat_real: np.ndarray, feat_fake: np.ndarray, labels: np.ndarray,
               src: np.ndarray, tgt: np.ndarray, seed: int, with_kid: bool,
               kid_subset_size: int, kid_subsets: int) -> dict[str, Any]:
    """Frechet distance (and KID) of translated vs real faces, per target and overall, for
    the model (feat_fake) and the identity mapping (the source faces themselves), and the
    real-vs-real floor."""
    res: dict[str, Any] = {"model": {"per_target": {}}, "identity": {"per_target": {}},
                           "floor": {"per_emotion": {}}}

    def place(block: dict[str, Any], name: str, entry: dict[str, Any], per: str) -> None:
        if name == "overall":
            block["overall"] = entry
        else:
            block[per][name] = entry

    feat_ident = feat_real[src]
    sets = [(EMOTIONS[t], tgt == t, labels == t) for t in range(NUM_CLASSES)]
    for name, fake_mask, real_mask in [*sets, ("overall", np.ones_like(tgt, bool),
                                               np.ones_like(labels, bool))]:
        real = feat_real[real_mask]
        for key, fake in (("model", feat_fake[fake_mask]), ("identity", feat_ident[fake_mask])):
            entry = {"frechet": frechet_from_features(fake, real)}
            if with_kid:
                entry["kid"] = kid(fake, real, kid_subset_size, kid_subsets, seed)
            place(res[key], name, entry, "per_target")
    for name, a, b in real_halves(feat_real, labels, seed):
        floor = {"frechet": frechet_from_features(a, b), "n": [len(a), len(b)]}
        if with_kid:
            floor["kid"] = kid(a, b, kid_subset_size, kid_subsets, seed)
        place(res["floor"], name, floor, "per_emotion")
    return res


def _clean(obj: Any) -> Any:
    """JSON-safe: numpy scalars to Python, inf/nan to None."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _clean(obj.tolist())
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, float | np.floating):
        v = float(obj)
        return v if math.isfinite(v) else None
    return obj


def unchanged_share(src: torch.Tensor, out: torch.Tensor, grey_levels: float = 1.0
                    ) -> dict[str, float]:
    """Requests that leave the face (nearly) unchanged: mean |out - input| inside the face
    box under `grey_levels` (of 255), and the mean change there."""
    t, b, left, r = FACE_BOX
    d = (out.float() - src.float()).abs()[..., t:b, left:r].flatten(1).mean(1)
    return {"share": float((d < grey_levels).float().mean()) if len(d) else 0.0,
            "threshold_grey_levels": grey_levels,
            "mean_change_grey_levels": float(d.mean()) if len(d) else 0.0}


def same_person(images: torch.Tensor, fakes: torch.Tensor, src: np.ndarray, tgt: np.ndarray,
                labels: np.ndarray, enabled: bool | None, max_faces: int, seed: int,
                log: typing.Callable[[str], None] = print) -> dict[str, Any] | None:
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


def evaluate(checkpoint: str | Path, data: str | Path, classifier: str | Path,
             out: str | Path | None = None, limit: int = 0, seed: int = 0,
             inception_weights: str | Path | None = None, fid_resize: str = "tf",
             batch_size: int = 128, device: str = "auto", threads: int = 0,
             kid_subset_size: int = KID_SUBSET_SIZE, kid_subsets: int = KID_SUBSETS,
             inception: typing.Callable[[torch.Tensor], np.ndarray] | None = None,
             use_inception: bool = True, log: typing.Callable[[str], None] = print,
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
    E = as_ensemble(G)  # its release settings, for the report
    clf, cmeta = load_classifier(classifier, dev)
    faces = load_split(data, "test")
    faces, n_blank = drop_blank(faces)
    n_available = len(faces)
    faces = seeded_subset(faces, limit, seed)
    if len(faces) < 2:
        raise DataError(f"{data}: need at least 2 test faces to evaluate, got {len(faces)}")
    n = len(faces)
    labels = faces.labels.numpy()
    images = faces.images

    # ---- translate: each face to all 7 emotions (own emotion = reconstruction)
    all7 = _translate(G, images, batch_size, check_intensity(intensity))
    src, tgt = translation_pairs(labels)
    fakes = all7[torch.from_numpy(src), torch.from_numpy(tgt)]  # [6N, 1, 48, 48]
    recon = all7[torch.arange(n), torch.from_numpy(labels)]
    log(f"evaluate: {n} test faces ({n_blank} blank dropped"
        f"{f', a seeded subset of {n_available}' if n < n_available else ''}), "
        f"{len(fakes)} translations ({time.perf_counter() - t_start:.0f} s)")

    # ---- the judge
    p_real, f_real = classify(clf, images)
    p_fake, f_fake = classify(clf, fakes)
    p_rec, _ = classify(clf, recon)
    pred_real, pred_fake = p_real.argmax(1).numpy(), p_fake.argmax(1).numpy()
    pred_rec = p_rec.argmax(1).numpy()
    ref_cm = confusion(labels, pred_real)

    def expression(pred: np.ndarray) -> dict[str, Any]:
        cm = confusion(tgt, pred)
        per = {EMOTIONS[t]: float(cm[t, t] / cm[t].sum()) if cm[t].sum() else None
               for t in range(NUM_CLASSES)}
        return {"overall": float((pred == tgt).mean()), "per_target": per,
                "confusion": cm.tolist()}

    expr_model, expr_ident = expression(pred_fake), expression(pred_real[src])
    second = None
    if second_classifier is not None:
        clf2, cmeta2 = load_classifier(second_classifier, dev)
        p2_real, f2_real = classify(clf2, images)
        p2_fake, f2_fake = classify(clf2, fakes)
        fed2 = _distances(f2_real.numpy().astype(np.float64), f2_fake.numpy().astype(np.float64),
                          labels, src, tgt, seed, False, kid_subset_size, kid_subsets)
        second = {"path": str(second_classifier), "config": cmeta2.get("config"),
                  "accuracy_real": float((p2_real.argmax(1).numpy() == labels).mean()),
                  "expression_accuracy": expression(p2_fake.argmax(1).numpy()),
                  "identity_expression_accuracy":
                      expression(p2_real.argmax(1).numpy()[src])["overall"],
                  "fed": fed2["model"]["overall"]["frechet"],
                  "fed_floor": fed2["floor"]["overall"]["frechet"]}
        log(f"second judge: expression accuracy "
            f"{second['expression_accuracy']['overall']:.4f} (on real faces "
            f"{second['accuracy_real']:.4f}), FED {second['fed']:.3f} "
            f"(floor {second['fed_floor']:.3f})")
    log(f"expression accuracy {expr_model['overall']:.4f} (identity "
        f"{expr_ident['overall']:.4f}; classifier on real faces "
        f"{float((pred_real == labels).mean()):.4f}) ({time.perf_counter() - t_start:.0f} s)")

    # ---- realism on the classifier's features (FED)
    fed = _distances(f_real.numpy().astype(np.float64), f_fake.numpy().astype(np.float64),
                     labels, src, tgt, seed, False, kid_subset_size, kid_subsets)

    # ---- realism on Inception features (FID, KID)
    inc_info: dict[str, Any] = {"resize": fid_resize, "weights": None, "note": None}
    fid = None
    if inception is None and use_inception:
        try:
            inception = InceptionFeatures(inception_weights, resize=fid_resize, device=dev)
            inc_info["weights"] = str(inception.path)
        except InceptionWeightsError as e:
            inc_info["note"] = str(e)
            log(f"evaluate: FID/KID skipped: {e}")
    elif inception is not None:
        inc_info["weights"] = getattr(inception, "path", None) and str(inception.path)
        inc_info["extractor"] = type(inception).__name__
    if not use_inception and inception is None:
        inc_info["note"] = "FID/KID not requested"
    if inception is not None:
        t0 = time.perf_counter()
        i_real = np.asarray(inception(images), np.float64)
        i_fake = np.asarray(inception(fakes), np.float64)
        log(f"evaluate: Inception features of {n + len(fakes)} faces in "
            f"{time.perf_counter() - t0:.0f} s")
        fid = _distances(i_real, i_fake, labels, src, tgt, seed, True, kid_subset_size,
                         kid_subsets)

    # ---- the person: a face-recognition network's distance, input vs translation
    person = same_person(images, fakes, src, tgt, labels, identity, identity_faces, seed, log)

    # ---- content preservation
    rec_psnr = psnr(recon, images)
    content = {
        "reconstruction": {"l1": float(mae(recon, images).mean()),
                           "psnr": float(rec_psnr.mean()),
                           "psnr_of_mean_mse": float(10 * torch.log10(
                               1 / (_as_unit(recon) - _as_unit(images)).pow(2).mean())),
                           "ssim": float(ssim(recon, images).mean()),
                           "expression_kept": float((pred_rec == labels).mean())},
        "translation_change": region_change(images[torch.from_numpy(src)], fakes),
    }
    identity_content = {
        "reconstruction": {"l1": 0.0, "psnr": math.inf, "psnr_of_mean_mse": math.inf,
                           "ssim": 1.0, "expression_kept": float((pred_real == labels).mean())},
        "translation_change": {"inside": 0.0, "outside": 0.0},
    }

    counts = np.bincount(labels, minlength=NUM_CLASSES)
    per_target_n = {EMOTIONS[t]: {"translated": int((tgt == t).sum()), "real": int(counts[t])}
                    for t in range(NUM_CLASSES)}
    metrics: dict[str, Any] = {
        "checkpoint": str(checkpoint), "generator_step": gprog.get("step"),
        "intensity": intensity,
        "generator_strength": strength_json(E.strength),
        "generator_flip_average": E.flip_average,
        "generator_condition_scale": strength_json(E.condition_scale),
        "generator_members": len(E.members),
        "generator_config": {k: gcfg.to_dict()[k] for k in
                             ("gen_channels", "label_mode", "lr", "lambda_cl", "lambda_cyc",
                              "cycle_mode", "adv_loss", "seed")},
        "data": str(data), "split": "test (FER2013 PublicTest)",
        "classifier": {"path": str(classifier), "config": cmeta.get("config"),
                       "epoch": cmeta.get("epoch"),
                       "accuracy_real": float((pred_real == labels).mean()),
                       "per_class_real": {EMOTIONS[k]: float(ref_cm[k, k] / ref_cm[k].sum())
                                          if ref_cm[k].sum() else None
                                          for k in range(NUM_CLASSES)},
                       "confusion_real": ref_cm.tolist(), "tta": "face and mirror averaged"},
        "sample": {"faces": n, "faces_available": n_available, "blank_dropped": n_blank,
                   "limit": limit, "seed": seed, "class_counts": counts.tolist(),
                   "translations": len(fakes), "per_target": per_target_n},
        "face_box": {"rows": list(FACE_BOX[:2]), "cols": list(FACE_BOX[2:]),
                     "note": "central 32x32 box, end exclusive; change is |G(x|t) - x| / 255"},
        "second_judge": second, "person": person,
        "model": {"expression_accuracy": expr_model, "fed": fed["model"],
                  "unchanged": unchanged_share(images[torch.from_numpy(src)], fakes),
                  "fid": None if fid is None else fid["model"], **content},
        "identity": {"expression_accuracy": expr_ident, "fed": fed["identity"],
                     "fid": None if fid is None else fid["identity"], **identity_content},
        "floor": {"fed": fed["floor"], "fid": None if fid is None else fid["floor"]},
        "inception": inc_info,
        "kid": {"subset_size": kid_subset_size, "subsets": kid_subsets,
                "kernel": "(x.y/d + 1)^3", "estimator": "unbiased MMD^2"},
    }
    metrics = _clean(metrics)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "metrics.json", metrics)
    confusion_image(expr_model["confusion"], EMOTIONS, EMOTIONS,
                    title=f"translations: expression accuracy "
                          f"{100 * expr_model['overall']:.1f}% (n={len(fakes)})",
                    row_axis="target emotion", col_axis="classifier's prediction"
                    ).save(out / "confusion.png")
    confusion_image(expr_ident["confusion"], EMOTIONS, EMOTIONS,
                    title=f"identity baseline: {100 * expr_ident['overall']:.1f}%",
                    row_axis="target emotion", col_axis="classifier's prediction"
                    ).save(out / "confusion_identity.png")
    show = min(8, n)
    grid_image(images[:show], all7[:show, :, 0], faces.labels[:show]).save(out / "samples.png")
    atomic_write_text(out / "report.md", render_report(metrics))
    log(f"evaluate: wrote {out}/metrics.json, report.md ({time.perf_counter() - t_start:.0f} s)")
    return metrics


# =========================================================================== report


def _f(v: Any, fmt: str = ".3f", scale: float = 1.0) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float) and math.isinf(v):
        return "inf"
    return format(v * scale, fmt)


def _mean_of(entries: dict[str, dict[str, Any]]) -> float | None:
    vals = [e["frechet"] for e in entries.values()]
    return None if any(v is None for v in vals) or not vals else sum(vals) / len(vals)


def _pct(v: Any) -> str:
    return "n/a" if v is None else f"{100 * v:.1f}%"


def _edit_note(m: dict[str, Any]) -> str:
    """What the scored edit is beyond G itself: shipped strength, intensity, mirror averaging and
    condition scale, each named only when it is not the default."""
    parts = [f"{name} {strength_text(m[key])}"
             for key, name in (("generator_strength", "shipped strength"),
                               ("intensity", "intensity"))
             if m.get(key, 1.0) != 1.0]
    if m.get("generator_flip_average"):
        parts.append("mirror-averaged")
    if m.get("generator_condition_scale", 1.0) != 1.0:
        parts.append(f"condition scale {strength_text(m['generator_condition_scale'])}")
    if m.get("generator_members", 1) > 1:
        parts.append(f"mean of {m['generator_members']} generators")
    return "".join(", " + p for p in parts)


def render_report(m: dict[str, Any]) -> str:
    s, mod, ide, clf = m["sample"], m["model"], m["identity"], m["classifier"]
    names = list(EMOTIONS)
    lines = [
        "# CCycleGAN evaluation", "",
        f"- generator: `{m['checkpoint']}` (step {m['generator_step']}{_edit_note(m)})",
        f"- data: `{m['data']}`, split {m['split']}: {s['faces']} faces "
        f"({s['blank_dropped']} blank dropped; "
        + (f"seeded subset of {s['faces_available']} with --limit {s['limit']}, "
           if s["faces"] < s["faces_available"] else "")
        + f"seed {s['seed']}); class counts "
        + ", ".join(f"{e} {c}" for e, c in zip(names, s["class_counts"], strict=True)),
        f"- translations: {s['translations']} (each face to each of the other 6 emotions)",
        f"- classifier: `{clf['path']}` (epoch {clf['epoch']}), "
        f"mirror-averaged predictions",
        "", "## Expression accuracy", "",
        "Share of translations that the classifier assigns to the target emotion. The identity "
        "mapping (input unchanged) scores the classifier's confusion rate; the classifier's "
        "accuracy on the real faces (per true emotion) is the reference.", "",
        "| | overall | " + " | ".join(names) + " |",
        "|---|---|" + "---|" * len(names),
        "| CCycleGAN | " + _pct(mod["expression_accuracy"]["overall"]) + " | "
        + " | ".join(_pct(mod["expression_accuracy"]["per_target"][e]) for e in names) + " |",
        "| identity | " + _pct(ide["expression_accuracy"]["overall"]) + " | "
        + " | ".join(_pct(ide["expression_accuracy"]["per_target"][e]) for e in names) + " |",
        "| classifier on real faces (reference) | " + _pct(clf["accuracy_real"]) + " | "
        + " | ".join(_pct(clf["per_class_real"][e]) for e in names) + " |",
        "",
    ]
    if (sec := m.get("second_judge")) is not None:
        arch = (sec.get("config") or {}).get("arch", "vgg")
        lines += [
            f"Second judge `{sec['path']}` ({arch}; {_pct(sec['accuracy_real'])} on the real "
            f"faces; identity {_pct(sec['identity_expression_accuracy'])}):", "",
            "| | overall | " + " | ".join(names) + " |",
            "|---|---|" + "---|" * len(names),
            "| CCycleGAN | " + _pct(sec["expression_accuracy"]["overall"]) + " | "
            + " | ".join(_pct(sec["expression_accuracy"]["per_target"][e]) for e in names)
            + " |", "",
            f"Its FED: {_f(sec['fed'])} (floor {_f(sec['fed_floor'])}).", ""]
    unch = mod.get("unchanged")
    if unch is not None:
        lines += [f"Requests that leave the face nearly unchanged (mean change in the face box "
                  f"under {unch['threshold_grey_levels']:g} grey level): "
                  f"{_pct(unch['share'])}; mean change there "
                  f"{unch['mean_change_grey_levels']:.1f} grey levels.", ""]
    if (per := m.get("person")) is not None:
        th = per["thresholds"]
        other = per["another_person_of_the_target_emotion"]
        lines += [
            "## Same person", "",
            f"{per['model']} distance between a face and its translation ({per['translations']}"
            f" translations of the first {per['faces']} faces), under the 1%-false-accept "
            f"threshold measured on 48x48 PublicTest faces ({th['fer_1pct_far']}) and dlib's "
            f"own ({th['dlib']}). Reference: the face against a real face of the target "
            "emotion, another person.", "",
            "| | kept (1% FAR) | kept (dlib 0.6) | median distance |", "|---|---|---|---|",
            f"| CCycleGAN | {_pct(per['kept'][str(th['fer_1pct_far'])])} | "
            f"{_pct(per['kept'][str(th['dlib'])])} | {_f(per['median_distance'])} |",
            f"| another person | {_pct(other['kept'][str(th['fer_1pct_far'])])} | "
            f"{_pct(other['kept'][str(th['dlib'])])} | {_f(other['median_distance'])} |", ""]
        if per.get("per_target"):  # which requests cost the person (1% FAR threshold)
            lines += ["Kept (1% FAR) by target: " + ", ".join(
                f"{e} {_pct(v)}" for e, v in per["per_target"].items()), ""]
    lines += [
        "![confusion](confusion.png) ![identity](confusion_identity.png)", "",
        "## Realism", "",
        "Frechet distance between the translations to emotion t and the real test faces of "
        "emotion t (and overall: all translations vs all real faces; note the class mix "
        "differs). FED uses the classifier's penultimate features; FID/KID use Inception-v3 "
        "pool3 features. The floor is the distance between two random halves of the real "
        "faces (per emotion: halves of that emotion, so smaller samples).", "",
    ]
    fed, fid = mod["fed"], mod["fid"]
    header = ["target", "n transl.", "n real", "FED", "FED identity", "FED floor"]
    if fid is not None:
        header += ["FID", "FID identity", "FID floor", "KID x1e3", "KID identity x1e3"]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for e in [*names, "overall"]:
        def pick(block: dict | None, e: str = e) -> dict | None:
            if block is None:
                return None
            return block["overall"] if e == "overall" else block["per_target"][e]

        def floor_of(block: dict | None, e: str = e) -> dict | None:
            if block is None:
                return None
            return block["overall"] if e == "overall" else block["per_emotion"][e]

        n_t = s["translations"] if e == "overall" else s["per_target"][e]["translated"]
        n_r = s["faces"] if e == "overall" else s["per_target"][e]["real"]
        row = [e, str(n_t), str(n_r), _f(pick(fed)["frechet"]),
               _f(pick(ide["fed"])["frechet"]), _f(floor_of(m["floor"]["fed"])["frechet"])]
        if fid is not None:
            k_m, k_i = pick(fid)["kid"], pick(ide["fid"])["kid"]
            row += [_f(pick(fid)["frechet"], ".2f"), _f(pick(ide["fid"])["frechet"], ".2f"),
                    _f(floor_of(m["floor"]["fid"])["frechet"], ".2f"),
                    "n/a" if k_m is None else f"{1e3 * k_m['mean']:.2f} ± {1e3 * k_m['std']:.2f}",
                    "n/a" if k_i is None else f"{1e3 * k_i['mean']:.2f} ± {1e3 * k_i['std']:.2f}"]
        lines.append("| " + " | ".join(row) + " |")
    fed_mean = _mean_of(fed["per_target"])
    floor_mean = _mean_of(m["floor"]["fed"]["per_emotion"])
    lines += ["", f"FED, mean over the 7 targets: {_f(fed_mean)} against a mean floor of "
              f"{_f(floor_mean)} ({_f(fed_mean / floor_mean, '.2f')}x); the identity mapping: "
              f"{_f(_mean_of(ide['fed']['per_target']))}." if fed_mean and floor_mean else
              "FED mean: n/a.", ""]
    inc = m["inception"]
    if fid is None:
        lines += [f"FID/KID: not computed. {inc['note']}", ""]
    else:
        source = (f"Inception weights `{inc['weights']}`, resize `{inc['resize']}`"
                  if inc["weights"] else f"feature extractor `{inc.get('extractor')}`")
        lines += [f"FID/KID: {source}; "
                  f"KID: {m['kid']['estimator']}, kernel {m['kid']['kernel']}, "
                  f"{m['kid']['subsets']} subsets of up to {m['kid']['subset_size']}.", ""]
    rec, chg = mod["reconstruction"], mod["translation_change"]
    box = m["face_box"]
    lines += [
        "## Content preservation", "",
        "Reconstruction G(x|y_x) (decoded under the face's own emotion) against x, on the "
        "0..1 scale; SSIM with an 11x11 Gaussian window (sigma 1.5), valid windows only. "
        f"Change: mean |G(x|t) - x| inside / outside the central face box (rows "
        f"{box['rows'][0]}-{box['rows'][1] - 1}, columns {box['cols'][0]}-{box['cols'][1] - 1}"
        " of 48x48).", "",
        "| | recon. L1 | recon. PSNR (dB) | recon. SSIM | recon. keeps expression | "
        "change inside box | change outside box |",
        "|---|---|---|---|---|---|---|",
        f"| CCycleGAN | {_f(rec['l1'], '.4f')} | {_f(rec['psnr'], '.2f')} | "
        f"{_f(rec['ssim'], '.4f')} | {_pct(rec['expression_kept'])} | "
        f"{_f(chg['inside'], '.4f')} | {_f(chg['outside'], '.4f')} |",
        "| identity | 0 | inf | 1 | " + _pct(ide["reconstruction"]["expression_kept"])
        + " | 0 | 0 |",
        "", "![samples](samples.png)", "",
    ]
    return "\n".join(lines)
