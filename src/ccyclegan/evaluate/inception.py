"""The FID Inception-v3: pool3 (2048-d) features of the 2015-12-05 TensorFlow graph.

This is the network that the reference FID implementations use (TTUR's TensorFlow code, and
its PyTorch ports pytorch-fid and torch-fidelity), written here from scratch. It differs from
torchvision's Inception-v3 in four places, all following the TF graph: 1008 output classes,
average pools that do not count padding, max (not average) pooling in the last block's pool
branch, and BatchNorm eps 1e-3. Parameter names follow the state-dict layout of the published
weight files, so either file loads as is:

* pytorch-fid:   pt_inception-2015-12-05-6726825d.pth
* torch-fidelity: weights-inception-2015-12-05-6726825d.pth

Nothing is downloaded: point `weights` at a local copy (.pth, read with
torch.load(weights_only=True), or .safetensors), or put it in the torch hub cache
(`default_weights_path()` lists where we look).

Preprocessing: uint8 images, grey replicated to 3 channels, resized to 299x299 bilinearly,
then scaled to [-1, 1]. `resize="tf"` (default) reproduces TensorFlow 1.x's resize_bilinear
(align_corners=False, the half-pixel-free legacy mapping, float32 source coordinates) and the
graph's (x - 128) / 128, as TTUR and torch-fidelity do; `resize="pytorch-fid"` reproduces
pytorch-fid (torch bilinear interpolation with half-pixel centres on x / 255, then 2x - 1),
whose FIDs differ slightly from TensorFlow's.
"""

from __future__ import annotations

import pickle
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn

from ccyclegan.core.runtime import error_reason

WEIGHT_FILES = {
    "pt_inception-2015-12-05-6726825d.pth":
        "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
        "pt_inception-2015-12-05-6726825d.pth",
    "weights-inception-2015-12-05-6726825d.pth":
        "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/"
        "weights-inception-2015-12-05-6726825d.pth",
}
RESIZE_MODES = ("tf", "pytorch-fid")
SIZE = 299
FEATURE_DIM = 2048


class InceptionWeightsError(FileNotFoundError):
    """The FID Inception weights are missing or are not the FID Inception's."""


def _hub_checkpoints() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints"


def default_weights_path() -> Path | None:
    """The first of the known weight files found in the torch hub cache, else None."""
    for name in WEIGHT_FILES:
        p = _hub_checkpoints() / name
        if p.is_file():
            return p
    return None


def how_to_get_weights() -> str:
    name, url = next(iter(WEIGHT_FILES.items()))
    return (f"FID/KID need the FID Inception weights, which are not on this machine. Download "
            f"{url} (or torch-fidelity's {list(WEIGHT_FILES.values())[1]}) and either put it in "
            f"{_hub_checkpoints()}/ (the torch hub cache, $TORCH_HOME) or pass "
            f"--inception-weights PATH. Everything else is computed without it.")


# --------------------------------------------------------------------------- the network


class ConvBN(nn.Module):
    """Conv (no bias) -> BatchNorm(eps 1e-3) -> ReLU; parameters named conv.* and bn.*."""

    def __init__(self, cin: int, cout: int, kernel: int | tuple[int, int],
                 stride: int = 1, padding: int | tuple[int, int] = 0):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride, padding, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=1e-3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


def _run(x: torch.Tensor, *layers: nn.Module) -> torch.Tensor:
    for layer in layers:
        x = layer(x)
    return x


def _avg_same(x: torch.Tensor) -> torch.Tensor:
    """TF's 3x3/1 SAME average pool: border windows average only the real pixels."""
    return F.avg_pool2d(x, 3, 1, 1, count_include_pad=False)


class Block35(nn.Module):
    """Mixed_5b/5c/5d (35x35): 1x1 | 1x1-5x5 | 1x1-3x3-3x3 | avgpool-1x1."""

    def __init__(self, cin: int, pool_out: int):
        super().__init__()
        self.branch1x1 = ConvBN(cin, 64, 1)
        self.branch5x5_1 = ConvBN(cin, 48, 1)
        self.branch5x5_2 = ConvBN(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = ConvBN(cin, 64, 1)
        self.branch3x3dbl_2 = ConvBN(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = ConvBN(96, 96, 3, padding=1)
        self.branch_pool = ConvBN(cin, pool_out, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([
            self.branch1x1(x),
            _run(x, self.branch5x5_1, self.branch5x5_2),
            _run(x, self.branch3x3dbl_1, self.branch3x3dbl_2, self.branch3x3dbl_3),
            self.branch_pool(_avg_same(x)),
        ], 1)


class Reduce35(nn.Module):
    """Mixed_6a: 35x35 -> 17x17."""

    def __init__(self, cin: int):
        super().__init__()
        self.branch3x3 = ConvBN(cin, 384, 3, stride=2)
        self.branch3x3dbl_1 = ConvBN(cin, 64, 1)
        self.branch3x3dbl_2 = ConvBN(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = ConvBN(96, 96, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([
            self.branch3x3(x),
            _run(x, self.branch3x3dbl_1, self.branch3x3dbl_2, self.branch3x3dbl_3),
            F.max_pool2d(x, 3, 2),
        ], 1)


class Block17(nn.Module):
    """Mixed_6b..6e (17x17) with factorised 7x7 convolutions."""

    def __init__(self, cin: int, mid: int):
        super().__init__()
        row = {"kernel": (1, 7), "padding": (0, 3)}
        col = {"kernel": (7, 1), "padding": (3, 0)}
        self.branch1x1 = ConvBN(cin, 192, 1)
        self.branch7x7_1 = ConvBN(cin, mid, 1)
        self.branch7x7_2 = ConvBN(mid, mid, **row)
        self.branch7x7_3 = ConvBN(mid, 192, **col)
        self.branch7x7dbl_1 = ConvBN(cin, mid, 1)
        self.branch7x7dbl_2 = ConvBN(mid, mid, **col)
        self.branch7x7dbl_3 = ConvBN(mid, mid, **row)
        self.branch7x7dbl_4 = ConvBN(mid, mid, **col)
        self.branch7x7dbl_5 = ConvBN(mid, 192, **row)
        self.branch_pool = ConvBN(cin, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([
            self.branch1x1(x),
            _run(x, self.branch7x7_1, self.branch7x7_2, self.branch7x7_3),
            _run(x, self.branch7x7dbl_1, self.branch7x7dbl_2, self.branch7x7dbl_3,
                 self.branch7x7dbl_4, self.branch7x7dbl_5),
            self.branch_pool(_avg_same(x)),
        ], 1)


class Reduce17(nn.Module):
    """Mixed_7a: 17x17 -> 8x8."""

    def __init__(self, cin: int):
        super().__init__()
        self.branch3x3_1 = ConvBN(cin, 192, 1)
        self.branch3x3_2 = ConvBN(192, 320, 3, stride=2)
        self.branch7x7x3_1 = ConvBN(cin, 192, 1)
        self.branch7x7x3_2 = ConvBN(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = ConvBN(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = ConvBN(192, 192, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([
            _run(x, self.branch3x3_1, self.branch3x3_2),
            _run(x, self.branch7x7x3_1, self.branch7x7x3_2, self.branch7x7x3_3,
                 self.branch7x7x3_4),
            F.max_pool2d(x, 3, 2),
        ], 1)


class Block8(nn.Module):
    """Mixed_7b/7c (8x8), with the 1x3 / 3x1 split heads. The TF graph pools the last block's
    pool branch with a max pool (pool="max"), the one before with an average."""

    def __init__(self, cin: int, pool: str):
        super().__init__()
        self.pool = pool
        self.branch1x1 = ConvBN(cin, 320, 1)
        self.branch3x3_1 = ConvBN(cin, 384, 1)
        self.branch3x3_2a = ConvBN(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = ConvBN(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = ConvBN(cin, 448, 1)
        self.branch3x3dbl_2 = ConvBN(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = ConvBN(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = ConvBN(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = ConvBN(cin, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.branch3x3_1(x)
        b = _run(x, self.branch3x3dbl_1, self.branch3x3dbl_2)
        pooled = F.max_pool2d(x, 3, 1, 1) if self.pool == "max" else _avg_same(x)
        return torch.cat([
            self.branch1x1(x),
            self.branch3x3_2a(a), self.branch3x3_2b(a),
            self.branch3x3dbl_3a(b), self.branch3x3dbl_3b(b),
            self.branch_pool(pooled),
        ], 1)


class FIDInception(nn.Module):
    """Inception-v3 as in the FID graph, up to the 2048-d global average pool ('pool3').
    `fc` (1008 logits) is kept only so the published state dicts load unchanged."""

    def __init__(self):
        super().__init__()
        self.Conv2d_1a_3x3 = ConvBN(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = ConvBN(32, 32, 3)
        self.Conv2d_2b_3x3 = ConvBN(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = ConvBN(64, 80, 1)
        self.Conv2d_4a_3x3 = ConvBN(80, 192, 3)
        self.Mixed_5b = Block35(192, 32)
        self.Mixed_5c = Block35(256, 64)
        self.Mixed_5d = Block35(288, 64)
        self.Mixed_6a = Reduce35(288)
        self.Mixed_6b = Block17(768, 128)
        self.Mixed_6c = Block17(768, 160)
        self.Mixed_6d = Block17(768, 160)
        self.Mixed_6e = Block17(768, 192)
        self.Mixed_7a = Reduce17(768)
        self.Mixed_7b = Block8(1280, pool="avg")
        self.Mixed_7c = Block8(2048, pool="max")
        self.fc = nn.Linear(FEATURE_DIM, 1008)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, 3, 299, 299] in [-1, 1] -> pool3 features [B, 2048]."""
        x = _run(x, self.Conv2d_1a_3x3, self.Conv2d_2a_3x3, self.Conv2d_2b_3x3)
        x = F.max_pool2d(x, 3, 2)
        x = _run(x, self.Conv2d_3b_1x1, self.Conv2d_4a_3x3)
        x = F.max_pool2d(x, 3, 2)
        x = _run(x, self.Mixed_5b, self.Mixed_5c, self.Mixed_5d, self.Mixed_6a, self.Mixed_6b,
                 self.Mixed_6c, self.Mixed_6d, self.Mixed_6e, self.Mixed_7a, self.Mixed_7b,
                 self.Mixed_7c)
        return x.mean((2, 3))


# --------------------------------------------------------------------------- weights


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from .safetensors or .pth/.pt (tensors only: weights_only=True)."""
    path = Path(path)
    if not path.is_file():
        raise InceptionWeightsError(f"{path}: Inception weights not found. {how_to_get_weights()}")
    try:
        if path.suffix == ".safetensors":
            sd = load_file(str(path))
        else:
            # The one place a pickle is read, because the published FID weights are .pth
            # files: weights_only=True is torch's restricted unpickler, which builds tensors
            # and plain containers only and refuses any other global (os.system, ...)
            # without calling it.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # "pickle protocol 4" notices
                sd = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        lines = [ln.strip() for ln in str(e).splitlines()]
        code = next((ln for ln in lines if "GLOBAL" in ln), None)
        if code is None:  # not a pickle at all, or a broken one
            why = next((ln for ln in lines if "unsupported" in ln.lower()), "unreadable")
            raise InceptionWeightsError(f"{path}: cannot read Inception weights: not a torch "
                                        f"weights file ({why})") from None
        raise InceptionWeightsError(
            f"{path}: refused: this pickle holds more than tensors ({code}); .pth weights are "
            f"read with torch.load(weights_only=True), which never runs code from the file; "
            f"use the published pytorch-fid / torch-fidelity file or a .safetensors") from None
    except Exception as e:  # truncated file, not a pickle or zip, ...
        raise InceptionWeightsError(f"{path}: cannot read Inception weights: "
                                    f"{error_reason(e)}") from None
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict) or not all(torch.is_tensor(v) for v in sd.values()):
        raise InceptionWeightsError(f"{path}: not a state dict of tensors")
    return sd


def load_weights(model: FIDInception, sd: dict[str, torch.Tensor], source: str = "weights"
                 ) -> None:
    """Load a pytorch-fid / torch-fidelity state dict. BatchNorm's num_batches_tracked and
    the fc layer are optional; torchvision's auxiliary classifier (AuxLogits.*) is ignored."""
    own = model.state_dict()
    fc = sd.get("fc.weight")
    if fc is not None and tuple(fc.shape) != (1008, FEATURE_DIM):
        raise InceptionWeightsError(
            f"{source}: fc has {fc.shape[0]} classes; the FID Inception has 1008 (this looks "
            f"like torchvision's ImageNet Inception, whose features give different FIDs). "
            f"{how_to_get_weights()}")
    optional = {k for k in own if k.endswith("num_batches_tracked") or k.startswith("fc.")}
    missing = sorted(set(own) - set(sd) - optional)
    unexpected = sorted(k for k in set(sd) - set(own) if not k.startswith("AuxLogits."))
    wrong = sorted(k for k in set(own) & set(sd) if own[k].shape != sd[k].shape)
    if missing or unexpected or wrong:
        detail = []
        if missing:
            detail.append(f"missing {missing[:3]}{' ...' if len(missing) > 3 else ''}")
        if unexpected:
            detail.append(f"unexpected {unexpected[:3]}{' ...' if len(unexpected) > 3 else ''}")
        if wrong:
            detail.append(f"shape of {wrong[0]}: file {tuple(sd[wrong[0]].shape)}, "
                          f"model {tuple(own[wrong[0]].shape)}")
        raise InceptionWeightsError(f"{source}: not FID Inception-v3 weights: "
                                    + "; ".join(detail))
    merged = {k: (sd[k] if k in sd else own[k]).to(own[k].dtype) for k in own}
    model.load_state_dict(merged)


# --------------------------------------------------------------------------- preprocessing


def tf_bilinear_matrix(n_in: int, n_out: int) -> torch.Tensor:
    """[n_out, n_in] weights of TF 1.x resize_bilinear(align_corners=False) along one axis:
    output i samples the input at float32(i) * float32(n_in / n_out) (no half-pixel offset),
    linearly between floor and floor + 1 (clamped to the last pixel)."""
    scale = np.float32(n_in / n_out)
    src = np.arange(n_out, dtype=np.float32) * scale
    lo = np.floor(src).astype(np.int64)
    frac = (src - lo.astype(np.float32)).astype(np.float64)
    hi = np.minimum(lo + 1, n_in - 1)
    m = np.zeros((n_out, n_in), np.float64)
    rows = np.arange(n_out)
    np.add.at(m, (rows, lo), 1.0 - frac)
    np.add.at(m, (rows, hi), frac)
    return torch.from_numpy(m)


def preprocess(images: torch.Tensor, resize: str = "tf",
               dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """uint8 [B, 1 or 3, H, W] -> float [B, 3, 299, 299] in [-1, 1], as the reference FID
    implementations feed the network."""
    if images.dtype != torch.uint8:
        raise TypeError(f"Inception features take uint8 images, got {images.dtype}")
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"expected images [B, 1 or 3, H, W], got {list(images.shape)}")
    x = images.to(dtype)
    if resize == "tf":
        h, w = x.shape[-2:]
        if (h, w) != (SIZE, SIZE):
            mh = tf_bilinear_matrix(h, SIZE).to(dtype).to(x.device)
            mw = tf_bilinear_matrix(w, SIZE).to(dtype).to(x.device)
            x = mh @ x @ mw.T
        x = (x - 128.0) / 128.0
    elif resize == "pytorch-fid":
        x = F.interpolate(x / 255.0, size=(SIZE, SIZE), mode="bilinear", align_corners=False)
        x = 2.0 * x - 1.0
    else:
        raise ValueError(f"resize must be one of {RESIZE_MODES}, got {resize!r}")
    if x.shape[1] == 1:  # grey: the same plane for R, G and B (resizing is per channel)
        x = x.expand(-1, 3, -1, -1)
    return x.contiguous()


class InceptionFeatures:
    """Callable: uint8 images [N, 1 or 3, H, W] -> pool3 features [N, 2048] (float64 numpy).

    `weights`: a file, or None for the torch hub cache (`default_weights_path`); raises
    InceptionWeightsError, whose message says how to get the file, when there is none."""

    def __init__(self, weights: str | Path | None = None, resize: str = "tf",
                 device: str | torch.device = "cpu", batch_size: int = 32,
                 dtype: torch.dtype = torch.float32):
        if resize not in RESIZE_MODES:
            raise ValueError(f"resize must be one of {RESIZE_MODES}, got {resize!r}")
        path = Path(weights) if weights is not None else default_weights_path()
        if path is None:
            raise InceptionWeightsError(how_to_get_weights())
        self.path, self.resize, self.batch_size, self.dtype = path, resize, batch_size, dtype
        self.device = torch.device(device)
        model = FIDInception()
        load_weights(model, read_state_dict(path), str(path))
        self.model = model.to(self.device, dtype).eval().requires_grad_(False)

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> np.ndarray:
        out = [np.zeros((0, FEATURE_DIM))]
        for chunk in images.split(self.batch_size):
            x = preprocess(chunk.to(self.device), self.resize, self.dtype)
            out.append(self.model(x).double().cpu().numpy())
        return np.concatenate(out)
