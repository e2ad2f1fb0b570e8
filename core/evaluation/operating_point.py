"""Operating points in plain language: presets, decisions and what a threshold means for patients.

Pure functions over `core.evaluation.metrics.OperatingCurve` counts, so the app can move the operating point on every
slider tick without looking at images again. A case is called positive when `score >= threshold`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from core.evaluation import metrics
from core.evaluation.metrics import OperatingCurve
from core.registry import TaskSpec, get_task

# Preset id -> (button label, rule understood by `preset_threshold`)
PRESETS: dict[str, tuple[str, str]] = {
    "youden": ("Best balance (Youden J)", "youden"),
    "sens90": ("Sensitivity ≥ 90%", "sensitivity_0.90"),
    "sens95": ("Sensitivity ≥ 95%", "sensitivity_0.95"),
    "sens99": ("Sensitivity ≥ 99%", "sensitivity_0.99"),
    "spec90": ("Specificity ≥ 90%", "specificity_0.90"),
    "spec95": ("Specificity ≥ 95%", "specificity_0.95"),
}

# How to talk about the cases of each task: (positive cases, negative cases, one case)
_NOUNS: dict[str, tuple[str, str, str]] = {
    "pneumonia": ("pneumonia cases", "normal X-rays", "X-ray"),
    "effusion": ("X-rays with pleural effusion", "normal X-rays", "X-ray"),
    "malaria": ("parasitized cells", "uninfected cells", "cell image"),
}

RATE_LABELS: dict[str, tuple[str, str]] = {
    # key -> (short name, plain-language meaning)
    "sensitivity": ("Sensitivity", "Share of cases WITH the finding that the model flags"),
    "specificity": ("Specificity", "Share of cases WITHOUT the finding that the model clears"),
    "ppv": ("PPV (positive predictive value)", "When the model flags a case, how often the finding is really there"),
    "npv": ("NPV (negative predictive value)", "When the model clears a case, how often the finding is really absent"),
    "accuracy": ("Accuracy", "Share of all cases called correctly"),
    "f1": ("F1 score", "Balance of PPV and sensitivity (1 = perfect)"),
}


def nouns(task: str | TaskSpec) -> tuple[str, str, str]:
    t = get_task(task) if isinstance(task, str) else task
    if t.name in _NOUNS:
        return _NOUNS[t.name]
    unit = "X-rays" if t.modality == "xray" else "images"
    return (f"{t.finding} cases", f"{t.negative.lower()} {unit}", unit[:-1])


def decide(probability: float, threshold: float) -> bool:
    """True when the case is flagged for the finding (same rule as every metric: score >= threshold)."""
    return bool(probability >= threshold)


def decision_label(probability: float, threshold: float, task: str | TaskSpec) -> str:
    t = get_task(task) if isinstance(task, str) else task
    return t.positive if decide(probability, threshold) else t.negative


def preset_threshold(preset: str, y_true, y_score) -> float:
    """Threshold of a preset, chosen on the scores given (the app passes VALIDATION predictions)."""
    if preset not in PRESETS:
        raise KeyError(f"unknown preset {preset!r}; known: {list(PRESETS)}")
    return metrics.choose_threshold(PRESETS[preset][1], y_true, y_score)


def threshold_for_min_sensitivity(curve: OperatingCurve, target: float) -> float:
    """Highest threshold whose sensitivity on `curve` is at least `target` (0..1), by binary search on counts.

    Equals `metrics.threshold_for_sensitivity` on the same scores, without re-sorting them.
    """
    if curve.thresholds.size == 0:
        return 0.5
    need = math.ceil(target * curve.n_pos - 1e-9)  # positives that must be caught
    # tp is non-decreasing as the threshold falls; first index reaching `need`
    i = int(np.searchsorted(curve.tp, need, side="left"))
    i = min(i, curve.thresholds.size - 1)
    return float(curve.thresholds[i])


def at(curve: OperatingCurve, threshold: float) -> dict[str, float]:
    """Counts and rates on one prediction set at a threshold: O(log n)."""
    c = curve.counts(threshold)
    return {**c, **metrics.rates(c), "threshold": float(threshold), "n_pos": curve.n_pos, "n_neg": curve.n_neg}


def per_hundred(k: int, n: int) -> int:
    return int(round(100 * k / n)) if n else 0


def meaning(task: str | TaskSpec, point: dict, where: str = "in validation", lead: str = "At this setting the model") -> str:
    """One sentence: what this operating point did to patients on a prediction set.

    e.g. "At this setting the model caught 96 of every 100 pneumonia cases in validation (412 of 430) and raised
    a false alarm on 12 of every 100 normal X-rays (24 of 201)."
    """
    pos, neg, _ = nouns(task)
    tp, fp, n_pos, n_neg = point["tp"], point["fp"], point["n_pos"], point["n_neg"]
    return (
        f"{lead} caught {per_hundred(tp, n_pos)} of every 100 {pos} {where} ({tp} of {n_pos}) "
        f"and raised a false alarm on {per_hundred(fp, n_neg)} of every 100 {neg} ({fp} of {n_neg})."
    )


def short_meaning(task: str | TaskSpec, point: dict) -> str:
    """Compact form for the sidebar."""
    pos, neg, _ = nouns(task)
    return (
        f"Catches **{per_hundred(point['tp'], point['n_pos'])} in 100** {pos}; "
        f"false alarm on **{per_hundred(point['fp'], point['n_neg'])} in 100** {neg} (validation)."
    )


def predictive_sentence(task: str | TaskSpec, sensitivity: float, specificity: float, prevalence: float) -> str:
    """What a flag and a clear call mean at a given prevalence (Bayes), in words."""
    t = get_task(task) if isinstance(task, str) else task
    _, _, unit = nouns(t)
    ppv, npv = metrics.predictive_values_at_prevalence(sensitivity, specificity, prevalence)
    per = round(prevalence * 100, 1)
    per_s = f"{per:g}"
    parts = [f"If {per_s} in 100 {unit}s you see have {t.finding}:"]
    if math.isnan(ppv):
        parts.append("the model would flag none of them, so a flag has no track record.")
    else:
        parts.append(f"a flag from the model is right about {round(ppv * 100)} times in 100,")
    if math.isnan(npv):
        parts.append("and it would clear none.")
    else:
        parts.append(f"and a clear result is right about {round(npv * 100)} times in 100.")
    return " ".join(parts)


@dataclass(frozen=True)
class SplitPoint:
    """The same threshold read on validation (where it is chosen) and on the held-out test set."""

    threshold: float
    val: dict
    test: dict | None


def split_point(val_curve: OperatingCurve, test_curve: OperatingCurve | None, threshold: float) -> SplitPoint:
    return SplitPoint(float(threshold), at(val_curve, threshold), at(test_curve, threshold) if test_curve is not None else None)


def metrics_table(val_y, val_s, test_y, test_s, threshold: float, prevalence: float | None = None,
                  n_boot: int = 1000, val_groups=None, test_groups=None) -> list[dict]:
    """Rows of (metric, plain meaning, validation value + 95% CI, test value + 95% CI) for the tuning page.

    CIs: with a set's patient groups, the cluster bootstrap over patients (`intervals.rate_cis`, its own
    `intervals.N_BOOT` resamples, so the card's threshold gives the card's patient-level intervals); without, the
    image-level stratified bootstrap (`metrics.bootstrap_rates_ci`). With `prevalence`, two more rows give PPV and
    NPV re-weighted to that prevalence (Bayes) from each replicate's sensitivity and specificity.
    """
    from core.evaluation import intervals

    sets = {"val": (val_y, val_s, val_groups)}
    if test_y is not None:
        sets["test"] = (test_y, test_s, test_groups)
    vals: dict[str, dict] = {}
    cis: dict[str, dict] = {}
    reps: dict[str, dict | None] = {}
    for k, (y, s, g) in sets.items():
        vals[k] = metrics.metrics_at(y, s, threshold)
        if g is None:
            cis[k], reps[k] = metrics.bootstrap_rates_ci(y, s, threshold, n_boot=n_boot), None
        else:
            cis[k], reps[k] = intervals.rate_cis(y, s, g, threshold)
    rows = []
    for key, (name, plain) in RATE_LABELS.items():
        row = {"metric": name, "meaning": plain}
        for k in sets:
            row[k] = vals[k][key]
            row[f"{k}_ci"] = cis[k][key]
        rows.append(row)
    if prevalence is not None:
        for key, idx in (("ppv", 0), ("npv", 1)):
            name = f"{key.upper()} at {prevalence * 100:g}% prevalence"
            row = {"metric": name, "meaning": RATE_LABELS[key][1] + ", if this many patients have the finding"}
            for k in sets:
                se, sp = vals[k]["sensitivity"], vals[k]["specificity"]
                row[k] = metrics.predictive_values_at_prevalence(se, sp, prevalence)[idx] if not (math.isnan(se) or math.isnan(sp)) else float("nan")
                row[f"{k}_ci"] = (_bootstrap_pv_ci(vals[k], prevalence, idx, n_boot) if reps[k] is None
                                  else _replicate_pv_ci(reps[k], prevalence, idx))
            rows.append(row)
    return rows


def _bootstrap_pv_ci(point: dict, prevalence: float, idx: int, n_boot: int, seed: int = 0, alpha: float = 0.05) -> tuple[float, float]:
    """Stratified-bootstrap CI of PPV (idx 0) or NPV (idx 1) re-weighted to `prevalence`.

    Same draw as `metrics.bootstrap_rates_ci`: resampled true-positive and false-positive counts are binomial,
    each replicate's sensitivity and specificity go through Bayes at the new prevalence.
    """
    n_pos, n_neg = point["tp"] + point["fn"], point["tn"] + point["fp"]
    if not n_pos or not n_neg:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    tp_b = rng.binomial(n_pos, point["tp"] / n_pos, size=n_boot)
    fp_b = rng.binomial(n_neg, point["fp"] / n_neg, size=n_boot)
    vals = metrics.predictive_values_at_prevalence(tp_b / n_pos, 1 - fp_b / n_neg, prevalence)[idx]
    vals = vals[np.isfinite(vals)]
    if not vals.size:
        return float("nan"), float("nan")
    return float(np.quantile(vals, alpha / 2)), float(np.quantile(vals, 1 - alpha / 2))


def _replicate_pv_ci(reps: dict, prevalence: float, idx: int, alpha: float = 0.05) -> tuple[float, float]:
    """PPV (idx 0) or NPV (idx 1) at `prevalence` from each cluster-bootstrap replicate's sensitivity/specificity."""
    se, sp = reps["sensitivity"], reps["specificity"]
    ok = np.isfinite(se) & np.isfinite(sp)
    if not ok.any():
        return float("nan"), float("nan")
    vals = metrics.predictive_values_at_prevalence(se[ok], sp[ok], prevalence)[idx]
    vals = vals[np.isfinite(vals)]
    if not vals.size:
        return float("nan"), float("nan")
    return float(np.quantile(vals, alpha / 2)), float(np.quantile(vals, 1 - alpha / 2))


def fmt_prob(p: float) -> str:
    """A model probability for people: never '100%' or '0%' for a value that is not exactly that."""
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return "—"
    if 0.999 <= p < 1:
        return ">99.9%"
    if 0 < p < 0.001:
        return "<0.1%"
    return f"{p:.1%}"


def fmt_pct(v: float, digits: int = 1) -> str:
    return "—" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v * 100:.{digits}f}%"


def fmt_ci(ci: tuple[float, float], digits: int = 1) -> str:
    lo, hi = ci
    if math.isnan(lo) or math.isnan(hi):
        return "—"
    return f"{lo * 100:.{digits}f}–{hi * 100:.{digits}f}%"


def _pct(v: float, digits: int) -> tuple[str, float]:
    """(text, the number it shows): never 0% or 100% for a value that is not exactly that."""
    text = f"{v * 100:.{digits}f}"
    step = 10.0 ** -digits
    if float(text) == 0.0 and v > 0:
        return f"<{step:.{digits}f}%", step
    if float(text) == 100.0 and v < 1:
        return f">{100 - step:.{digits}f}%", 100 - step
    return f"{text}%", float(text)


def fmt_pair(p: float, threshold: float) -> tuple[str, str]:
    """A probability and the threshold it is compared with, as shown side by side: with enough digits that the text
    never contradicts the decision (flagged exactly when p >= threshold), and never "100%" or "0%" for a value that
    is not exactly that. E.g. (0.99951, 0.9995) -> ("99.951%", "99.950%"), not (">99.9%", "100.0%")."""
    for digits in range(1, 9):
        (a, fa), (b, fb) = _pct(p, digits), _pct(threshold, digits)
        if (fa >= fb) == (p >= threshold) and (a != b or p == threshold):
            return a, b
    # closer than a millionth of a percent: say the side in words rather than in digits
    return ("at the threshold" if p >= threshold else "just below the threshold"), _pct(threshold, 8)[0]


def _wilson(k: int, n: int) -> tuple[float, float]:
    return metrics.wilson_ci(k, n) if n else (float("nan"), float("nan"))


def split_rates(point: dict) -> dict:
    """Sensitivity and specificity of one prediction set at a point (`at`), each with its 95% Wilson interval."""
    tp, fp, n_pos, n_neg = point["tp"], point["fp"], point["n_pos"], point["n_neg"]
    return {"sensitivity": tp / n_pos if n_pos else float("nan"), "sensitivity_ci": _wilson(tp, n_pos),
            "specificity": (n_neg - fp) / n_neg if n_neg else float("nan"), "specificity_ci": _wilson(n_neg - fp, n_neg),
            "n_pos": n_pos, "n_neg": n_neg}


def honest_summary(task: str | TaskSpec, figures: dict[str, dict]) -> list[str]:
    """Plain sentences for the point of decision from every set that has figures at it (`figures`: name ->
    `split_rates`, e.g. "validation", "test", "external"). Where two sets disagree beyond their 95% intervals, one
    sentence says so, and the least flattering set leads (the one that misses the most of either kind)."""
    pos, neg, _ = nouns(task)
    sets = [(name, f) for name, f in figures.items() if f and f["n_pos"] and f["n_neg"]]
    if not sets:
        return []

    def worst(f):
        return min(f["sensitivity"], f["specificity"])

    sets.sort(key=lambda s: worst(s[1]))
    out = [f"On the {name} images at this setting the model caught {per_hundred(round(f['sensitivity'] * f['n_pos']), f['n_pos'])} "
           f"of every 100 {pos} ({fmt_ci(f['sensitivity_ci'], 0)}) and raised a false alarm on "
           f"{per_hundred(round((1 - f['specificity']) * f['n_neg']), f['n_neg'])} of every 100 {neg} "
           f"({fmt_ci((1 - f['specificity_ci'][1], 1 - f['specificity_ci'][0]), 0)})." for name, f in sets]
    for kind, label in (("specificity", "false alarms"), ("sensitivity", "missed cases")):
        for (a, fa), (b, fb) in ((x, y) for i, x in enumerate(sets) for y in sets[i + 1:]):
            lo_a, hi_a = fa[f"{kind}_ci"]
            lo_b, hi_b = fb[f"{kind}_ci"]
            if hi_a < lo_b or hi_b < lo_a:
                more = a if fa[kind] < fb[kind] else b
                fewer = b if more == a else a
                out.insert(0, f"The {more} images had clearly more {label} than the {fewer} images (the 95% intervals "
                              f"do not overlap): expect the {more} figure, not the {fewer} one, until your own cases say otherwise.")
                return out
    return out
