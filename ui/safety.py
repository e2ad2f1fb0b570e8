"""Predict-page safety widgets: withheld decisions, the deliberate "score anyway", and a one-click switch to the
task an upload belongs to (files kept in session state, in memory only).

The rule itself is `core.inference.decision.decide`; this module only draws it.
"""
from __future__ import annotations

import streamlit as st

from core.inference import routing
from core.inference.decision import NOT_ASSESSED, OUT_OF_SCOPE  # noqa: F401  (OUT_OF_SCOPE: for the pages)
from core.models import store
from core.registry import TASKS

ANYWAY_KEY = "predict_score_anyway"
CARRIED_KEY = "predict_carried"  # [(name, bytes)] kept across a task switch


def score_anyway() -> bool:
    return bool(st.session_state.get(ANYWAY_KEY, False))


def anyway_toggle() -> None:
    st.toggle(f"Score anyway (the probability is shown, marked {OUT_OF_SCOPE}; still no decision)", key=ANYWAY_KEY,
              help="For checking what the model does with a picture it was not trained on. It never becomes a decision.")


def withheld_panel(reason: str, probability: float | None, fmt, toggle: bool = True) -> None:
    """The single-image view of a withheld decision (`toggle=False` when the worklist already drew the toggle)."""
    st.metric("Decision", NOT_ASSESSED, help="The image is not the kind this task's models were trained on.")
    st.error(f"**Not assessed.** {reason}", icon=":material/block:")
    if toggle:
        anyway_toggle()
    if score_anyway() and probability is not None:
        st.metric(f"Model output ({OUT_OF_SCOPE})", fmt(probability),
                  help="What the network returns for this picture. It is outside the model's scope: not a probability of the finding.")
        st.caption(f"Exact model output ({OUT_OF_SCOPE}): {probability:.8f}")


def shown_probability(scored) -> float | None:
    """A worklist row's probability: hidden for a withheld image unless the user chose to score anyway."""
    return scored.probability if scored.withheld is None or score_anyway() else None


def _available() -> tuple[str, ...]:
    return tuple(t for t in TASKS if store.bundled_models(t))


def _switch(target: str, files: list[tuple[str, bytes]]) -> None:
    from ui import common

    st.session_state[CARRIED_KEY] = files
    common.select_task(target)  # the sidebar keeps (or picks) that task's model


def offer_switch(results: list[dict], task: str, uploads: list[tuple[str, bytes]]) -> None:
    """When every withheld upload looks like another task's modality, offer to move all uploads there."""
    withheld = [r["scored"] for r in results if r["scored"].ok and r["scored"].withheld]
    if not withheld:
        return
    kinds = {s.looks_like for s in withheld}
    if len(kinds) != 1:
        return
    targets = routing.tasks_for(kinds.pop(), _available())
    targets = tuple(t for t in targets if t != task)
    if not targets:
        return
    names = ", ".join(TASKS[t].title for t in targets)
    n = sum(1 for r in results if r["scored"].ok)
    who = "This image looks" if n == 1 else f"{len(withheld)} of the {n} images look"
    st.info(f"{who} like {'it belongs' if n == 1 else 'they belong'} to another task: {names}. "
            "Switch task and keep the files?", icon=":material/alt_route:")
    cols = st.columns(len(targets))
    for col, t in zip(cols, targets):
        pop = routing.population(t)
        col.button(f"Switch to {TASKS[t].title.split(' (')[0]} ({pop})", key=f"predict_route_{t}", on_click=_switch,
                   args=(t, uploads), width="stretch", type="primary")


def carried_files(uploads: list[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
    """Files brought over by a task switch that are not also in the uploader now."""
    have = {(n, len(d), hash(d)) for n, d in uploads}
    return [(n, d) for n, d in st.session_state.get(CARRIED_KEY, []) if (n, len(d), hash(d)) not in have]


def clear_carried() -> None:
    st.session_state.pop(CARRIED_KEY, None)
