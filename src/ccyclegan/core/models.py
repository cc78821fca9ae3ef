"""Generator G(x|y) = G_dec(G_enc(x) | y) and the multi-task discriminator (D_rf, D_cl).

The generator is a U-Net whose encoder never sees the label, so the same encoding can be
decoded under the target emotion (translation) and under the source emotion (the poster's
reconstruction loss). The condition is a float vector rather than an index so that callers can
blend two emotions (intensity) or pass soft labels.

How the last layer makes the face (`output`):
* "direct" (the poster): G paints the whole face, tanh(conv(h)).
* "residual" (the "ultimate skip" of US-GAN): x + 2 tanh(conv(h)), clamped to [-1, 1]; identity
  and detail come from the input and the network only paints the change.
* "attention" (GANimation): A x + (1 - A) C with a mask A = sigmoid(.) and a colour C = tanh(.);
  the change stays where the mask opens.
* "warp": A W(x, F) + (1 - A) C: the input moved by a smooth displacement field F (predicted
  at 24x24, at most MAX_FLOW pixels), plus new content C only where the mask opens. A photo
  path can apply F to the photo's own sharp pixels at any resolution (paste.paste_edit), so the
  part of the edit that moves features (mouth corners, lids, brows) is as sharp as the photo.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm as _sn

from ccyclegan.core.data import NUM_CLASSES

OUTPUTS = ("direct", "residual", "attention", "warp")
MAX_FLOW = 3.0  # the warp output's largest displacement, in pixels of the 48x48 face
LABEL_MODES = ("bottleneck", "planes", "norm")


def one_hot(labels: torch.Tensor, num_classes: int = NUM_CLASSES) -> torch.Tensor:
    return F.one_hot(labels.long(), num_classes).float()


def _down(cin: int, cout: int, norm: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, 4, 2, 1, bias=not norm)]
    if norm:
        layers.append(nn.InstanceNorm2d(cout, affine=True))
    layers.append(nn.LeakyReLU(0.2, inplace=True))
    return nn.Sequential(*layers)


class CondInstanceNorm(nn.Module):
    """Instance norm whose scale and shift are linear in the condition (conditional instance
    normalisation, Dumoulin et al. 2017): a label that enters after the normalisation cannot
    be normalised away, as a label added before an instance norm mostly is."""

    def __init__(self, channels: int, num_classes: int = NUM_CLASSES):
        super().__init__()
        self.norm = nn.InstanceNorm2d(channels, affine=False)
        self.scale = nn.Linear(num_classes, channels)
        self.shift = nn.Linear(num_classes, channels)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Start label-free (scale 1, shift 0); the label's weights learn from the first step."""
        nn.init.zeros_(self.scale.weight)
        nn.init.ones_(self.scale.bias)
        nn.init.zeros_(self.shift.weight)
        nn.init.zeros_(self.shift.bias)

    def forward(self, h: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        c, n = c.to(h.dtype), self.scale.out_features
        # reshape, not [:, :, None, None]: one ONNX node instead of two Unsqueezes
        return self.norm(h) * self.scale(c).reshape(-1, n, 1, 1) + \
            self.shift(c).reshape(-1, n, 1, 1)


class _Block(nn.Sequential):
    """conv -> norm -> ReLU, where a conditional norm also gets the condition."""

    def forward(self, h: torch.Tensor, c: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        for m in self:
            h = m(h, c) if isinstance(m, CondInstanceNorm) else m(h)
        return h


def _norm(channels: int, conditional: bool) -> nn.Module:
    return CondInstanceNorm(channels) if conditional else nn.InstanceNorm2d(channels, affine=True)


def _up(cin: int, cout: int, conditional: bool = False) -> _Block:
    """Stride-2 4x4 transposed conv, as pix2pix's U-Net (fewer FLOPs than upsample + conv:
    docs/notes.md)."""
    return _Block(nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=False), _norm(cout, conditional),
                  nn.ReLU(inplace=True))


def _planes(c: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return c[:, :, None, None].to(like.dtype).expand(-1, -1, like.shape[2], like.shape[3])


def warp(x: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """x sampled at p + flow(p) (bilinear, edges repeated): flow [B, 2, H, W] in pixels, (dx,
    dy) per pixel."""
    b, _, h, w = x.shape
    ys = (torch.arange(h, device=x.device, dtype=flow.dtype) * 2 + 1) / h - 1
    xs = (torch.arange(w, device=x.device, dtype=flow.dtype) * 2 + 1) / w - 1
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    scale = flow.new_tensor([2.0 / w, 2.0 / h]).view(1, 2, 1, 1)
    grid = torch.stack([gx, gy])[None] + flow * scale  # [B, 2, H, W], normalised (x, y)
    return F.grid_sample(x, grid.permute(0, 2, 3, 1).to(x.dtype), mode="bilinear",
                         padding_mode="border", align_corners=False)


def mirror_flow(flow: torch.Tensor) -> torch.Tensor:
    """The displacement field of the mirror image: flipped, its x component negated."""
    return flow.flip(-1) * flow.new_tensor([-1.0, 1.0]).view(1, 2, 1, 1)


class Generator(nn.Module):
    """U-Net for 48x48 grey faces: 48 -> 24 -> 12 -> 6 -> 3 -> 1x1 bottleneck and back.

    label_mode "bottleneck" (the paper's code): the condition joins the 1x1 bottleneck through a
    dense transform layer. "planes": the condition is also tiled as constant planes into every
    decoder stage, so skip connections cannot route around it. "norm": every decoder norm is
    conditional (CondInstanceNorm), so the label sets each stage's scale and shift.

    Release settings (strength, mirror averaging, condition scale, several networks) are not
    the network's: Ensemble wraps generators with them.
    """

    def __init__(self, channels: int = 32, num_classes: int = NUM_CLASSES,
                 label_mode: str = "bottleneck", in_channels: int = 1, output: str = "direct"):
        super().__init__()
        if label_mode not in LABEL_MODES:
            raise ValueError(f"label_mode must be one of {', '.join(LABEL_MODES)}, "
                             f"got {label_mode!r}")
        if output not in OUTPUTS:
            raise ValueError(f"output must be one of {', '.join(OUTPUTS)}, got {output!r}")
        c = channels
        self.num_classes = num_classes
        self.label_mode = label_mode
        self.output = output
        self.enc = nn.ModuleList([
            _down(in_channels, c, norm=False),  # 24
            _down(c, 2 * c),  # 12
            _down(2 * c, 4 * c),  # 6
            _down(4 * c, 8 * c),  # 3
        ])
        self.bottleneck = nn.Sequential(nn.Conv2d(8 * c, 8 * c, 3), nn.LeakyReLU(0.2, inplace=True))
        self.transform = nn.Sequential(nn.Linear(8 * c + num_classes, 8 * c), nn.ReLU(inplace=True))
        cond = label_mode == "norm"
        self.expand = _Block(nn.ConvTranspose2d(8 * c, 8 * c, 3, bias=False),
                             _norm(8 * c, cond), nn.ReLU(inplace=True))
        k = num_classes if label_mode == "planes" else 0
        self.dec = nn.ModuleList([
            _up(16 * c + k, 4 * c, cond),  # 3 -> 6
            _up(8 * c + k, 2 * c, cond),  # 6 -> 12
            _up(4 * c + k, c, cond),  # 12 -> 24
        ])
        masked = output in ("attention", "warp")
        out_ch = in_channels + 1 if masked else in_channels  # colour (+ mask)
        self.out = nn.ConvTranspose2d(2 * c + k, out_ch, 4, 2, 1)  # 24 -> 48
        if output == "warp":  # the displacement field, from the 24x24 stage
            self.flow = nn.Conv2d(c + k, 2, 3, padding=1)

    def encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        """G_enc: the input itself (for the residual, attention and warp outputs), skip
        features shallow to deep, then the 1x1 bottleneck code (one row per face in every
        tensor, so rows can be picked)."""
        feats = [x]
        for layer in self.enc:
            x = layer(x)
            feats.append(x)
        feats.append(self.bottleneck(x).flatten(1))
        return feats

    def decode(self, feats: list[torch.Tensor], c: torch.Tensor) -> torch.Tensor:
        """G_dec: decode an encoding under condition c ([B, 7] one-hot or a blend)."""
        return self.decode_parts(feats, c)[0]

    def decode_parts(self, feats: list[torch.Tensor], c: torch.Tensor
                     ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """(face, mask A or None, displacement field F or None): what a photo path needs to
        apply the edit at the photo's own resolution."""
        x, *skips, z = feats
        planes = self.label_mode == "planes"
        h = self.transform(torch.cat([z, c.to(z.dtype)], 1))
        h = self.expand(h.reshape(-1, self.expand[0].in_channels, 1, 1), c)
        for layer, skip in zip(self.dec, reversed(skips[1:]), strict=True):
            h = torch.cat([h, skip], 1)
            if planes:
                h = torch.cat([h, _planes(c, h)], 1)
            h = layer(h, c)
        flow = None
        if self.output == "warp":
            g = torch.cat([h, _planes(c, h)], 1) if planes else h
            flow = MAX_FLOW * torch.tanh(self.flow(g).float())
            flow = F.interpolate(flow, scale_factor=2, mode="bilinear", align_corners=False)
        h = torch.cat([h, skips[0]], 1)
        if planes:
            h = torch.cat([h, _planes(c, h)], 1)
        h = self.out(h)
        mask = None
        if self.output == "residual":
            out = (x + 2 * torch.tanh(h)).clamp(-1, 1)
        elif self.output == "attention":
            colour, a = h[:, :-1], h[:, -1:]  # the mask is the last channel (static slices)
            mask = torch.sigmoid(a)
            out = mask * x + (1 - mask) * torch.tanh(colour)
        elif self.output == "warp":
            colour, a = h[:, :-1], h[:, -1:]
            mask = torch.sigmoid(a)
            out = mask * warp(x, flow) + (1 - mask) * torch.tanh(colour)
        else:
            out = torch.tanh(h)
        return out, mask, flow

    def forward(self, x: torch.Tensor, c: torch.Tensor, c_rec: torch.Tensor | None = None,
                src: torch.Tensor | None = None, with_mask: bool = False):
        """G(x|c). With c_rec, also return G_dec(G_enc(x)|c_rec) from the same encoding, the
        poster's reconstruction; src maps rows of c to rows of x when each face gets several
        targets; with_mask, also the mask and the displacement field of G(x|c) (None for
        outputs without them). One forward call, so DistributedDataParallel sees every use of
        the weights."""
        feats = self.encode(x)
        feats_t = feats if src is None else [f[src] for f in feats]
        fake, mask, flow = self.decode_parts(feats_t, c)
        out = (fake,) if c_rec is None else (fake, self.decode(feats, c_rec))
        if with_mask:
            out = (*out, mask, flow)
        return out[0] if len(out) == 1 else out


@torch.no_grad()
def fold_condition_scale(G: Generator, scale: float | tuple[float, ...]) -> None:
    """Make G read a x the condition with a plain condition, by scaling the weights that read
    it (the transform's label columns, each conditional norm's scale and shift): exact, since
    the condition enters those layers linearly. What Ensemble's condition_scale does, inside
    one network."""
    if scale == 1.0:
        return
    if G.label_mode == "planes":
        raise ValueError("a condition scale cannot be folded into label_mode 'planes'")
    a = torch.as_tensor(scale, dtype=torch.float32).expand(G.num_classes)
    lin = G.transform[0]
    lin.weight[:, -G.num_classes:] *= a.to(lin.weight)
    for m in G.modules():
        if isinstance(m, CondInstanceNorm):
            m.scale.weight *= a.to(m.scale.weight)
            m.shift.weight *= a.to(m.shift.weight)


class Ensemble(nn.Module):
    """Generators of one architecture with the settings a release is exported with, behind
    the generator's own interface (encode, decode, decode_parts, forward), so every path that
    runs the file (translate, evaluate, ONNX, a distillation teacher) gets the same edit.

    members: trained apart; the output is the mean of every member's output (`ccyclegan export
    --ensemble-with`): what one network invents on a face and another does not averages out.
    flip_average: each member's edit is the mean of its output for the face and, mirrored
    back, for its mirror image; artefacts on one side average out while the expression stays.
    condition_scale a: the decoders read a x the condition, one number or one per emotion; the
    conditional norms are affine in it, so a > 1 extrapolates each stage's label shift.
    strength s: the output is x + s (mean - x), clipped; one number or one per target emotion
    (weighted by the condition). Each was measured (docs/model_card.md).
    """

    def __init__(self, members: list[Generator], strength: float | tuple[float, ...] = 1.0,
                 flip_average: bool = False, condition_scale: float | tuple[float, ...] = 1.0):
        super().__init__()
        self.members = nn.ModuleList(members)
        self.strength = strength
        self.flip_average = flip_average
        self.condition_scale = condition_scale

    @property
    def output(self) -> str:
        return self.members[0].output

    @property
    def label_mode(self) -> str:
        return self.members[0].label_mode

    def encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Every member's encoding, and with flip_average that of the mirror image after it."""
        feats = []
        for net in self.members:
            feats += net.encode(x)
            if self.flip_average:
                feats += net.encode(x.flip(-1))
        return feats

    def decode(self, feats: list[torch.Tensor], c: torch.Tensor) -> torch.Tensor:
        return self.decode_parts(feats, c)[0]

    def decode_parts(self, feats: list[torch.Tensor], c: torch.Tensor
                     ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        a = self.condition_scale
        cd = c if a == 1.0 else c * (a if isinstance(a, float | int) else c.new_tensor(a))
        views = 2 if self.flip_average else 1
        nets = [net for net in self.members for _ in range(views)]
        n = len(feats) // len(nets)
        outs, masks, flows = [], [], []
        for i, net in enumerate(nets):
            out, mask, flow = net.decode_parts(feats[i * n:(i + 1) * n], cd)
            if i % views:  # the mirror image's pass, mirrored back
                out, mask = out.flip(-1), None if mask is None else mask.flip(-1)
                flow = None if flow is None else mirror_flow(flow)
            outs.append(out)
            masks.append(mask)
            flows.append(flow)
        out, mask, flow = outs[0], masks[0], flows[0]
        if len(nets) > 1:
            out = torch.stack(outs).mean(0)
            mask = None if mask is None else torch.stack(masks).mean(0)
            flow = None if flow is None else torch.stack(flows).mean(0)
        if self.strength != 1.0:
            x, s = feats[0], self.strength
            if not isinstance(s, float):  # per target emotion: the condition picks its own
                s = (c.to(out.dtype) @ out.new_tensor(s)).view(-1, 1, 1, 1)
            out = (x + s * (out - x)).clamp(-1, 1)  # s > 1 amplifies the edit past the mean
        return out, mask, flow

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x), c)


class Discriminator(nn.Module):
    """Four stride-2 convs shared by a real/fake head (D_rf) and a 7-way emotion head (D_cl)."""

    def __init__(self, channels: int = 64, num_classes: int = NUM_CLASSES,
                 spectral_norm: bool = False, in_channels: int = 1):
        super().__init__()
        c = channels
        self.body = nn.Sequential(
            _down(in_channels, c, norm=False),  # 24
            _down(c, 2 * c),  # 12
            _down(2 * c, 4 * c),  # 6
            _down(4 * c, 8 * c),  # 3
            nn.Flatten(),
        )
        feat = 8 * c * 3 * 3
        self.rf = nn.Linear(feat, 1)
        self.cl = nn.Linear(feat, num_classes)
        if spectral_norm:
            for m in self.modules():
                if isinstance(m, nn.Conv2d | nn.Linear):
                    _sn(m)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns (real/fake logit [B], emotion logits [B, 7])."""
        h = self.body(x)
        return self.rf(h).squeeze(1), self.cl(h)


def init_weights(module: nn.Module, std: float = 0.02) -> None:
    """DCGAN/pix2pix initialisation: N(0, 0.02) weights, unit-scale norms."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d | nn.Linear):
            w = getattr(m, "parametrizations", None)
            weight = w.weight.original if w is not None else m.weight
            nn.init.normal_(weight, 0.0, std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.InstanceNorm2d) and m.affine:
            nn.init.normal_(m.weight, 1.0, std)
            nn.init.zeros_(m.bias)
    for m in module.modules():  # after the loop above, which also visits their Linear layers
        if isinstance(m, CondInstanceNorm):
            m.reset_parameters()


def build_generator(cfg) -> Generator:
    return Generator(cfg.gen_channels, label_mode=cfg.label_mode, output=cfg.output)


def build_discriminator(cfg) -> Discriminator:
    return Discriminator(cfg.disc_channels, spectral_norm=cfg.spectral_norm)


def build_models(cfg) -> tuple[Generator, Discriminator]:
    G, D = build_generator(cfg), build_discriminator(cfg)
    init_weights(G)
    init_weights(D)
    if G.output == "residual":  # start as the identity: the change grows from nothing
        nn.init.zeros_(G.out.weight)
    if G.output == "warp":  # start with no displacement
        nn.init.zeros_(G.flow.weight)
    return G, D
