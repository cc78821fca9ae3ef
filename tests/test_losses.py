"""Each loss against values computed by hand from the poster's formulas."""

import math

import pytest
import torch

from ccyclegan.core import losses


def sigmoid(v):
    return 1 / (1 + math.exp(-v))


def test_d_bce_is_the_posters_log_loss():
    real, fake = [0.0, 2.0], [-1.0, 0.5]
    want = (-sum(math.log(sigmoid(r)) for r in real) / 2
            - sum(math.log(1 - sigmoid(f)) for f in fake) / 2)
    got = losses.d_adversarial(torch.tensor(real), torch.tensor(fake), "bce")
    assert got.item() == pytest.approx(want, rel=1e-6)
    assert want == pytest.approx(0.410038 + (0.313262 + 0.974077) / 2, abs=1e-5)


def test_g_bce_is_non_saturating():
    fake = [0.0, 1.0]
    want = -(math.log(sigmoid(0.0)) + math.log(sigmoid(1.0))) / 2
    assert losses.g_adversarial(torch.tensor(fake), "bce").item() == pytest.approx(want, rel=1e-6)
    assert want == pytest.approx((0.693147 + 0.313262) / 2, abs=1e-5)


def test_lsgan_and_hinge_by_hand():
    r, f = torch.tensor([0.5, 1.5]), torch.tensor([0.2, -1.4])
    # lsgan: mean((r-1)^2) + mean(f^2) = 0.25 + (0.04 + 1.96)/2
    assert losses.d_adversarial(r, f, "lsgan").item() == pytest.approx(0.25 + 1.0)
    # hinge: mean(relu(1-r)) + mean(relu(1+f)) = (0.5+0)/2 + (1.2+0)/2
    assert losses.d_adversarial(r, f, "hinge").item() == pytest.approx(0.25 + 0.6)
    assert losses.g_adversarial(f, "lsgan").item() == pytest.approx((0.64 + 5.76) / 2)
    assert losses.g_adversarial(f, "hinge").item() == pytest.approx(0.6)


def test_unknown_adversarial_loss():
    with pytest.raises(ValueError, match="wasserstein"):
        losses.d_adversarial(torch.zeros(1), torch.zeros(1), "wasserstein")
    with pytest.raises(ValueError, match="wasserstein"):
        losses.g_adversarial(torch.zeros(1), "wasserstein")


def test_classification_is_l_cl():
    logits = [[1.0, 2.0, 0.0, 0.0, 0.0, 0.0, -1.0], [0.0] * 7]
    labels = [1, 6]
    want = 0.0
    for row, y in zip(logits, labels, strict=True):
        z = sum(math.exp(v) for v in row)
        want += -math.log(math.exp(row[y]) / z)
    want /= 2
    got = losses.classification(torch.tensor(logits), torch.tensor(labels))
    assert got.item() == pytest.approx(want, rel=1e-6)


def test_sigmoid_classification_matches_keras_binary_crossentropy():
    logits = [[1.0, 2.0, 0.0, 0.0, 0.0, 0.0, -1.0], [0.5] * 7]
    sig = [[1 / (1 + math.exp(-v)) for v in row] for row in logits]

    def bce(rows, targets):
        terms = [-(t * math.log(p) + (1 - t) * math.log(1 - p))
                 for row, trow in zip(rows, targets, strict=True)
                 for p, t in zip(row, trow, strict=True)]
        return sum(terms) / len(terms)

    onehot = [[1.0 if k == y else 0.0 for k in range(7)] for y in (1, 6)]
    got = losses.classification_sigmoid(torch.tensor(logits), torch.tensor([1, 6]))
    assert got.item() == pytest.approx(bce(sig, onehot), rel=1e-6)
    zeros = losses.classification_sigmoid(torch.tensor(logits), None)  # fakes: no emotion
    assert zeros.item() == pytest.approx(bce(sig, [[0.0] * 7] * 2), rel=1e-6)


def test_l1_reconstruction():
    x = torch.tensor([[0.0, 1.0], [-1.0, 0.5]])
    x_hat = torch.tensor([[0.5, 1.0], [0.0, 0.0]])
    assert losses.l1(x_hat, x).item() == pytest.approx((0.5 + 0 + 1 + 0.5) / 4)


def test_losses_are_float32_under_bf16_inputs():
    r = torch.tensor([0.3, -0.2], dtype=torch.bfloat16)
    assert losses.d_adversarial(r, r, "bce").dtype == torch.float32
    assert losses.l1(r, r * 0).dtype == torch.float32


def test_wgan_gp_by_hand():
    r, f = torch.tensor([0.5, 1.5]), torch.tensor([0.2, -1.4])
    assert losses.d_adversarial(r, f, "wgan-gp").item() == pytest.approx(-0.6 - 1.0)
    assert losses.g_adversarial(f, "wgan-gp").item() == pytest.approx(0.6)


def test_gradient_penalty_of_a_linear_critic():
    """D(x) = <w, x>: its gradient is w everywhere, |w| = 5 here."""
    w = torch.tensor([3.0, 4.0])
    x = torch.randn(6, 2, requires_grad=True)
    scores = x @ w
    assert losses.gradient_penalty(scores, x, 0.0).item() == pytest.approx(25.0)
    assert losses.gradient_penalty(x @ w, x, 1.0).item() == pytest.approx(16.0)
    # the penalty trains the critic: its gradient w.r.t. w is 2w (R1)
    w2 = w.clone().requires_grad_(True)
    losses.gradient_penalty(x @ w2, x, 0.0).backward()
    torch.testing.assert_close(w2.grad, 2 * w)


def test_attention_regularizer_by_hand():
    m = torch.tensor([[[[0.0, 1.0], [0.0, 1.0]]]])
    # mean 0.5; vertical differences 0, horizontal differences 1 everywhere
    assert losses.attention_regularizer(m).item() == pytest.approx(0.5 + 0.0 + 1.0)
    assert losses.attention_regularizer(torch.full((1, 1, 4, 4), 0.25)).item() == 0.25


def test_d_and_g_classification_choose_the_head_once():
    logits, labels = torch.randn(3, 7), torch.tensor([0, 2, 6])
    fake = torch.randn(3, 7)
    assert losses.d_classification(logits, labels, fake, "softmax") == \
        losses.classification(logits, labels)
    assert losses.d_classification(logits, labels, fake, "sigmoid") == (
        losses.classification_sigmoid(logits, labels) + losses.classification_sigmoid(fake, None))
    assert losses.g_classification(fake, labels, "sigmoid") == \
        losses.classification_sigmoid(fake, labels)


def test_expression_loss_stops_at_the_confidence():
    """Plain cross-entropy at 0; with a confidence p, a face read as its target with
    probability >= p adds nothing (and no gradient), one below it adds CE + log p."""
    logits = torch.tensor([[4.0, 0.0, 0.0], [0.0, 1.0, 0.0]], requires_grad=True)
    y = torch.tensor([0, 0])
    ce = torch.nn.functional.cross_entropy(logits, y, reduction="none")
    assert losses.expression(logits, y).item() == pytest.approx(ce.mean().item())
    p0 = torch.softmax(logits, 1)[0, 0].item()  # ~0.96
    assert p0 > 0.9
    cut = losses.expression(logits, y, confidence=0.9)
    assert cut.item() == pytest.approx((ce[1].item() + math.log(0.9)) / 2)
    cut.backward()
    assert torch.all(logits.grad[0] == 0) and torch.any(logits.grad[1] != 0)
