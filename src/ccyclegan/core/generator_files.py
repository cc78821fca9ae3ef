"""CCycleGAN's two checkpoint files, written and read in one place.

* checkpoint.safetensors (kind "train"): G, D, the EMA generator, both Adam states and the
  RNG states, with the config and progress; what `train --resume` continues from.
* generator.safetensors (kind "generator"): the generator alone, for translation, evaluation,
  export and the bundled model.

The file format itself (safetensors, checksums, atomic writes) is checkpoint.py's.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ccyclegan.core.checkpoint import (
    CheckpointError,
    atomic_write_json,
    build_checked,
    check_on_meta,
    load_module,
    load_tensors,
    optimizer_from_tensors,
    optimizer_to_tensors,
    prefixed,
    save_tensors,
    unprefixed,
)
from ccyclegan.core.config import Config, ConfigError
from ccyclegan.core.data import EMOTIONS, NUM_CLASSES
from ccyclegan.core.models import (
    Ensemble,
    Generator,
    build_discriminator,
    build_generator,
    fold_condition_scale,
)

CKPT_NAME = "checkpoint.safetensors"
GEN_NAME = "generator.safetensors"


def save_checkpoint(st, run_dir: Path, extra: dict[str, Any] | None = None) -> None:
    """The training state st (a train.TrainState) in one atomic safetensors file, plus the
    generator alone for inference and a human-readable JSON of config and progress."""
    tensors = {**prefixed("G", st.G.state_dict()), **prefixed("D", st.D.state_dict())}
    if st.G_ema is not None:
        tensors.update(prefixed("G_ema", st.G_ema.state_dict()))
    tg, groups_g = optimizer_to_tensors(st.opt_G, "opt_G")
    td, groups_d = optimizer_to_tensors(st.opt_D, "opt_D")
    tensors.update(tg)
    tensors.update(td)
    tensors["rng.cpu"] = torch.get_rng_state()
    if torch.cuda.is_available() and st.G.out.weight.is_cuda:
        tensors["rng.cuda"] = torch.cuda.get_rng_state()
    progress = {"step": st.step, **(extra or {})}
    meta = {"kind": "train", "config": st.cfg.to_dict(), "progress": progress,
            "param_groups": {"opt_G": groups_g, "opt_D": groups_d}}
    save_tensors(run_dir / CKPT_NAME, tensors, meta)
    save_generator(run_dir / GEN_NAME, st.G_eval, st.cfg, progress)
    atomic_write_json(run_dir / "checkpoint.json",
                      {"config": st.cfg.to_dict(), "progress": progress})


def load_checkpoint(st, path: Path) -> dict[str, Any]:
    """Restore st (a train.TrainState built from the checkpoint's config) from a training
    checkpoint: weights, optimiser and RNG states, step. Returns the saved progress."""
    tensors, meta = load_tensors(path)
    if meta.get("kind") != "train":
        raise CheckpointError(f"{path}: not a training checkpoint "
                              f"(kind={str(meta.get('kind'))[:40]!r})")
    load_module(st.G, unprefixed("G", tensors), "G", path)
    load_module(st.D, unprefixed("D", tensors), "D", path)
    if st.G_ema is not None:
        ema = unprefixed("G_ema", tensors) or unprefixed("G", tensors)
        load_module(st.G_ema, ema, "G_ema", path)
    progress = meta.get("progress")
    try:
        step = progress["step"]
        if isinstance(step, bool) or not isinstance(step, int) or step < 0:
            raise ValueError(f"progress step must be an integer >= 0, got {str(step)[:40]}")
        groups = meta["param_groups"]
        optimizer_from_tensors(st.opt_G, "opt_G", tensors, groups["opt_G"])
        optimizer_from_tensors(st.opt_D, "opt_D", tensors, groups["opt_D"])
        torch.set_rng_state(tensors["rng.cpu"])
        if "rng.cuda" in tensors and torch.cuda.is_available():
            torch.cuda.set_rng_state(tensors["rng.cuda"])
    except (KeyError, IndexError, TypeError, ValueError, RuntimeError, AttributeError) as e:
        why = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
        raise CheckpointError(f"{path}: training state (progress, optimiser or RNG) is "
                              f"missing or does not fit: {why}") from None
    st.step = step
    return progress


def verify_checkpoint(path: Path) -> Config:
    """The config of a training checkpoint, after checking (on the meta device: nothing is
    allocated) that its G, D and EMA tensors fit the models that config describes."""
    tensors, meta = load_tensors(path)
    if meta.get("kind") != "train":
        raise CheckpointError(f"{path}: not a training checkpoint "
                              f"(kind={str(meta.get('kind'))[:40]!r})")
    cfg = _config_from_meta(meta, path)
    check_on_meta(lambda: build_generator(cfg), unprefixed("G", tensors), "G", path)
    check_on_meta(lambda: build_discriminator(cfg), unprefixed("D", tensors), "D", path)
    if cfg.ema_decay > 0 and unprefixed("G_ema", tensors):
        check_on_meta(lambda: build_generator(cfg), unprefixed("G_ema", tensors), "G_ema", path)
    return cfg


Strength = float | tuple[float, ...]
MAX_STRENGTH = 2.0  # above 1 the edit is amplified (and clipped to the pixel range)
MAX_CONDITION_SCALE = 4.0
MAX_MEMBERS = 8  # generators averaged in one file (`export --ensemble-with`)


def _number_in(value: Any, upper: float, where: str) -> float:
    """A finite number in (0, upper] (not a bool), as a float; else a CheckpointError naming
    where."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not (
            math.isfinite(value) and 0.0 < value <= upper):
        raise CheckpointError(f"{where}: must be a number in (0, {upper:g}], "
                              f"got {str(value)[:40]!r}")
    return float(value)


def _per_emotion(value: Any, upper: float, where: str, what: str) -> Strength:
    """A number in (0, upper], or a list of one such number per emotion (in EMOTIONS order); a
    list of equal numbers is that number."""
    if isinstance(value, list | tuple):
        if len(value) != NUM_CLASSES:
            raise CheckpointError(f"{where}: {what} per emotion needs {NUM_CLASSES} numbers "
                                  f"({', '.join(EMOTIONS)}), got {len(value)}")
        per = tuple(_number_in(v, upper, f"{where}: {e}")
                    for e, v in zip(EMOTIONS, value, strict=True))
        return per[0] if len(set(per)) == 1 else per
    return _number_in(value, upper, where)


def check_strength(value: Any, where: str = "strength") -> Strength:
    """The export strength of a generator, one or one per emotion, each in (0, MAX_STRENGTH].
    Under 1 a weaker edit, over 1 G's edit amplified: x + s (G(x|t) - x), clipped."""
    return _per_emotion(value, MAX_STRENGTH, where, "a strength")


def check_condition_scale(value: Any, where: str = "condition_scale") -> Strength:
    """The export condition scale of a generator, one or one per emotion, each in
    (0, MAX_CONDITION_SCALE]: the decoder reads the one-hot scaled per emotion."""
    return _per_emotion(value, MAX_CONDITION_SCALE, where, "a condition scale")


def parse_per_emotion(text: str, where: str, check: Callable[[Any, str], Strength]
                      ) -> Strength:
    """'0.9', or 'EMOTION=V,...' (emotions not named keep 1), checked by check: the command
    line's form of a per-emotion export setting."""
    text = text.strip()
    if "=" not in text:
        try:
            return check(float(text), where)
        except ValueError:
            raise CheckpointError(f"{where}: expected a number or EMOTION=V pairs, "
                                  f"got {text[:40]!r}") from None
    per = dict.fromkeys(EMOTIONS, 1.0)
    for item in filter(None, (t.strip() for t in text.split(","))):
        name, _, val = item.partition("=")
        name = name.strip().lower()
        if name not in per:
            raise CheckpointError(f"{where}: unknown emotion {name[:20]!r} in {item[:40]!r} "
                                  f"(one of {', '.join(EMOTIONS)})")
        try:
            per[name] = float(val)
        except ValueError:
            raise CheckpointError(f"{where}: {item[:40]!r}: the value is not a number") from None
    return check(list(per.values()), where)


def parse_strength(text: str, where: str = "--strength") -> Strength:
    """'0.9', or 'EMOTION=S,...' (emotions not named keep 1): the command line's strength."""
    return parse_per_emotion(text, where, check_strength)


def parse_condition_scale(text: str, where: str = "--condition-scale") -> Strength:
    """'1.5', or 'EMOTION=A,...' (emotions not named keep 1): the command line's scale."""
    return parse_per_emotion(text, where, check_condition_scale)


def strength_json(s: Strength) -> float | list[float]:
    """A strength or condition scale as file metadata and metrics store it: a number or a list
    of 7."""
    return float(s) if isinstance(s, float | int) else [float(v) for v in s]


def strength_text(s: Strength) -> str:
    """'0.9' or 'angry 1, disgust 0.7, ...' for logs and reports."""
    if isinstance(s, float | int):
        return f"{s:g}"
    return ", ".join(f"{e} {v:g}" for e, v in zip(EMOTIONS, s, strict=True))


def save_generator(path: Path, G: Generator | Ensemble, cfg: Config, progress: dict[str, Any],
                   half: bool = False) -> None:
    """The generator alone (fp16 weights if half), with its config and progress; an Ensemble
    with its settings. The first network's tensors are at the top level and any other
    member's under partners.<i>., so a file of one plain generator reads as before."""
    E = as_ensemble(G)
    sd = {}
    for i, net in enumerate(E.members):
        state = net.state_dict()
        sd.update(state if i == 0 else prefixed(f"partners.{i - 1}", state))
    sd = {k: (v.half() if half and v.is_floating_point() else v) for k, v in sd.items()}
    save_tensors(path, sd, {"kind": "generator", "config": cfg.to_dict(), "progress": progress,
                            "emotions": list(EMOTIONS), "strength": strength_json(E.strength),
                            "flip_average": E.flip_average,
                            "condition_scale": strength_json(E.condition_scale),
                            "members": len(E.members)})


def as_ensemble(G: Generator | Ensemble) -> Ensemble:
    """G itself if it is an Ensemble, else G as the one member of an Ensemble at the neutral
    settings (the same edit)."""
    return G if isinstance(G, Ensemble) else Ensemble([G])


def plain(E: Ensemble) -> Generator | Ensemble:
    """The lone generator of an Ensemble at the neutral settings (the same edit, one pass
    and no wrapper), or E itself."""
    neutral = E.strength == 1.0 and not E.flip_average and E.condition_scale == 1.0
    return E.members[0] if neutral and len(E.members) == 1 else E


def load_generator(path: str | Path, device: str | torch.device = "cpu"
                   ) -> tuple[Generator | Ensemble, Config, dict[str, Any]]:
    """Load a generator from generator.safetensors, a training checkpoint, or a run dir: a
    plain Generator, or an Ensemble when the file holds several networks or release
    settings (strength, mirror averaging, condition scale)."""
    path = Path(path)
    if path.is_dir():
        cand = [path / GEN_NAME, path / CKPT_NAME]
        path = next((p for p in cand if p.is_file()), cand[0])
    tensors, meta = load_tensors(path)
    kind = meta.get("kind")
    if kind not in ("generator", "train"):
        raise CheckpointError(f"{path}: not a generator or training checkpoint "
                              f"(kind={str(kind)[:40]!r})")
    cfg = _config_from_meta(meta, path)
    if kind == "train":
        prefix = "G_ema" if any(k.startswith("G_ema.") for k in tensors) else "G"
        tensors = unprefixed(prefix, tensors)
    members = meta.get("members", 1) if kind == "generator" else 1
    if isinstance(members, bool) or not isinstance(members, int) or not 1 <= members <= MAX_MEMBERS:
        raise CheckpointError(f"{path} (metadata 'members'): expected a whole number from 1 to "
                              f"{MAX_MEMBERS}, got {str(members)[:40]!r}")
    parts = [{k: v for k, v in tensors.items() if not k.startswith("partners.")}]
    parts += [unprefixed(f"partners.{i}", tensors) for i in range(members - 1)]
    known = {f"partners.{i}." for i in range(members - 1)}
    if stray := [k for k in tensors
                 if k.startswith("partners.") and k[:k.index(".", 9) + 1] not in known]:
        raise CheckpointError(f"{path}: tensors of more networks than its {members} member(s) "
                              f"({stray[0][:60]} ...)")
    nets = []
    for i, state in enumerate(parts):
        what = "generator" if members == 1 else f"generator {i + 1} of {members}"
        net = build_checked(lambda: build_generator(cfg), state, what, path)
        load_module(net, state, what, path)
        nets.append(net)
    flip = meta.get("flip_average", False)
    if not isinstance(flip, bool):
        raise CheckpointError(f"{path} (metadata 'flip_average'): expected true or false, "
                              f"got {str(flip)[:40]!r}")
    E = Ensemble(nets,
                 strength=check_strength(meta.get("strength", 1.0),
                                         f"{path} (metadata 'strength')"),
                 flip_average=flip,
                 condition_scale=check_condition_scale(meta.get("condition_scale", 1.0),
                                                       f"{path} (metadata 'condition_scale')"))
    progress = meta.get("progress")
    return plain(E).to(device).eval(), cfg, progress if isinstance(progress, dict) else {}


def copy_generator_weights(G: Generator, path: str | Path) -> None:
    """G's weights from the generator in path (its first network, if the file holds an
    ensemble, with the file's condition scale folded in: models.fold_condition_scale); the
    parts that file lacks, such as the displacement field of a warp output started from an
    attention generator, keep G's own initialisation. CheckpointError if the rest does not
    fit."""
    E = as_ensemble(load_generator(path)[0])
    src = E.members[0]
    fold_condition_scale(src, E.condition_scale)
    own = src.state_dict()
    target = G.state_dict()
    wrong = [k for k, v in own.items() if k not in target or target[k].shape != v.shape]
    missing = [k for k in target if k not in own and not k.startswith("flow.")]
    if wrong or missing:
        raise CheckpointError(f"{path}: its generator does not fit this config's G "
                              f"({', '.join((wrong + missing)[:4])} ...): compare gen_channels, "
                              f"label_mode and output")
    G.load_state_dict({**target, **{k: v.float() for k, v in own.items()}})


def join_generators(G: Generator | Ensemble,
                    others: list[tuple[Generator | Ensemble, Config, Path]], cfg: Config
                    ) -> Ensemble:
    """One Ensemble of G's networks and the others' (each may already be several): its edit
    is the mean of all of theirs. Every member must be the same architecture, since they
    share one config; G's strength, mirror averaging and condition scale apply to the mean."""
    E = as_ensemble(G)
    arch = ("gen_channels", "label_mode", "output")
    for H, hcfg, path in others:
        diff = [f"{k} {getattr(hcfg, k)!r} (not {getattr(cfg, k)!r})" for k in arch
                if getattr(hcfg, k) != getattr(cfg, k)]
        if diff:
            raise CheckpointError(f"{path}: cannot be averaged with the checkpoint: "
                                  + ", ".join(diff))
        E.members.extend(as_ensemble(H).members)
    if len(E.members) > MAX_MEMBERS:
        raise CheckpointError(f"at most {MAX_MEMBERS} generators in one file, "
                              f"got {len(E.members)}")
    return E


def _config_from_meta(meta: dict[str, Any], path: Path) -> Config:
    if "config" not in meta:
        raise CheckpointError(f"{path}: checkpoint metadata has no config")
    try:
        return Config.from_dict(meta["config"], source=f"{path} (config)")
    except ConfigError as e:
        raise CheckpointError(str(e)) from None
