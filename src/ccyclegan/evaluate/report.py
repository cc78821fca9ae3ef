"""report.md from metrics.json alone, so a report can be rewritten from saved metrics without
evaluating again."""

from __future__ import annotations

import math
from typing import Any

from ccyclegan.core.data import EMOTIONS
from ccyclegan.core.generator_files import strength_text


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


def _accuracy_row(label: str, acc: dict[str, Any]) -> str:
    return ("| " + label + " | " + _pct(acc["overall"]) + " | "
            + " | ".join(_pct(acc["per_target"][e]) for e in EMOTIONS) + " |")


def _header_section(m: dict[str, Any]) -> list[str]:
    """What was evaluated, and the expression accuracy table."""
    s, mod, ide, clf = m["sample"], m["model"], m["identity"], m["classifier"]
    names = list(EMOTIONS)
    return [
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
        _accuracy_row("CCycleGAN", mod["expression_accuracy"]),
        _accuracy_row("identity", ide["expression_accuracy"]),
        "| classifier on real faces (reference) | " + _pct(clf["accuracy_real"]) + " | "
        + " | ".join(_pct(clf["per_class_real"][e]) for e in names) + " |",
        "",
    ]


def _second_judge_section(m: dict[str, Any]) -> list[str]:
    if (sec := m.get("second_judge")) is None:
        return []
    names = list(EMOTIONS)
    arch = (sec.get("config") or {}).get("arch", "vgg")
    return [
        f"Second judge `{sec['path']}` ({arch}; {_pct(sec['accuracy_real'])} on the real "
        f"faces; identity {_pct(sec['identity_expression_accuracy'])}):", "",
        "| | overall | " + " | ".join(names) + " |",
        "|---|---|" + "---|" * len(names),
        _accuracy_row("CCycleGAN", sec["expression_accuracy"]), "",
        f"Its FED: {_f(sec['fed'])} (floor {_f(sec['fed_floor'])}).", ""]


def _unchanged_section(m: dict[str, Any]) -> list[str]:
    if (unch := m["model"].get("unchanged")) is None:
        return []
    return [f"Requests that leave the face nearly unchanged (mean change in the face box "
            f"under {unch['threshold_grey_levels']:g} grey level): "
            f"{_pct(unch['share'])}; mean change there "
            f"{unch['mean_change_grey_levels']:.1f} grey levels.", ""]


def _person_section(m: dict[str, Any]) -> list[str]:
    if (per := m.get("person")) is None:
        return []
    th = per["thresholds"]
    other = per["another_person_of_the_target_emotion"]
    lines = [
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
    return lines


def _pick(block: dict | None, e: str, per: str = "per_target") -> dict | None:
    """One emotion's entry of a distance block (or its "overall")."""
    if block is None:
        return None
    return block["overall"] if e == "overall" else block[per][e]


def _kid_text(k: dict | None) -> str:
    return "n/a" if k is None else f"{1e3 * k['mean']:.2f} ± {1e3 * k['std']:.2f}"


def _realism_table(m: dict[str, Any]) -> list[str]:
    """FED (and FID, KID) per target and overall, beside the identity mapping and the floor."""
    s, mod, ide = m["sample"], m["model"], m["identity"]
    fed, fid = mod["fed"], mod["fid"]
    header = ["target", "n transl.", "n real", "FED", "FED identity", "FED floor"]
    if fid is not None:
        header += ["FID", "FID identity", "FID floor", "KID x1e3", "KID identity x1e3"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for e in [*EMOTIONS, "overall"]:
        n_t = s["translations"] if e == "overall" else s["per_target"][e]["translated"]
        n_r = s["faces"] if e == "overall" else s["per_target"][e]["real"]
        row = [e, str(n_t), str(n_r), _f(_pick(fed, e)["frechet"]),
               _f(_pick(ide["fed"], e)["frechet"]),
               _f(_pick(m["floor"]["fed"], e, "per_emotion")["frechet"])]
        if fid is not None:
            row += [_f(_pick(fid, e)["frechet"], ".2f"), _f(_pick(ide["fid"], e)["frechet"], ".2f"),
                    _f(_pick(m["floor"]["fid"], e, "per_emotion")["frechet"], ".2f"),
                    _kid_text(_pick(fid, e)["kid"]), _kid_text(_pick(ide["fid"], e)["kid"])]
        lines.append("| " + " | ".join(row) + " |")
    return lines


def _realism_section(m: dict[str, Any]) -> list[str]:
    mod, ide = m["model"], m["identity"]
    lines = [
        "![confusion](confusion.png) ![identity](confusion_identity.png)", "",
        "## Realism", "",
        "Frechet distance between the translations to emotion t and the real test faces of "
        "emotion t (and overall: all translations vs all real faces; note the class mix "
        "differs). FED uses the classifier's penultimate features; FID/KID use Inception-v3 "
        "pool3 features. The floor is the distance between two random halves of the real "
        "faces (per emotion: halves of that emotion, so smaller samples).", "",
        *_realism_table(m),
    ]
    fed_mean = _mean_of(mod["fed"]["per_target"])
    floor_mean = _mean_of(m["floor"]["fed"]["per_emotion"])
    lines += ["", f"FED, mean over the 7 targets: {_f(fed_mean)} against a mean floor of "
              f"{_f(floor_mean)} ({_f(fed_mean / floor_mean, '.2f')}x); the identity mapping: "
              f"{_f(_mean_of(ide['fed']['per_target']))}." if fed_mean and floor_mean else
              "FED mean: n/a.", ""]
    inc = m["inception"]
    if mod["fid"] is None:
        lines += [f"FID/KID: not computed. {inc['note']}", ""]
    else:
        source = (f"Inception weights `{inc['weights']}`, resize `{inc['resize']}`"
                  if inc["weights"] else f"feature extractor `{inc.get('extractor')}`")
        lines += [f"FID/KID: {source}; "
                  f"KID: {m['kid']['estimator']}, kernel {m['kid']['kernel']}, "
                  f"{m['kid']['subsets']} subsets of up to {m['kid']['subset_size']}.", ""]
    return lines


def _content_section(m: dict[str, Any]) -> list[str]:
    rec, chg = m["model"]["reconstruction"], m["model"]["translation_change"]
    box = m["face_box"]
    return [
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
        "| identity | 0 | inf | 1 | "
        + _pct(m["identity"]["reconstruction"]["expression_kept"]) + " | 0 | 0 |",
        "", "![samples](samples.png)", "",
    ]


def render_report(m: dict[str, Any]) -> str:
    """report.md of a metrics dict (as evaluate writes to metrics.json)."""
    sections = (_header_section, _second_judge_section, _unchanged_section, _person_section,
                _realism_section, _content_section)
    return "\n".join(line for section in sections for line in section(m))
