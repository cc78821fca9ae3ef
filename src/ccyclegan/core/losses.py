"""The three loss terms of the poster, as pure functions of logits and images, and the
options measured against them (other GAN losses, gradient penalties, the attention mask's
regulariser).

L = L_RF + lambda_cl * L_CL + lambda_cyc * L_cyc. Everything is computed in float32 so the
values do not depend on the autocast precision of the forward pass.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def d_adversarial(real_logits: torch.Tensor, fake_logits: torch.Tensor,
                  kind: str = "bce") -> torch.Tensor:
    """D's side of L_RF: push D_rf(x) up and D_rf(G(x|y)) down.

    bce is the poster's -[log D(x) + log(1 - D(G(x|y)))] written with logits for stability.
    """
    r, f = real_logits.float(), fake_logits.float()
    if kind == "bce":
        return F.softplus(-r).mean() + F.softplus(f).mean()
    if kind == "lsgan":
        return (r - 1).pow(2).mean() + f.pow(2).mean()
    if kind == "hinge":
        return F.relu(1 - r).mean() + F.relu(1 + f).mean()
    if kind == "wgan-gp":  # the critic's Wasserstein estimate; the penalty is added apart
        return f.mean() - r.mean()
    raise ValueError(f"unknown adversarial loss {kind!r}")


def g_adversarial(fake_logits: torch.Tensor, kind: str = "bce") -> torch.Tensor:
    """G's side of L_RF. bce uses the non-saturating -log D(G(x|y)) of Goodfellow et al."""
    f = fake_logits.float()
    if kind == "bce":
        return F.softplus(-f).mean()
    if kind == "lsgan":
        return (f - 1).pow(2).mean()
    if kind in ("hinge", "wgan-gp"):
        return -f.mean()
    raise ValueError(f"unknown adversarial loss {kind!r}")


def classification(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """l_cl: cross-entropy of D_cl. For D on real faces with their labels; for G on
    translated faces with their target labels."""
    return F.cross_entropy(logits.float(), labels)


def expression(logits: torch.Tensor, labels: torch.Tensor, confidence: float = 0.0
               ) -> torch.Tensor:
    """G's loss from a frozen classifier: cross-entropy to the target, cut to zero for a
    translation the classifier already gives the target with probability >= confidence, so G
    stops changing a face once its expression reads (0 = plain cross-entropy, always push)."""
    ce = F.cross_entropy(logits.float(), labels, reduction="none")
    if confidence > 0:
        ce = (ce + math.log(confidence)).clamp_min(0.0)
    return ce.mean()


def classification_sigmoid(logits: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
    """The author's Keras variant of l_cl: 7 independent sigmoids with binary cross-entropy
    averaged over classes (Keras' 'binary_crossentropy'). labels=None is the all-zero target
    D gives translated faces, so D_cl learns to reject fakes of every emotion and G cannot
    satisfy it with changes D_cl alone is blind to."""
    logits = logits.float()
    target = (torch.zeros_like(logits) if labels is None
              else F.one_hot(labels.long(), logits.shape[1]).to(logits.dtype))
    return F.binary_cross_entropy_with_logits(logits, target)


def d_classification(real_logits: torch.Tensor, labels: torch.Tensor,
                     fake_logits: torch.Tensor, kind: str = "softmax") -> torch.Tensor:
    """D's side of L_CL: real faces carry their emotion. With the author's sigmoid head,
    translations are also shown to D_cl, with no emotion at all."""
    if kind == "sigmoid":
        return (classification_sigmoid(real_logits, labels)
                + classification_sigmoid(fake_logits, None))
    return classification(real_logits, labels)


def g_classification(fake_logits: torch.Tensor, targets: torch.Tensor,
                     kind: str = "softmax") -> torch.Tensor:
    """G's side of L_CL: translations should read as their target emotion."""
    if kind == "sigmoid":
        return classification_sigmoid(fake_logits, targets)
    return classification(fake_logits, targets)


def l1(x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """L_cyc: mean absolute error, as Keras' 'mae' in the author's code."""
    return (x_hat.float() - x.float()).abs().mean()


def gradient_penalty(scores: torch.Tensor, inputs: torch.Tensor, center: float) -> torch.Tensor:
    """E[|grad_x D(x)|^2] for center 0 (R1, Mescheder et al. 2018, on real faces), else
    E[(|grad_x D(x)| - center)^2] (WGAN-GP, Gulrajani et al. 2017, on interpolates). The graph
    is kept so the penalty trains D."""
    (g,) = torch.autograd.grad(scores.float().sum(), inputs, create_graph=True)
    norm2 = g.float().pow(2).flatten(1).sum(1)
    if center == 0:
        return norm2.mean()
    return ((norm2 + 1e-12).sqrt() - center).pow(2).mean()


def attention_regularizer(mask: torch.Tensor) -> torch.Tensor:
    """GANimation's mask loss: mean A (A = 1 copies the input, so this keeps the mask from
    saturating into doing nothing) plus total variation, so the mask opens in smooth regions."""
    m = mask.float()
    tv = (m[..., 1:, :] - m[..., :-1, :]).pow(2).mean() + (m[..., 1:] - m[..., :-1]).pow(2).mean()
    return m.mean() + tv


def paint_regularizer(mask: torch.Tensor) -> torch.Tensor:
    """The warp output's mask loss: mean (1 - A), the share of the face painted anew rather
    than moved (new content is what a photo cannot show sharp), plus total variation."""
    m = mask.float()
    tv = (m[..., 1:, :] - m[..., :-1, :]).pow(2).mean() + (m[..., 1:] - m[..., :-1]).pow(2).mean()
    return (1 - m).mean() + tv


def flow_smoothness(flow: torch.Tensor) -> torch.Tensor:
    """Mean squared difference of neighbouring displacements (pixels): a field that bends the
    face smoothly rather than tearing it."""
    f = flow.float()
    return (f[..., 1:, :] - f[..., :-1, :]).pow(2).mean() + (f[..., 1:] - f[..., :-1]).pow(2).mean()
