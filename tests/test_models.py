import pytest
import torch

from ccyclegan.core.config import Config
from ccyclegan.core.losses import classification, d_adversarial
from ccyclegan.core.models import (
    MAX_FLOW,
    Discriminator,
    Ensemble,
    Generator,
    build_models,
    init_weights,
    mirror_flow,
    one_hot,
    warp,
)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.mark.parametrize("label_mode", ["bottleneck", "planes", "norm"])
def test_generator_shapes_and_enc_dec_split(label_mode):
    G = Generator(8, label_mode=label_mode)
    x = torch.rand(3, 1, 48, 48) * 2 - 1
    c = one_hot(torch.tensor([0, 3, 6]))
    y = G(x, c)
    assert y.shape == x.shape and y.min() >= -1 and y.max() <= 1
    feats = G.encode(x)
    assert feats[-1].shape == (3, 64)  # 1x1 bottleneck code, 8 * channels
    assert torch.allclose(G.decode(feats, c), y)


@pytest.mark.parametrize("label_mode", ["bottleneck", "planes", "norm"])
def test_target_label_changes_output(label_mode):
    cfg = Config(gen_channels=8, label_mode=label_mode)
    G, _ = build_models(cfg)
    x = torch.rand(2, 1, 48, 48) * 2 - 1
    outs = [G(x, one_hot(torch.full((2,), k))) for k in range(7)]
    for k in range(1, 7):
        assert (outs[k] - outs[0]).abs().max() > 1e-5


def test_reconstruction_shares_the_encoding():
    G = Generator(8)
    x = torch.rand(2, 1, 48, 48) * 2 - 1
    ct, cs = one_hot(torch.tensor([1, 2])), one_hot(torch.tensor([3, 4]))
    fake, recon = G(x, ct, c_rec=cs)
    assert torch.allclose(fake, G(x, ct)) and torch.allclose(recon, G(x, cs))
    src = torch.tensor([0, 0, 1])
    fake3, _ = G(x, one_hot(torch.tensor([1, 2, 3])), c_rec=cs, src=src)
    assert torch.allclose(fake3[1], G(x[:1], one_hot(torch.tensor([2])))[0], atol=1e-6)


def test_soft_condition_interpolates():
    G = Generator(8)
    x = torch.rand(1, 1, 48, 48)
    a, b = one_hot(torch.tensor([0])), one_hot(torch.tensor([3]))
    assert torch.allclose(G(x, a * 1.0 + b * 0.0), G(x, a))


@pytest.mark.parametrize("sn", [False, True])
def test_gradients_reach_both_discriminator_heads(sn):
    D = Discriminator(8, spectral_norm=sn)
    x = torch.rand(4, 1, 48, 48) * 2 - 1
    rf, cl = D(x)
    assert rf.shape == (4,) and cl.shape == (4, 7)
    labels = torch.tensor([0, 1, 2, 3])
    loss = d_adversarial(rf, rf.detach() * 0, "bce") + classification(cl, labels)
    loss.backward()
    for name, head in (("rf", D.rf), ("cl", D.cl)):
        w = head.parametrizations.weight.original if sn else head.weight
        assert w.grad is not None and w.grad.abs().sum() > 0, name
    first = D.body[0][0]
    w = first.parametrizations.weight.original if sn else first.weight
    assert w.grad.abs().sum() > 0


def test_bad_label_mode():
    with pytest.raises(ValueError, match="label_mode"):
        Generator(8, label_mode="film")


def test_residual_output_starts_near_the_input_and_paints_a_change():
    """US-GAN's ultimate skip: x + 2 tanh(.) clamped, so detail comes from the input."""
    G, _ = build_models(Config(gen_channels=8, output="residual"))
    x = torch.rand(2, 1, 48, 48) * 2 - 1
    c = one_hot(torch.tensor([1, 5]))
    assert torch.equal(G(x, c), x)  # starts as the identity
    init_weights(G)
    y = G(x, c)
    assert y.shape == x.shape and y.min() >= -1 and y.max() <= 1 and not torch.equal(y, x)
    with torch.no_grad():  # a uniform push: every pixel brightens by 2 tanh(1), clamped
        G.out.weight.zero_()
        G.out.bias.fill_(1.0)
    want = (x + 2 * torch.tanh(torch.tensor(1.0))).clamp(-1, 1)
    torch.testing.assert_close(G(x, c), want)


def test_attention_output_is_a_mask_blend_of_input_and_colour():
    G = Generator(8, output="attention")
    x = torch.rand(2, 1, 48, 48) * 2 - 1
    c = one_hot(torch.tensor([2, 3]))
    fake, mask, flow = G(x, c, with_mask=True)
    assert flow is None
    assert mask.shape == x.shape and (mask > 0).all() and (mask < 1).all()
    with torch.no_grad():
        G.out.bias.copy_(torch.tensor([0.0, 30.0]))  # mask logit +30: copy the input
    assert torch.allclose(G(x, c), x, atol=1e-6)
    fake, rec, mask, _ = G(x, c, c_rec=c, with_mask=True)
    assert torch.allclose(fake, rec) and mask.min() > 0.999
    assert G(x, c, with_mask=False).shape == x.shape


def test_bad_output():
    with pytest.raises(ValueError, match="output"):
        Generator(8, output="flow")


def test_conditional_norm_starts_label_free_and_learns_the_label():
    """label_mode norm: each decoder stage's scale and shift are linear in the condition,
    label-free at initialisation, with gradients for the label's weights from the first step;
    a blend of two conditions blends their scales."""
    from ccyclegan.core.models import CondInstanceNorm

    G, _ = build_models(Config(gen_channels=8, label_mode="norm"))
    norms = [m for m in G.modules() if isinstance(m, CondInstanceNorm)]
    assert len(norms) == 4  # expand + 3 decoder stages
    assert all(torch.equal(n.scale.weight, torch.zeros_like(n.scale.weight)) for n in norms)
    x = torch.rand(3, 1, 48, 48) * 2 - 1
    G(x, one_hot(torch.tensor([0, 3, 6]))).square().mean().backward()
    assert all(n.scale.weight.grad.abs().sum() > 0 for n in norms)
    n = norms[1]
    with torch.no_grad():
        n.scale.weight.normal_()
    h = torch.randn(1, n.norm.num_features, 6, 6)
    a, b = one_hot(torch.tensor([1])), one_hot(torch.tensor([4]))
    torch.testing.assert_close(n(h, 0.5 * a + 0.5 * b), 0.5 * n(h, a) + 0.5 * n(h, b))


@pytest.mark.parametrize("output", ["direct", "residual", "attention", "warp"])
def test_strength_blends_the_output_towards_the_input(output):
    torch.manual_seed(0)
    G = Ensemble([Generator(8, output=output)]).eval()
    x = torch.rand(2, 1, 48, 48) * 2 - 1
    c = torch.eye(7)[[2, 4]]
    with torch.no_grad():
        full = G(x, c)
        torch.testing.assert_close(full, G.members[0](x, c))  # neutral settings: G itself
        G.strength = 0.25
        torch.testing.assert_close(G(x, c), x + 0.25 * (full - x))
        G.strength = (1.0, 0.5, 0.2, 1.0, 0.7, 1.0, 1.0)  # one per target: rows 2 and 4
        want = x + torch.tensor([0.2, 0.7]).view(2, 1, 1, 1) * (full - x)
        torch.testing.assert_close(G(x, c), want)
        G.strength = (1.0, 1.0, 1.5, 1.0, 0.5, 1.0, 1.0)  # over 1: amplified, then clipped
        amp = x + torch.tensor([1.5, 0.5]).view(2, 1, 1, 1) * (full - x)
        got = G(x, c)
        torch.testing.assert_close(got, amp.clamp(-1, 1))
        assert got.abs().max() <= 1 and (amp.abs() > 1).any() == (got != amp).any()


def test_warp_moves_pixels_by_the_field():
    """warp samples x at p + flow(p): a whole-pixel field shifts the image exactly (edges
    repeated), a zero field is the identity."""
    x = torch.arange(48 * 48, dtype=torch.float32).view(1, 1, 48, 48) / 2304
    flow = torch.zeros(1, 2, 48, 48)
    torch.testing.assert_close(warp(x, flow), x)
    flow[:, 0] = 2.0  # sample two pixels to the right
    moved = warp(x, flow)
    torch.testing.assert_close(moved[..., :-2], x[..., 2:])
    torch.testing.assert_close(moved[..., -2:], x[..., -1:].expand(-1, -1, -1, 2))
    flow = torch.zeros(1, 2, 48, 48)
    flow[:, 1] = -1.0  # one pixel up
    torch.testing.assert_close(warp(x, flow)[..., 1:, :], x[..., :-1, :])


def test_warp_output_starts_as_the_attention_output_and_learns_a_bounded_field():
    """With the field at zero (its initialisation) the warp output is the attention output of
    the same weights, so a warp student can start from an attention generator; the field is
    bounded by MAX_FLOW and gets gradients from the first step."""
    G, _ = build_models(Config(gen_channels=8, output="warp", label_mode="norm"))
    A = Generator(8, output="attention", label_mode="norm")
    A.load_state_dict({k: v for k, v in G.state_dict().items() if not k.startswith("flow.")})
    x = torch.rand(3, 1, 48, 48) * 2 - 1
    c = one_hot(torch.tensor([0, 3, 6]))
    fake, mask, flow = G(x, c, with_mask=True)
    assert flow.shape == (3, 2, 48, 48) and flow.abs().max() == 0
    torch.testing.assert_close(fake, A(x, c))
    fake.square().mean().backward()
    assert G.flow.weight.grad.abs().sum() > 0
    with torch.no_grad():
        G.flow.bias.fill_(50.0)
    _, _, flow = G(x, c, with_mask=True)
    assert flow.max() <= MAX_FLOW and flow.max() > 0.99 * MAX_FLOW


def test_mirror_flow_is_the_field_of_the_mirror_image():
    x = torch.rand(1, 1, 48, 48)
    flow = torch.randn(1, 2, 48, 48)
    torch.testing.assert_close(warp(x.flip(-1), mirror_flow(flow)).flip(-1), warp(x, flow),
                               atol=1e-5, rtol=0)


def test_a_folded_condition_scale_is_the_ensembles_condition_scale():
    """fold_condition_scale scales the weights that read the condition: one plain network
    that decodes exactly what Ensemble(condition_scale=a) does, per emotion too."""
    import copy

    from ccyclegan.core.models import fold_condition_scale

    G, _ = build_models(Config(gen_channels=8, label_mode="norm", output="attention"))
    with torch.no_grad():  # a trained label: non-zero weights on the condition
        for m in G.modules():
            if isinstance(m, torch.nn.Linear):
                m.weight.normal_(0, 0.3)
    scale = (1.75, 1.5, 1.0, 1.25, 0.5, 2.0, 1.0)
    x = torch.rand(7, 1, 48, 48) * 2 - 1
    c = torch.eye(7)
    want = Ensemble([copy.deepcopy(G)], condition_scale=scale)(x, c)
    fold_condition_scale(G, scale)
    torch.testing.assert_close(G(x, c), want, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="planes"):
        fold_condition_scale(Generator(8, label_mode="planes"), 2.0)
