"""One plain generator, one pass, that makes the pair's edits (issue 30, item 4).

The pair, the bundled model before this study (`git show b17094f:src/ccyclegan/weights/
ccyclegan_fer2013.safetensors > runs/one_pass/pair.safetensors`, path without the line break),
is two generators, each run on the face and its mirror image (four passes), with a strength
and a condition scale per target. Its edit of a face is deterministic, so a
student can learn it by regression; the expensive part is the teacher, so it runs once per
(face, target) into a cache instead of at every step (the `--teacher` option of `ccyclegan
train` calls it at every step: about five times slower on a CPU). The teacher averages each
member over the face and its mirror image, so its edit of a mirrored face is the mirrored edit:
flipping a cached pair is exact, and the student trains with flips for free.

    python experiments/one_pass/distill.py cache --data fer2013.csv.gz --out runs/teacher.npy
    python experiments/one_pass/distill.py train --data fer2013.csv.gz --cache runs/teacher.npy \
        --out runs/s32 --width 32 --init runs/one_pass/pair.safetensors --lr 3e-4 \
        --lambda-feat 0.1 --max-steps 2500 --decay         # --resume continues it

The student is saved as a run's generator.safetensors (EMA weights, one plain network, no
release settings), so `ccyclegan evaluate`, `export` and the photo benchmark read it as any run.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ccyclegan.classifier import load_classifier
from ccyclegan.core import losses, models
from ccyclegan.core.augment import diff_augment
from ccyclegan.core.checkpoint import atomic_write_json, load_tensors, prefixed, save_tensors
from ccyclegan.core.config import Config
from ccyclegan.core.data import EMOTIONS, denormalize, drop_blank, load_split, normalize
from ccyclegan.core.faces_data import NUM_CLASSES
from ccyclegan.core.generator_files import (
    as_ensemble,
    copy_generator_weights,
    load_generator,
    save_generator,
    strength_json,
)
from ccyclegan.core.models import Generator, build_models, fold_condition_scale, one_hot
from ccyclegan.evaluate.metrics import GRIN_CLOSERS, mouth_composite, mouth_weight
from ccyclegan.train.loop import update_ema

PAIR = "runs/one_pass/pair.safetensors"  # the teacher: see above
EXPR_CLASSIFIER = "src/ccyclegan/weights/expr_vgg32.safetensors"
HAPPY = EMOTIONS.index("happy")


def training_data(data: str):
    """FER2013's Training faces as `ccyclegan train` sees them (blank faces dropped), labelled."""
    return drop_blank(load_split(data, "train"))[0]


def mouth_box(size: int = 48) -> torch.Tensor:
    """[1, 1, size, size]: 1 over the mouth of a FER2013-framed face (rows 34-44, columns
    12-36 of 48), fading to 0 over 3 pixels (--mouth-paint's region)."""
    r = torch.arange(size, dtype=torch.float32) * (48 / size)
    rows = ((r - 31) / 3).clamp(0, 1) * ((47 - r) / 3).clamp(0, 1)
    cols = ((r - 9) / 3).clamp(0, 1) * ((39 - r) / 3).clamp(0, 1)
    return (rows[:, None] * cols[None, :])[None, None]


def index_path(cache_file: str) -> str:
    """Where `cache --label` keeps the training indices of the faces it cached."""
    return cache_file.removesuffix(".npy") + ".index.npy"


def flipped_pairs(faces: torch.Tensor, edits: torch.Tensor, g: torch.Generator
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 faces [B, 1, 48, 48] and their edits [B, 48, 48] in [-1, 1], each pair mirrored
    with probability 1/2 (exact for the mirror-averaged teacher)."""
    flip = (torch.rand(len(faces), generator=g) < 0.5)[:, None, None, None]
    x, y = normalize(faces), normalize(edits[:, None])
    return torch.where(flip, x.flip(-1), x), torch.where(flip, y.flip(-1), y)


@torch.inference_mode()
def cache(args: argparse.Namespace) -> None:
    """teacher(x | t) for every training face and target, uint8 [N, 7, 48, 48]; resumable
    (a chunk at a time into a memory map, the count done in a side file). --label: only the
    faces of that label (their indices in <out>.index.npy); --via: in two steps,
    teacher(teacher(x | via) | t)."""
    torch.set_num_threads(args.threads)
    faces = training_data(args.data)
    index = torch.arange(len(faces.labels))
    if args.label:
        index = torch.nonzero(faces.labels == EMOTIONS.index(args.label)).flatten()
        np.save(index_path(args.out), index.numpy())
    images = faces.images[index]
    teacher = load_generator(args.teacher)[0].float().eval()
    out, done_file = Path(args.out), Path(args.out + ".done")
    shape = (len(images), NUM_CLASSES, 48, 48)
    mode = "r+" if out.exists() and done_file.exists() else "w+"
    arr = np.lib.format.open_memmap(out, mode=mode, dtype=np.uint8, shape=shape)
    done = int(done_file.read_text()) if mode == "r+" else 0
    start = time.time()
    for lo in range(done, len(images), args.chunk):
        x = normalize(images[lo:lo + args.chunk])
        if args.via:
            via = one_hot(torch.full((len(x),), EMOTIONS.index(args.via), dtype=torch.long))
            x = teacher.decode(teacher.encode(x), via)
        feats = teacher.encode(x)
        for t in range(NUM_CLASSES):
            c = one_hot(torch.full((len(x),), t, dtype=torch.long))
            arr[lo:lo + len(x), t] = denormalize(teacher.decode(feats, c))[:, 0].numpy()
        arr.flush()
        done_file.write_text(str(lo + len(x)))
        rate = (lo + len(x) - done) / (time.time() - start)
        print(f"{lo + len(x)}/{len(images)} faces, {rate:.1f} faces/s", flush=True)


def grin_targets(args: argparse.Namespace, n: int):
    """(position of each training face in --grin-cache or -1, that cache), or (None, None)."""
    if not args.grin_cache:
        return None, None
    index = torch.from_numpy(np.load(index_path(args.grin_cache)))
    pos = torch.full((n,), -1, dtype=torch.long)
    pos[index] = torch.arange(len(index))
    return pos, torch.from_numpy(np.load(args.grin_cache))


def student_config(args: argparse.Namespace) -> Config:
    return Config(data=args.data, out=args.out, gen_channels=args.width, label_mode="norm",
                  output=args.output, lambda_adv=0.0, lambda_cl=0.0, lambda_cyc=0.0,
                  teacher=args.teacher, lambda_distill=1.0, lambda_mask=args.lambda_mask,
                  lambda_flow=args.lambda_flow, lr=args.lr, batch_size=args.batch,
                  ema_decay=args.ema, seed=args.seed, precision="fp32", threads=args.threads)


def train(args: argparse.Namespace) -> None:
    """L1 to the cached teacher on random (face, target, flip) draws, plus a prior on the
    attention mask (copy unless the edit needs new paint: the cache holds the teacher's output,
    not its mask, and the photo paste reads the mask); Adam, EMA; checkpoints
    (atomic) every --ckpt-every steps and at the end; stops after --minutes."""
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = student_config(args)
    cfg.save(out / "config.json")
    faces = training_data(args.data)
    images = faces.images
    target = torch.from_numpy(np.load(args.cache))  # uint8 [N, 7, 48, 48], 0.46 GB
    if target.shape[0] != len(images):
        raise SystemExit(f"{args.cache}: {target.shape[0]} faces, the data has {len(images)}")
    G, G_ema, opt = student(args, cfg)
    judge = None
    if args.lambda_feat or args.lambda_mouth:
        judge = load_classifier(args.expr_classifier)[0].float().requires_grad_(False)
    grins = torch.nonzero(faces.labels == HAPPY).flatten()
    grin_pos, grin_cache = grin_targets(args, len(images))
    closers = torch.tensor([EMOTIONS.index(n) for n in args.mouth_targets.split(",")])
    step = resume(out, G, G_ema, opt) if args.resume else 0
    critic = Critic.start(out, args, step)
    log = (out / "metrics.csv").open("a")
    g = torch.Generator().manual_seed(args.seed)
    deadline = time.time() + 60 * args.minutes
    run_l1 = run_mouth = 0.0
    while time.time() < deadline and step < args.max_steps:
        g.manual_seed(args.seed * 1_000_003 + step)  # a resumed run draws what it would have
        idx, t, x, y = draw(args, g, images, target, (grin_pos, grin_cache, closers))
        lr = args.lr * min(1.0, 2 * (1 - step / args.max_steps)) if args.decay else args.lr
        for group in opt.param_groups:
            group["lr"] = lr * group["mult"]
        pred, mask, flow = G(x, one_hot(t), with_mask=True)
        grin = (faces.labels[idx] == HAPPY) & torch.isin(t, closers)  # a grin to close
        if args.lambda_mouth:  # the teacher's grin is not taught where the mouth should close
            w = 1 - grin.float()[:, None, None, None] * (1 - args.mouth_anchor) * mouth_weight()
            l1 = ((pred - y).abs() * w).sum() / w.expand_as(pred).sum()
        else:
            l1 = (pred - y).abs().mean()
        loss = l1 + args.lambda_mask * losses.paint_regularizer(mask)
        loss = loss + paint_terms(args, pred, mask, x, y, grin)
        if args.lambda_mouth:
            not_happy, l1_upper = mouth_term(G, judge, images, target, grins, closers, args, g)
            loss = loss + args.lambda_mouth * not_happy + l1_upper
            run_mouth = 0.98 * run_mouth + 0.02 * not_happy.item()
        if flow is not None:
            loss = loss + args.lambda_flow * losses.flow_smoothness(flow)
        if args.lambda_feat:
            loss = loss + args.lambda_feat * feature_match(judge, pred, y)
        if critic is not None:
            loss = loss + args.lambda_adv * critic.step(x, pred, torch.isin(t, critic.targets))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        update_ema(G_ema, G, args.ema)
        step += 1
        run_l1 = 0.98 * run_l1 + 0.02 * l1.item() if run_l1 else l1.item()
        if step % 100 == 0:
            d_loss = f", D {critic.last:.3f}" if critic is not None else ""
            print(f"step {step}, L1 {run_l1:.4f} ({run_l1 * 127.5:.2f} grey levels), "
                  f"mouth {run_mouth:.3f}, lr {lr:.2e}{d_loss}", flush=True)
            log.write(f"{step},{run_l1:.5f}\n")
            log.flush()
        if step % args.ckpt_every == 0:
            save(out, G, G_ema, opt, cfg, step, critic)
    save(out, G, G_ema, opt, cfg, step, critic)
    print(f"done: {step} steps; generator in {out / 'generator.safetensors'}")


def mouth_kept(mask: torch.Tensor, x: torch.Tensor, y: torch.Tensor, grin: torch.Tensor,
               darker: float, teeth: float = 0.0, hold_from: int = 0
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """Over the mouth (mouth_box) of the rows grin (smiling faces turned to a closer): the mean
    share A of the face kept in the region to paint (a closed mouth painted over the teeth
    rather than the teeth dimmed, which a photo would keep), and the mean share painted anew
    (1 - A) in the rest of the box (--mouth-hold: only the teeth are repainted, not the chin).
    darker (grey levels; 0: the whole box): only where the target y is darker than the face x,
    in full from that much; teeth (grey levels; 0: off): only where x is brighter than its 9x9
    neighbourhood, in full from that much. hold_from (a row; 0: the box): the rest is the whole
    face from that row down, less the region, so the paint cannot move just outside the box."""
    box = mouth_box().expand_as(mask)
    region = box
    if darker:
        region = region * ((x - y) * 127.5 / darker).clamp(0, 1)
    if teeth:
        region = region * brighter_than_around(x * 127.5, teeth)
    rest = box - region
    if hold_from:
        lower = torch.zeros_like(mask)
        lower[:, :, hold_from:] = 1.0
        rest = lower - region
    kept = (mask * region).sum((1, 2, 3)) / region.sum((1, 2, 3)).clamp(min=1.0)
    painted = ((1 - mask) * rest).sum((1, 2, 3)) / rest.sum((1, 2, 3)).clamp(min=1.0)
    g = grin.float()
    n = g.sum().clamp(min=1)
    return (kept * g).sum() / n, (painted * g).sum() / n


def brighter_than_around(grey: torch.Tensor, levels: float) -> torch.Tensor:
    """[B, 1, H, W] in [0, 1]: how much each pixel (grey levels) is brighter than the mean of
    its 9x9 neighbourhood, in full from levels: teeth within a mouth."""
    local = F.avg_pool2d(grey, 9, 1, 4, count_include_pad=False)
    return ((grey - local) / levels).clamp(0, 1)


def paint_terms(args: argparse.Namespace, pred: torch.Tensor, mask: torch.Tensor,
                x: torch.Tensor, y: torch.Tensor, grin: torch.Tensor) -> torch.Tensor:
    """--mouth-paint, --mouth-hold, --paint-smooth and --lambda-detail's terms (0 when all are
    off)."""
    loss = torch.zeros(())
    if args.mouth_paint:
        kept, painted = mouth_kept(mask, x, y, grin, args.mouth_darker, args.mouth_teeth,
                                   args.mouth_hold_from)
        loss = loss + args.mouth_paint * kept + args.mouth_hold * painted
    if args.paint_smooth:
        loss = loss + args.paint_smooth * painted_texture(pred, mask, x)
    if args.lambda_detail:
        loss = loss + args.lambda_detail * detail_lost(pred, x, args.detail_scale)
    return loss


def local_detail(z: torch.Tensor, scale: int = 1) -> torch.Tensor:
    """[B, 1, H, W]: the RMS of z's Laplacian over each 5x5 neighbourhood (reflected at the
    border): how much fine detail a face has there, the measure of the photo benchmark's
    sharpness (variance of the Laplacian) taken locally. scale 2: of z averaged over 2x2
    blocks first, a band that a stride-2 lattice (a transposed convolution's checkerboard)
    cannot fill."""
    if scale > 1:
        z = F.avg_pool2d(z, scale)
    k = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]])[None, None]
    lap = F.conv2d(F.pad(z, (1, 1, 1, 1), mode="reflect"), k)
    return F.avg_pool2d(lap.square(), 5, 1, 2, count_include_pad=False).add(1e-8).sqrt()


def detail_lost(pred: torch.Tensor, x: torch.Tensor, scale: int = 1) -> torch.Tensor:
    """Mean of the local detail the output has less than its input (one-sided: a crease the
    edit adds costs nothing). The teacher paints some targets softer than their input (its
    48x48 disgust keeps 0.63 of the input's sharpness), which a photo shows as a smudge."""
    return (local_detail(x, scale) - local_detail(pred, scale)).clamp(min=0).mean()


def painted_texture(pred: torch.Tensor, mask: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Mean (1 - A) |C - blur(C)|: the fine texture of the colour C the model paints, in the
    share it paints. A photo shows the paint as a 48-pixel change enlarged, so texture there
    is a smear at full size; the face's own texture is to be kept (A), not painted anew."""
    kept = mask.clamp(max=0.95)
    colour = (pred - kept * x) / (1 - kept)
    blur = F.avg_pool2d(colour, 3, 1, 1, count_include_pad=False)
    return ((1 - mask) * (colour - blur).abs()).mean()


def teeth_composite(faces: torch.Tensor, one_step: torch.Tensor, closed: torch.Tensor,
                    teeth: float) -> torch.Tensor:
    """uint8 [B, 48, 48]: the one-step edit, with the closed mouth of the two-step edit over
    the teeth only (pixels of mouth_box brighter than their 9x9 neighbourhood and darker in
    the closed mouth, in full from teeth grey levels; grown by a pixel and softened), so the
    rest of the lower face is taught as the one-step teacher keeps it."""
    x = faces.float().reshape(closed.shape)[:, None]
    c = closed.float()[:, None]
    r = mouth_box() * brighter_than_around(x, teeth) * ((x - c) / teeth).clamp(0, 1)
    r = F.avg_pool2d(F.max_pool2d(r, 3, 1, 1), 3, 1, 1)
    out = one_step.float()[:, None] + r * (c - one_step.float()[:, None])
    return out[:, 0].round().clamp(0, 255).to(torch.uint8)


def draw(args: argparse.Namespace, g: torch.Generator, images, target, grin
         ) -> tuple[torch.Tensor, ...]:
    """A batch: (face indices, targets, faces, the teacher's edits), flipped at random, with
    --grin-cache's two-step edit for a smiling face turned to a closer, re-cut with --jitter."""
    grin_pos, grin_cache, closers = grin
    idx = torch.randint(0, len(images), (args.batch,), generator=g)
    t = torch.randint(0, NUM_CLASSES, (args.batch,), generator=g)
    if grin_pos is not None and args.grin_share:  # over-sample the edits that close a grin
        k = round(args.grin_share * args.batch)
        cached = torch.nonzero(grin_pos >= 0).flatten()
        idx[:k] = cached[torch.randint(0, len(cached), (k,), generator=g)]
        t[:k] = closers[torch.randint(0, len(closers), (k,), generator=g)]
    edits = target[idx, t]
    if grin_pos is not None:
        swap = (grin_pos[idx] >= 0) & torch.isin(t, closers)
        if swap.any():
            closed = grin_cache[grin_pos[idx[swap]], t[swap]]
            if args.grin_teeth:  # the two-step edit over the teeth only, the one-step elsewhere
                closed = teeth_composite(images[idx[swap]], edits[swap], closed, args.grin_teeth)
            edits[swap] = closed
    x, y = flipped_pairs(images[idx], edits, g)
    if args.jitter:
        x, y = reframe(x, y, args.jitter, g)
    return idx, t, x, y


def resume(out: Path, G, G_ema, opt) -> int:
    """The step of the run in out (0 if it has no checkpoint yet), its weights loaded."""
    ckpt = out / "checkpoint.safetensors"
    if not ckpt.exists():
        return 0
    tensors, meta = load_tensors(ckpt)
    G.load_state_dict({k[2:]: v for k, v in tensors.items() if k.startswith("G.")})
    G_ema.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("G_ema.")})
    step = meta["step"]
    saved = torch.load(out / "optimizer.pt", weights_only=True)
    if saved.get("step") == step:  # written after the weights: a crash between leaves it older
        opt.load_state_dict(saved["state"])
    else:
        print(f"optimizer.pt is not of step {step}: Adam's moments start afresh")
    print(f"resumed at step {step}")
    return step


def mouth_term(G, judge, images, target, grins, closers, args, g: torch.Generator
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """Close the grin: smiling training faces turned to a --mouth-targets emotion, their mouth
    under their own upper face (metrics.mouth_composite, shifted by up to 6 pixels and seen at
    --mouth-min-side to 48 pixels) should not read happy to the loss classifier (-log(1 -
    p_happy), cut to zero below --mouth-confidence); the upper face still learns the teacher's
    edit (L1 above the mouth rows; over the mouth, --mouth-anchor times it). Returns both
    terms."""
    n = args.mouth_batch
    idx = grins[torch.randint(0, len(grins), (n,), generator=g)]
    t = closers[torch.randint(0, len(closers), (n,), generator=g)]
    x, y = flipped_pairs(images[idx], target[idx, t], g)
    pred = G(x, one_hot(t))
    comp = mouth_composite(x, pred)
    side = int(torch.randint(args.mouth_min_side, 49, (1,), generator=g))
    if side < 48:  # seen smaller and enlarged again: a pattern finer than the face's shapes goes
        comp = F.interpolate(F.interpolate(comp, size=side, mode="bilinear", antialias=True),
                             size=48, mode="bilinear")
    comp = diff_augment(comp, "translation", g)
    logp = torch.log_softmax(judge(comp).float(), dim=1)
    p_happy = logp[:, HAPPY].exp()
    not_happy = -torch.log1p(-p_happy.clamp(max=1 - 1e-6))
    not_happy = torch.where(p_happy > args.mouth_confidence, not_happy, 0.0)
    w = 1 - (1 - args.mouth_anchor) * mouth_weight()
    l1 = ((pred - y).abs() * w).sum() / w.expand_as(pred).sum()
    return not_happy.mean(), l1


def student(args: argparse.Namespace, cfg: Config
            ) -> tuple[torch.nn.Module, torch.nn.Module, torch.optim.Optimizer]:
    """The student, its EMA copy and Adam; a warp student's displacement head learns at
    --flow-lr times the rate (it starts from zero while the rest starts trained)."""
    G, _ = build_models(cfg)
    if args.init:  # a member of the teacher, its condition scale folded: starts near the edit
        src_cfg = init_weights(G, args.init, args.width)
        if args.output == "warp" and src_cfg.output != "warp":
            with torch.no_grad():  # no displacement yet: the start makes the init's edit exactly
                G.flow.weight.zero_()
                G.flow.bias.zero_()
    G_ema = build_models(cfg)[0]
    G_ema.load_state_dict(G.state_dict())
    G_ema.requires_grad_(False)
    params = dict(G.named_parameters())
    groups = [{"params": [p for n, p in params.items() if not n.startswith("flow.")],
               "mult": 1.0}]
    if any(n.startswith("flow.") for n in params):
        groups.append({"params": [p for n, p in params.items() if n.startswith("flow.")],
                       "mult": args.flow_lr})
    opt = torch.optim.Adam(groups, lr=args.lr, betas=(0.9, 0.999))
    return G, G_ema, opt


def init_weights(G: torch.nn.Module, path: str, width: int) -> Config:
    """G from the generator file at path; a wider one is first narrowed to G's width by
    narrow_state (its channels that the next layers weigh most), so a smaller student starts
    from a working edit instead of from noise. Returns the file's config."""
    src, src_cfg, _ = load_generator(path)
    if src_cfg.gen_channels == width:
        copy_generator_weights(G, path)
        return src_cfg
    if src_cfg.gen_channels < width:
        raise SystemExit(f"--init {path}: width {src_cfg.gen_channels}, narrower than "
                         f"--width {width}")
    if (src_cfg.label_mode, src_cfg.output) != ("norm", "attention"):
        raise SystemExit(f"--init {path}: only label_mode norm, output attention can be "
                         f"narrowed (it is {src_cfg.label_mode}, {src_cfg.output})")
    E = as_ensemble(src)  # its first network, condition scale folded, as copy_generator_weights
    net = E.members[0]
    fold_condition_scale(net, E.condition_scale)
    G.load_state_dict(narrow_state(net.state_dict(), src_cfg.gen_channels, width))
    print(f"--init {path}: narrowed from width {src_cfg.gen_channels} to {width}")
    return src_cfg


def narrow_state(sd: dict[str, torch.Tensor], c: int, w: int) -> dict[str, torch.Tensor]:
    """The state of a width-c Generator (label_mode "norm", output "attention") cut to width w.

    Each group of channels (an encoder stage, the bottleneck, the transform, the expand and
    decoder stages) keeps the w/c of its channels whose outgoing weights, summed over every
    layer that reads them (a skip is read twice), are largest in L1: a channel no layer reads
    strongly changes the output least when it goes. Conv weights are [out, in, ...], transposed
    convs' [in, out, ...], linears' [out, in]."""
    size = {"e0": c, "e1": 2 * c, "e2": 4 * c, "e3": 8 * c, "b": 8 * c, "t": 8 * c, "X": 8 * c,
            "d0": 4 * c, "d1": 2 * c, "d2": c}
    # (key, dim, group, offset): which slice of which weight reads / writes each group
    reads = [("enc.1.0.weight", 1, "e0", 0), ("out.weight", 0, "e0", c),
             ("enc.2.0.weight", 1, "e1", 0), ("dec.2.0.weight", 0, "e1", 2 * c),
             ("enc.3.0.weight", 1, "e2", 0), ("dec.1.0.weight", 0, "e2", 4 * c),
             ("bottleneck.0.weight", 1, "e3", 0), ("dec.0.0.weight", 0, "e3", 8 * c),
             ("transform.0.weight", 1, "b", 0), ("expand.0.weight", 0, "t", 0),
             ("dec.0.0.weight", 0, "X", 0), ("dec.1.0.weight", 0, "d0", 0),
             ("dec.2.0.weight", 0, "d1", 0), ("out.weight", 0, "d2", 0)]
    writes = [("enc.0.0", 0, "e0"), ("enc.1.0.weight", 0, "e1"), ("enc.1.1", 0, "e1"),
              ("enc.2.0.weight", 0, "e2"), ("enc.2.1", 0, "e2"), ("enc.3.0.weight", 0, "e3"),
              ("enc.3.1", 0, "e3"), ("bottleneck.0", 0, "b"), ("transform.0", 0, "t"),
              ("expand.0.weight", 1, "X"), ("expand.1", 0, "X"), ("dec.0.0.weight", 1, "d0"),
              ("dec.0.1", 0, "d0"), ("dec.1.0.weight", 1, "d1"), ("dec.1.1", 0, "d1"),
              ("dec.2.0.weight", 1, "d2"), ("dec.2.1", 0, "d2")]
    score = {g: torch.zeros(n) for g, n in size.items()}
    for key, dim, g, off in reads:
        part = sd[key].float().abs().narrow(dim, off, size[g]).transpose(0, dim)
        score[g] += part.flatten(1).mean(1)
    keep = {g: score[g].topk(n * w // c).indices.sort().values for g, n in size.items()}
    out = {k: v.clone() for k, v in sd.items()}
    for prefix, dim, g in writes:
        for key in [k for k in out if k == prefix or k.startswith(prefix + ".")]:
            out[key] = out[key].index_select(dim, keep[g])
    for key, dim in {(key, dim) for key, dim, _, _ in reads}:
        segs = sorted((off, g) for k2, d2, g, off in reads if (k2, d2) == (key, dim))
        end = segs[-1][0] + size[segs[-1][1]]  # what follows (the transform's label) stays
        idx = [keep[g] + off for off, g in segs] + [torch.arange(end, sd[key].shape[dim])]
        out[key] = out[key].index_select(dim, torch.cat(idx))
    return out


def feature_match(net: torch.nn.Module, pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The student's output and the teacher's as a frozen expression classifier sees them:
    L1 between penultimate features plus KL between class distributions. Pixel L1 weighs a
    grey level of cheek like one of eyelid; the classifier weighs what makes the expression,
    which is what the pixel loss leaves out (experiments/one_pass/README.md)."""
    with torch.no_grad():
        f_t = net.features(y)
        p_t = torch.log_softmax(net.head(f_t), dim=1)
    f_s = net.features(pred)
    p_s = torch.log_softmax(net.head(f_s), dim=1)
    kl = torch.nn.functional.kl_div(p_s, p_t, log_target=True, reduction="batchmean")
    return (f_s - f_t).abs().mean() + kl


def reframe(x: torch.Tensor, y: torch.Tensor, amount: float, g: torch.Generator
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """Half the batch cut again, face and teacher's edit alike: scaled by up to 1 +- amount and
    shifted by up to amount of the side. A photo's face is framed by a detector, never exactly
    as FER2013's faces were; a student that makes the same edit of a shifted face keeps it
    when the photo is framed again (the pair's angry read 95 % in its own frame, 80 % framed
    from landmarks: experiments/photo_release/)."""
    n = len(x)
    s = 1.0 + amount * (2 * torch.rand(n, generator=g) - 1)
    shift = amount * 2 * (2 * torch.rand(n, 2, generator=g) - 1)  # affine_grid's units: 2 = side
    keep = torch.rand(n, generator=g) < 0.5
    s, shift = torch.where(keep, 1.0, s), torch.where(keep[:, None], 0.0, shift)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 1, 1], theta[:, :, 2] = s, s, shift
    grid = torch.nn.functional.affine_grid(theta, list(x.shape), align_corners=False)
    moved = ~keep[:, None, None, None]

    def cut(a: torch.Tensor) -> torch.Tensor:
        return torch.where(moved, torch.nn.functional.grid_sample(
            a, grid, mode="bilinear", padding_mode="border", align_corners=False), a)

    return cut(x), cut(y)


class Critic:
    """An unconditional real/fake discriminator (the package's D, spectral norm, hinge loss)
    for --lambda-adv: L1 to a teacher that paints a target softer than a real face (disgust
    keeps 0.63 of its input's sharpness at 48x48) learns that softness; a D that tells
    translations from real training faces asks for detail a real face has, where a one-sided
    detail term (--lambda-detail) is met by a lattice of ConvTranspose noise."""

    def __init__(self, out: Path, lr: float, width: int, targets: str):
        self.D = models.build_discriminator(Config(spectral_norm=True, disc_channels=width))
        models.init_weights(self.D)  # as build_models initialises its D
        self.opt = torch.optim.Adam(self.D.parameters(), lr=lr, betas=(0.5, 0.999))
        self.path = out / "critic.pt"
        self.last = 0.0
        self.targets = torch.tensor([EMOTIONS.index(n) for n in targets.split(",")])

    @classmethod
    def start(cls, out: Path, args: argparse.Namespace, step: int) -> Critic | None:
        """The run's critic (None without --lambda-adv); --resume loads its state saved at
        step, the generator's."""
        if not args.lambda_adv:
            return None
        critic = cls(out, args.d_lr, args.d_width, args.adv_targets)
        if args.resume:
            critic.load(step)
        return critic

    def step(self, real: torch.Tensor, fake: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """One D update on (real, the detached fakes of rows); returns G's hinge term for
        those fakes (0 when the batch has none)."""
        if not rows.any():
            return torch.zeros(())
        fake = fake[rows]
        self.D.requires_grad_(True)
        loss_d = losses.d_adversarial(self.D(real)[0], self.D(fake.detach())[0], "hinge")
        self.opt.zero_grad(set_to_none=True)
        loss_d.backward()
        self.opt.step()
        self.D.requires_grad_(False)
        self.last = loss_d.item()
        return losses.g_adversarial(self.D(fake)[0], "hinge")

    def save(self, step: int) -> None:
        tmp = self.path.with_suffix(".pt.tmp")
        torch.save({"step": step, "D": self.D.state_dict(), "opt": self.opt.state_dict()}, tmp)
        tmp.replace(self.path)

    def load(self, step: int) -> None:
        """Its state, if saved at step (written after the generator's: a crash between leaves
        it older, and it starts afresh as resume's optimizer does)."""
        if not self.path.exists():
            return
        saved = torch.load(self.path, weights_only=True)
        if saved["step"] != step:
            print(f"critic.pt is not of step {step}: the critic starts afresh")
            return
        self.D.load_state_dict(saved["D"])
        self.opt.load_state_dict(saved["opt"])


def save(out: Path, G, G_ema, opt, cfg: Config, step: int, critic: Critic | None = None
         ) -> None:
    """Training state (atomic: the weights, then the optimizer tagged with their step, each
    written to a temp file and renamed; resume trusts the optimizer only if the steps agree)
    and the EMA generator as a plain generator file; then the critic's state, tagged the same
    way."""
    tensors = {**prefixed("G", G.state_dict()), **prefixed("G_ema", G_ema.state_dict())}
    save_tensors(out / "checkpoint.safetensors", tensors, {"kind": "student", "step": step})
    tmp = out / "optimizer.pt.tmp"
    torch.save({"step": step, "state": opt.state_dict()}, tmp)
    tmp.replace(out / "optimizer.pt")
    save_generator(out / "generator.safetensors", G_ema, cfg, {"step": step})
    atomic_write_json(out / "progress.json", {"step": step})
    if critic is not None:
        critic.save(step)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("cache", "train"):
        s = sub.add_parser(name)
        s.add_argument("--data", required=True)
        s.add_argument("--teacher", default=PAIR)
        s.add_argument("--out", required=True)
        s.add_argument("--threads", type=int, default=2)
    sub.choices["cache"].add_argument("--chunk", type=int, default=512)
    sub.choices["cache"].add_argument("--label", choices=EMOTIONS,
                                      help="only the training faces of this label")
    sub.choices["cache"].add_argument("--via", choices=EMOTIONS,
                                      help="two steps: the teacher's edit of its own edit "
                                           "to this emotion")
    t = sub.choices["train"]
    t.add_argument("--cache", required=True)
    t.add_argument("--width", type=int, default=16)
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--batch", type=int, default=64)
    t.add_argument("--ema", type=float, default=0.999)
    t.add_argument("--lambda-mask", type=float, default=0.02,
                   help="weight of mean (1 - A) + TV(A): the student paints only where the "
                   "teacher's edit needs it, so the photo keeps its own detail elsewhere")
    t.add_argument("--output", choices=("attention", "warp"), default="attention",
                   help="warp: also a displacement field that moves the face's own pixels (a "
                   "photo keeps them sharp); from an attention --init it starts at zero")
    t.add_argument("--lambda-flow", type=float, default=1.0,
                   help="warp: weight of the field's smoothness (mean squared neighbour "
                   "difference, pixels)")
    t.add_argument("--flow-lr", type=float, default=10.0,
                   help="warp: the displacement head's learning rate, as a multiple of --lr "
                   "(it starts from zero while the rest is trained)")
    t.add_argument("--lambda-feat", type=float, default=0.0,
                   help="weight of feature_match with --expr-classifier (never a judge)")
    t.add_argument("--expr-classifier", default=EXPR_CLASSIFIER)
    t.add_argument("--lambda-mouth", type=float, default=0.0,
                   help="close a grin: grin.py's mouth composite of smiling faces turned to "
                        "--mouth-targets must not read happy to --expr-classifier (0 = off)")
    t.add_argument("--grin-cache", default="",
                   help="a `cache --label happy --via neutral` file: smiling faces turned to "
                        "--mouth-targets learn its two-step edit instead of the teacher's one")
    t.add_argument("--grin-share", type=float, default=0.0,
                   help="with --grin-cache: this share of each batch is its smiling faces "
                        "turned to --mouth-targets (0: as drawn, about a tenth)")
    t.add_argument("--mouth-paint", type=float, default=0.0,
                   help="weight of the mask's kept share A over the mouth (mouth_box) of smiling "
                        "faces turned to --mouth-targets: paint the closed mouth over the teeth "
                        "rather than dim them (the photo keeps the teeth the mask keeps)")
    t.add_argument("--mouth-darker", type=float, default=0.0,
                   help="--mouth-paint only where the target is darker than the face, in full "
                        "from this many grey levels (teeth under a closed mouth; 0: the whole "
                        "mouth box)")
    t.add_argument("--mouth-teeth", type=float, default=0.0,
                   help="--mouth-paint only where the face is brighter than its 9x9 "
                        "neighbourhood, in full from this many grey levels (teeth; 0: off)")
    t.add_argument("--mouth-hold", type=float, default=0.0,
                   help="weight of the share painted anew (1 - A) in the rest of the mouth box "
                        "of those faces: repaint the teeth, not the chin (0: off)")
    t.add_argument("--mouth-hold-from", type=int, default=0,
                   help="--mouth-hold over the whole face from this row down (less the region "
                        "painted), not only the mouth box (0: the box)")
    t.add_argument("--paint-smooth", type=float, default=0.0,
                   help="weight of the painted colour's fine texture (painted_texture): paint "
                        "only smooth new content, keep the face's own texture (0: off)")
    t.add_argument("--lambda-adv", type=float, default=0.0,
                   help="weight of an unconditional discriminator's hinge term (Critic): "
                        "translations as detailed as real faces (0: off)")
    t.add_argument("--d-lr", type=float, default=2e-4, help="the critic's Adam rate (constant)")
    t.add_argument("--d-width", type=int, default=32, help="the critic's first-layer width")
    t.add_argument("--adv-targets", default=",".join(EMOTIONS),
                   help="the targets whose translations the critic reads (default: all)")
    t.add_argument("--lambda-detail", type=float, default=0.0,
                   help="weight of the local fine detail the output has less than its input "
                        "(detail_lost): an edit as sharp as the face (0: off)")
    t.add_argument("--detail-scale", type=int, default=1,
                   help="--lambda-detail's band: 2 measures the detail of 2x2 block means")
    t.add_argument("--grin-teeth", type=float, default=0.0,
                   help="--grin-cache's closed mouth taught over the teeth only "
                        "(teeth_composite, from this many grey levels; 0: its whole edit)")
    t.add_argument("--mouth-targets", default=",".join(GRIN_CLOSERS))
    t.add_argument("--mouth-batch", type=int, default=32)
    t.add_argument("--mouth-anchor", type=float, default=0.0,
                   help="the teacher's (grinning) mouth still taught at this weight, so the "
                        "classifier's push stays near an edit the teacher made (0: not taught)")
    t.add_argument("--mouth-min-side", type=int, default=48,
                   help="the classifier sees the composite shrunk to a random side from this "
                        "to 48 and enlarged back (48: as it is), so stripes finer than the "
                        "face's shapes cannot make it read otherwise")
    t.add_argument("--mouth-confidence", type=float, default=0.2,
                   help="no push once the composite reads happy below this probability")
    t.add_argument("--jitter", type=float, default=0.0,
                   help="re-cut half of each batch, face and edit alike (scale 1 +- J, shift "
                   "up to J of the side): an edit that survives the photo's framing")
    t.add_argument("--init", default="",
                   help="start from this generator file's first network (condition scale "
                   "folded in; --width must match it): e.g. the teacher itself")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--minutes", type=float, default=90)
    t.add_argument("--max-steps", type=int, default=1_000_000)
    t.add_argument("--decay", action="store_true", help="lr to 0 over the second half of max-steps")
    t.add_argument("--ckpt-every", type=int, default=500)
    t.add_argument("--resume", action="store_true")
    f = sub.add_parser("fold", help="a one-network file's condition scale folded into its "
                       "weights: one plain generator, no release settings")
    f.add_argument("src")
    f.add_argument("-o", "--out", required=True)
    d = sub.add_parser("drop-flow", help="a warp generator without its displacement head: "
                       "the attention generator of the same weights")
    d.add_argument("src")
    d.add_argument("-o", "--out", required=True)
    args = p.parse_args()
    print(json.dumps(vars(args)))
    {"cache": cache, "train": train, "fold": fold, "drop-flow": drop_flow}[args.cmd](args)


def fold(args: argparse.Namespace) -> None:
    """What `ccyclegan export --condition-scale A` ships as a setting, made part of the
    network (exact: models.fold_condition_scale), saved as the bundled file is (fp16)."""
    G, cfg, progress = load_generator(args.src)
    E = as_ensemble(G)
    if len(E.members) != 1 or E.flip_average or E.strength != 1.0:
        raise SystemExit(f"{args.src}: only a condition scale can be folded into one network")
    net = E.members[0]
    fold_condition_scale(net, E.condition_scale)
    progress = {**progress, "folded_condition_scale": strength_json(E.condition_scale)}
    save_generator(Path(args.out), net, cfg, progress, half=True)
    print(f"wrote {args.out}: one plain generator")


def drop_flow(args: argparse.Namespace) -> None:
    """What a warp student's edit is without its field (measured: the README's warp section)."""
    G, cfg, progress = load_generator(args.src)
    if not isinstance(G, Generator) or G.output != "warp":  # an Ensemble is not one network
        raise SystemExit(f"{args.src}: not a plain warp generator")
    cfg = replace(cfg, output="attention")
    A = build_models(cfg)[0]
    A.load_state_dict({k: v for k, v in G.state_dict().items() if not k.startswith("flow.")})
    save_generator(Path(args.out), A, cfg, {**progress, "dropped": "displacement head"},
                   half=False)
    print(f"wrote {args.out}: attention generator")


if __name__ == "__main__":
    main()
