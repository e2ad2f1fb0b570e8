"""Interactive plotly figures for the app. Pure: arrays in, `plotly.graph_objects.Figure` out (no Streamlit).

Every axis says what it means for patients, hover text gives the threshold and counts, and the operating point is
drawn as a marker so a clinician can see where the current setting sits on the curve.
"""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from core.evaluation import metrics
from core.evaluation.metrics import OperatingCurve

PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf"]
POINT_COLOUR = "#d62728"
OTHER_POINT_COLOUR = "#7f7f7f"
CLASS_COLOURS = ("#2c7fb8", "#e6550d")  # negative, positive
_FONT = dict(size=13)


def _layout(fig: go.Figure, height: int = 380, **kw) -> go.Figure:
    fig.update_layout(
        height=height,
        margin=dict(l=10, r=10, t=40, b=10),
        font=_FONT,
        legend=dict(orientation="h", yanchor="bottom", y=1.0, xanchor="left", x=0),
        hoverlabel=dict(font_size=12),
        **kw,
    )
    return fig


def _thin(*arrays: np.ndarray, max_points: int = 1500) -> list[np.ndarray]:
    """Keep every k-th point (and the last) so very long curves stay light in the browser."""
    n = len(arrays[0])
    if n <= max_points:
        return list(arrays)
    idx = np.unique(np.r_[np.linspace(0, n - 1, max_points).round().astype(int), n - 1])
    return [a[idx] for a in arrays]


def roc_figure(curves: list[dict], height: int = 400) -> go.Figure:
    """Overlaid ROC curves.

    Each item: name, curve (OperatingCurve), optional auc (auc, lo, hi), optional points: list of
    dict(threshold, label, colour, symbol) marked on that curve.
    """
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", line=dict(dash="dot", color="#bbbbbb"),
                             name="Chance", hoverinfo="skip", showlegend=False))
    for i, item in enumerate(curves):
        curve: OperatingCurve = item["curve"]
        colour = item.get("colour", PALETTE[i % len(PALETTE)])
        fpr, tpr, thr = curve.roc()
        fpr, tpr, thr = _thin(fpr, tpr, thr)
        name = item["name"]
        if item.get("auc") is not None:
            auc, lo, hi = item["auc"]
            name = f"{name} — AUC {auc:.3f} ({lo:.3f}–{hi:.3f})"
        thr_txt = np.where(np.isfinite(thr), np.char.mod("%.4f", np.where(np.isfinite(thr), thr, 0)), "above all")
        fig.add_trace(go.Scatter(
            x=fpr, y=tpr, mode="lines", name=name, line=dict(color=colour, width=2.5, shape="hv"),
            customdata=thr_txt,
            hovertemplate="False-alarm rate %{x:.1%}<br>Sensitivity %{y:.1%}<br>Threshold %{customdata}<extra></extra>",
        ))
        for p in item.get("points", []):
            c = curve.counts(p["threshold"])
            x, y = c["fp"] / max(curve.n_neg, 1), c["tp"] / max(curve.n_pos, 1)
            fig.add_trace(go.Scatter(
                x=[x], y=[y], mode="markers", name=p.get("label", "Operating point"),
                marker=dict(size=p.get("size", 14), color=p.get("colour", POINT_COLOUR), symbol=p.get("symbol", "circle"),
                            line=dict(width=2, color="white")),
                hovertemplate=(f"{p.get('label', 'Operating point')}<br>threshold {p['threshold']:.4f}<br>"
                               "Sensitivity %{y:.1%}<br>False-alarm rate %{x:.1%}<extra></extra>"),
                showlegend=p.get("legend", True),
            ))
    fig.update_xaxes(title="False-alarm rate (1 − specificity)", range=[-0.01, 1.01], tickformat=".0%")
    fig.update_yaxes(title="Sensitivity (cases caught)", range=[-0.01, 1.02], tickformat=".0%")
    return _layout(fig, height, title=dict(text="ROC curve", x=0, y=0.99, yanchor="top", font=dict(size=14)))


def pr_figure(y_true, y_score, points: list[dict] = (), name: str = "Model", height: int = 400) -> go.Figure:
    """Precision–recall curve with average precision in the legend and the operating point(s) marked."""
    precision, recall, thr = metrics.pr_curve(y_true, y_score)
    ap = metrics.average_precision(y_true, y_score)
    prevalence = float(np.mean(y_true)) if len(y_true) else float("nan")
    thr_full = np.r_[thr, np.nan]
    precision, recall, thr_full = _thin(precision, recall, thr_full)
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=[0, 1], y=[prevalence, prevalence], mode="lines", line=dict(dash="dot", color="#bbbbbb"),
                             name=f"Chance (prevalence {prevalence:.0%})", hoverinfo="skip"))
    fig.add_trace(go.Scatter(
        x=recall, y=precision, mode="lines", name=f"{name} — average precision {ap:.3f}",
        line=dict(color=PALETTE[0], width=2.5, shape="vh"),
        customdata=np.where(np.isfinite(thr_full), np.char.mod("%.4f", np.nan_to_num(thr_full)), "—"),
        hovertemplate="Sensitivity %{x:.1%}<br>PPV %{y:.1%}<br>Threshold %{customdata}<extra></extra>",
    ))
    y = np.asarray(y_true)
    s = np.asarray(y_score, dtype=float)
    for p in points:
        pred = s >= p["threshold"]
        tp, fp = int(np.sum(pred & (y == 1))), int(np.sum(pred & (y == 0)))
        n_pos = int(y.sum())
        if tp + fp == 0 or n_pos == 0:
            continue
        fig.add_trace(go.Scatter(
            x=[tp / n_pos], y=[tp / (tp + fp)], mode="markers", name=p.get("label", "Operating point"),
            marker=dict(size=p.get("size", 14), color=p.get("colour", POINT_COLOUR), symbol=p.get("symbol", "circle"),
                        line=dict(width=2, color="white")),
            hovertemplate=f"{p.get('label', 'Operating point')}<br>threshold {p['threshold']:.4f}<br>Sensitivity %{{x:.1%}}<br>PPV %{{y:.1%}}<extra></extra>",
            showlegend=p.get("legend", True),
        ))
    fig.update_xaxes(title="Sensitivity (recall)", range=[-0.01, 1.01], tickformat=".0%")
    fig.update_yaxes(title="PPV (precision)", range=[-0.01, 1.02], tickformat=".0%")
    return _layout(fig, height, title=dict(text="Precision–recall curve", x=0, y=0.99, yanchor="top", font=dict(size=14)))


def distribution_figure(y_true, y_score, threshold: float, labels: tuple[str, str], other_threshold: float | None = None,
                        height: int = 340, bins: int = 40) -> go.Figure:
    """Score histograms by true class with the threshold as a vertical line (right of it = flagged)."""
    y = np.asarray(y_true)
    s = np.asarray(y_score, dtype=float)
    edges = np.linspace(0, 1, bins + 1)
    centres = (edges[:-1] + edges[1:]) / 2
    fig = go.Figure()
    for cls, (label, colour) in enumerate(zip(labels, CLASS_COLOURS)):
        counts, _ = np.histogram(s[y == cls], bins=edges)
        fig.add_trace(go.Bar(
            x=centres, y=counts, width=(edges[1] - edges[0]) * 0.95, name=f"Truly {label} ({int(np.sum(y == cls))})",
            marker_color=colour, opacity=0.65,
            hovertemplate=f"Truly {label}<br>probability %{{x:.3f}} ± {0.5 / bins:.3f}<br>%{{y}} images<extra></extra>",
        ))
    fig.add_vline(x=threshold, line=dict(color=POINT_COLOUR, width=3),
                  annotation_text=f"threshold {threshold:.3f}", annotation_position="top")
    if other_threshold is not None and abs(other_threshold - threshold) > 1e-12:
        fig.add_vline(x=other_threshold, line=dict(color=OTHER_POINT_COLOUR, width=2, dash="dash"),
                      annotation_text="current", annotation_position="bottom right")
    fig.update_layout(barmode="overlay")
    fig.update_xaxes(title=f"Model probability of {labels[1]} (right of the line = flagged)", range=[0, 1])
    fig.update_yaxes(title="Number of images")
    return _layout(fig, height, title=dict(text="How the model scores each class", x=0, y=0.99, yanchor="top", font=dict(size=14)))


def confusion_figure(counts: dict, labels: tuple[str, str], height: int = 320) -> go.Figure:
    """2×2 confusion matrix with plain-language cell names and counts."""
    neg, pos = labels
    z = [[counts["tp"], counts["fn"]], [counts["fp"], counts["tn"]]]
    n_pos, n_neg = counts["tp"] + counts["fn"], counts["fp"] + counts["tn"]
    text = [
        [f"<b>{counts['tp']}</b><br>caught<br>({_pct(counts['tp'], n_pos)})", f"<b>{counts['fn']}</b><br>missed<br>({_pct(counts['fn'], n_pos)})"],
        [f"<b>{counts['fp']}</b><br>false alarms<br>({_pct(counts['fp'], n_neg)})", f"<b>{counts['tn']}</b><br>correctly cleared<br>({_pct(counts['tn'], n_neg)})"],
    ]
    colour = [[1, 0], [0, 1]]  # green = right, red = wrong
    fig = go.Figure(go.Heatmap(
        z=colour, x=[f"Model: {pos}", f"Model: {neg}"], y=[f"Truly {pos}", f"Truly {neg}"],
        text=text, texttemplate="%{text}", textfont=dict(size=14),
        colorscale=[[0, "#fbd3d0"], [1, "#cdebd3"]], showscale=False, customdata=z,
        hovertemplate="%{y}, %{x}: %{customdata} images<extra></extra>", xgap=3, ygap=3,
    ))
    fig.update_yaxes(autorange="reversed")
    return _layout(fig, height, title=dict(text="Confusion matrix", x=0, y=0.99, yanchor="top", font=dict(size=14)))


def reliability_figure(items: list[dict], n_bins: int = 10, height: int = 400) -> go.Figure:
    """Reliability (calibration) curves. Each item: name, y, s. Legend shows ECE and Brier score."""
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", line=dict(dash="dot", color="#bbbbbb"),
                             name="Perfectly calibrated", hoverinfo="skip"))
    for i, it in enumerate(items):
        mean_pred, frac_pos, counts = metrics.calibration_curve(it["y"], it["s"], n_bins)
        ece = metrics.expected_calibration_error(it["y"], it["s"], n_bins)
        brier = metrics.brier_score(it["y"], it["s"])
        fig.add_trace(go.Scatter(
            x=mean_pred, y=frac_pos, mode="lines+markers", name=f"{it['name']} — ECE {ece:.3f}, Brier {brier:.3f}",
            line=dict(color=it.get("colour", PALETTE[i % len(PALETTE)]), width=2),
            marker=dict(size=np.clip(np.sqrt(counts) * 1.2, 6, 22)), customdata=counts,
            hovertemplate="Model said %{x:.1%} on average<br>%{y:.1%} truly had the finding<br>%{customdata} images<extra></extra>",
        ))
    fig.update_xaxes(title="Predicted probability (bin average)", range=[0, 1], tickformat=".0%")
    fig.update_yaxes(title="Share that truly had the finding", range=[0, 1.02], tickformat=".0%")
    return _layout(fig, height, title=dict(text="Reliability: does 70% mean 70%?", x=0, y=0.99, yanchor="top", font=dict(size=14)))


def _pct(k: int, n: int) -> str:
    return f"{k / n:.0%}" if n else "—"
