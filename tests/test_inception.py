"""The FID Inception: same features as the reference implementation (torch-fidelity's port of
the 2015-12-05 TF graph) for one set of random weights, loading rules, and the how-to message
when the weights are missing."""

import numpy as np
import pytest
import torch
from fidelity_ref import reference

from ccyclegan.evaluate.inception import (
    WEIGHT_FILES,
    FIDInception,
    InceptionFeatures,
    InceptionWeightsError,
    default_weights_path,
    how_to_get_weights,
    load_weights,
    preprocess,
    read_state_dict,
    tf_bilinear_matrix,
)

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def random_weights(tmp_path_factory):
    """Random FID-Inception weights whose BatchNorm statistics are calibrated on a batch, so
    every layer carries signal (with default statistics the deep features would be ~0 and a
    comparison would prove little). Saved as a plain .pth state dict, like the real file."""
    torch.manual_seed(0)
    model = FIDInception()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.momentum = None  # running stats = this batch's stats
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
        model.train()
        model(preprocess(torch.randint(0, 256, (1, 1, 48, 48), dtype=torch.uint8)))
    path = tmp_path_factory.mktemp("inception") / "pt_inception-random.pth"
    torch.save(model.state_dict(), path)
    return path


@pytest.fixture(scope="module")
def reference_extractor(random_weights):
    ref = reference("feature_extractor_inceptionv3")

    def make(dtype: str):
        return ref.FeatureExtractorInceptionV3(
            "inception-v3-compat", ["2048"], feature_extractor_weights_path=str(random_weights),
            feature_extractor_internal_dtype=dtype)
    return make


def _grey(n, size, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 1, size, size), generator=g, dtype=torch.uint8)


def test_network_matches_reference_float64(random_weights, reference_extractor):
    """At 299x299 no resizing happens, so this compares the networks alone, in float64."""
    faces = _grey(1, 299, 1)
    ours = InceptionFeatures(random_weights, dtype=torch.float64)(faces)
    ref = reference_extractor("float64")(faces.expand(-1, 3, -1, -1).contiguous())[0]
    ref = ref.double().numpy()  # torch-fidelity returns float32 features
    assert ours.shape == (1, 2048)
    assert ours.std() > 1e-2  # real signal, not all zeros
    np.testing.assert_allclose(ours, ref, rtol=1e-6, atol=1e-6 * np.abs(ref).max())


def test_resize_matches_tensorflow1_bilinear():
    ref = reference("interpolate_compat_tensorflow")
    faces = _grey(3, 48, 2)
    ours = preprocess(faces, "tf")
    theirs = (ref.interpolate_bilinear_2d_like_tensorflow1x(
        faces.expand(-1, 3, -1, -1).float(), size=(299, 299), align_corners=False) - 128) / 128
    assert ours.shape == (3, 3, 299, 299)
    assert (ours - theirs).abs().max() < 2e-6


def test_features_of_48px_faces_match_reference_float32(random_weights, reference_extractor):
    faces = _grey(1, 48, 3)
    ours = InceptionFeatures(random_weights)(faces)
    ref = reference_extractor("float32")(faces.expand(-1, 3, -1, -1).contiguous())[0].numpy()
    # float32 rounding, amplified by the random (badly conditioned) network
    np.testing.assert_allclose(ours, ref, atol=2e-3 * np.abs(ref).max())


def test_features_react_to_weights_and_resize(random_weights):
    """The equivalence tests can fail: a changed weight or the other resize gives other
    features. (The network alone at its smallest input, 75x75, to keep this fast.)"""
    model = FIDInception()
    load_weights(model, read_state_dict(random_weights))
    model.eval()
    x = preprocess(_grey(1, 48, 4)[..., :48, :48], "tf")[..., :75, :75]
    with torch.no_grad():
        base = model(x)
        assert torch.equal(base, model(x))  # deterministic
        x_other = preprocess(_grey(1, 48, 4), "pytorch-fid")[..., :75, :75]
        assert (model(x_other) - base).abs().max() > 1e-3
        model.Mixed_7c.branch_pool.conv.weight.mul_(1.5)
        assert (model(x) - base).abs().max() > 1e-3


def test_tf_bilinear_matrix():
    m = tf_bilinear_matrix(2, 4).numpy()  # source positions 0, .5, 1, 1.5 -> clamped
    np.testing.assert_allclose(m, [[1, 0], [0.5, 0.5], [0, 1], [0, 1]])
    m = tf_bilinear_matrix(48, 299).numpy()
    np.testing.assert_allclose(m.sum(1), 1.0)
    assert np.array_equal(tf_bilinear_matrix(5, 5).numpy(), np.eye(5))


def test_weight_files_load_in_every_accepted_form(random_weights, tmp_path):
    from safetensors.torch import save_file

    sd = read_state_dict(random_weights)  # .pth
    model = FIDInception()
    load_weights(model, sd)
    base = {k: v.clone() for k, v in model.state_dict().items()}
    assert all(torch.equal(base[k], sd[k]) for k in sd)
    # no num_batches_tracked / fc (older exports); torchvision's AuxLogits extra is ignored
    lean = {k: v for k, v in sd.items()
            if not k.endswith("num_batches_tracked") and not k.startswith("fc.")}
    for variant in (lean, {**sd, "AuxLogits.fc.weight": torch.zeros(3)}):
        model = FIDInception()
        load_weights(model, variant)
        got = model.state_dict()
        assert all(torch.equal(got[k], base[k]) for k in variant if k in base)
    # file formats: safetensors, and a checkpoint dict with a "state_dict" entry
    small = {"a.weight": torch.arange(6.0).reshape(2, 3)}
    save_file(small, str(tmp_path / "w.safetensors"))
    torch.save({"state_dict": small}, tmp_path / "w.pt")
    for name in ("w.safetensors", "w.pt"):
        assert torch.equal(read_state_dict(tmp_path / name)["a.weight"], small["a.weight"])


def test_wrong_weights_are_refused(random_weights, tmp_path):
    sd = read_state_dict(random_weights)
    tv = {**sd, "fc.weight": torch.zeros(1000, 2048), "fc.bias": torch.zeros(1000)}
    with pytest.raises(InceptionWeightsError, match="1008"):
        load_weights(FIDInception(), tv, "torchvision.pth")
    partial = {k: v for k, v in sd.items() if not k.startswith("Mixed_7c.")}
    with pytest.raises(InceptionWeightsError, match="missing"):
        load_weights(FIDInception(), partial, "partial.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(InceptionWeightsError, match="cannot read"):
        read_state_dict(tmp_path / "junk.pth")
    # pickles with code are refused (weights_only=True)
    torch.save({"x": ValueError("code, not tensors")}, tmp_path / "pickle.pth")
    with pytest.raises(InceptionWeightsError):
        read_state_dict(tmp_path / "pickle.pth")


def test_missing_weights_say_how_to_get_them(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "_hub_dir", None, raising=False)  # use $TORCH_HOME/hub
    assert default_weights_path() is None
    with pytest.raises(InceptionWeightsError) as e:
        InceptionFeatures()
    msg = str(e.value)
    assert list(WEIGHT_FILES.values())[0] in msg and str(tmp_path / "hub") in msg
    assert "--inception-weights" in msg and msg == how_to_get_weights()
    with pytest.raises(InceptionWeightsError, match="not found"):
        InceptionFeatures(tmp_path / "nope.pth")
    # found in the hub cache under its usual name
    ckpt = tmp_path / "hub" / "checkpoints"
    ckpt.mkdir(parents=True)
    (ckpt / "pt_inception-2015-12-05-6726825d.pth").write_bytes(b"")
    assert default_weights_path() == ckpt / "pt_inception-2015-12-05-6726825d.pth"


def test_preprocess_checks_input():
    with pytest.raises(TypeError):
        preprocess(torch.zeros(1, 1, 48, 48))
    with pytest.raises(ValueError):
        preprocess(torch.zeros(1, 2, 48, 48, dtype=torch.uint8))
    with pytest.raises(ValueError):
        preprocess(torch.zeros(1, 1, 48, 48, dtype=torch.uint8), resize="nearest")
    x = preprocess(torch.full((1, 1, 48, 48), 255, dtype=torch.uint8), "pytorch-fid")
    assert torch.allclose(x, torch.ones_like(x))
    x = preprocess(torch.full((1, 1, 48, 48), 128, dtype=torch.uint8), "tf")
    assert torch.equal(x, torch.zeros_like(x))
