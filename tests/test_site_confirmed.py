"""Site validation from the cases readers confirmed (core.site.build.from_confirmations and the Site validation page):
the same report, intervals and too-few rule as hand-made labels, only this model file's results, and the labels named
"reader-confirmed, not ground truth" in the report, the table, the saved profile and the profile list, which also
says who saved it."""
from __future__ import annotations

import hashlib

import numpy as np
import pytest

from core import audit, confirmations, sqlwal, users
from core.models import store
from core.models.selection import default_model
from core.site import build, cases, profiles, validate
from tests.app_support import need, start, texts

TASK = "pneumonia"
READER = users.User(sub="oidc|ann", email="ann@example.org", roles=("clinician",), source="token")


@pytest.fixture
def db(tmp_path, monkeypatch):
    monkeypatch.setenv("SECONDLOOK_CONFIRMATIONS", str(tmp_path / "confirmations.sqlite"))
    monkeypatch.setenv("SECONDLOOK_SITES", str(tmp_path / "sites.sqlite"))
    yield tmp_path / "confirmations.sqlite"
    sqlwal.close_all()


def confirm_cases(n_pos: int, n_neg: int, model_id: str, model_sha: str, threshold: float = 0.5, seed: int = 0,
                  site: str | None = None, tag: str = "") -> tuple[np.ndarray, np.ndarray]:
    """Readers' calls on n_pos + n_neg results (positives score higher, as a working model's do); returns (y, s)."""
    rng = np.random.default_rng(seed)
    y = np.r_[np.ones(n_pos, int), np.zeros(n_neg, int)]
    s = np.clip(np.r_[rng.beta(5, 2, n_pos), rng.beta(2, 5, n_neg)], 1e-4, 1 - 1e-4)
    pos, neg = "PNEUMONIA", "NORMAL"
    for i, (label, p) in enumerate(zip(y, s)):
        sc = confirmations.Scored(hashlib.sha256(f"{tag}{seed}-{i}".encode()).hexdigest(), TASK, model_id, model_sha,
                                  threshold, float(p), pos if p >= threshold else neg, site)
        confirmations.record(sc, reader_call=pos if label else neg, user=READER, current_model_sha256=model_sha,
                             current_threshold=threshold)
    return y, s


def test_a_confirmed_set_is_evaluated_like_a_hand_labelled_one(db):
    sha = "b" * 64
    y, s = confirm_cases(40, 60, "secondlook_cnn", sha)
    confirm_cases(30, 0, "secondlook_cnn", "c" * 64, tag="old")  # another model file's: left out
    found, rep = build.from_confirmations(TASK, "secondlook_cnn", sha, 0.5)
    same = build.report(TASK, y, s, 0.5)
    assert len(found) == 100 and rep["labels"] == build.READER_CONFIRMED
    assert rep["n_positive"] == 40 and rep["proposed_threshold"] == same["proposed_threshold"] is not None
    assert rep["current"]["ci"] == same["current"]["ci"] and rep["auc_ci"] == same["auc_ci"]
    p = build.make_profile("ward", TASK, "secondlook_cnn", sha, 0.5, rep, note=build.confirmed_note(rep))
    assert build.labels_of(p) == build.READER_CONFIRMED and p.note.startswith(f"Labels are {build.READER_CONFIRMED}")
    assert build.labels_of(build.make_profile("x", TASK, "secondlook_cnn", sha, 0.5, same)) == build.HAND_LABELLED


def test_too_few_confirmed_cases_follow_the_same_rule(db):
    sha = "b" * 64
    confirm_cases(6, 30, "secondlook_cnn", sha)
    _, rep = build.from_confirmations(TASK, "secondlook_cnn", sha, 0.5)
    assert rep["too_small"] == validate.too_small(6, 30) and rep["proposed_threshold"] is None
    p = build.make_profile("tiny", TASK, "secondlook_cnn", sha, 0.5, rep, note=build.confirmed_note(rep))
    assert p.threshold == 0.5 and "Too few cases" in p.note and build.READER_CONFIRMED in p.note
    with pytest.raises(cases.SiteInputError, match="0 PNEUMONIA and 0 NORMAL"):
        build.from_confirmations(TASK, "secondlook_cnn", "d" * 64, 0.5)
    confirm_cases(0, 5, "secondlook_cnn", "e" * 64, tag="one")
    with pytest.raises(cases.SiteInputError, match="needs both"):
        build.from_confirmations(TASK, "secondlook_cnn", "e" * 64, 0.5)


def test_only_one_site_profiles_confirmations_when_asked(db):
    sha = "b" * 64
    confirm_cases(25, 25, "secondlook_cnn", sha, site="ward-3")
    confirm_cases(25, 25, "secondlook_cnn", sha, seed=1)
    assert build.from_confirmations(TASK, "secondlook_cnn", sha, 0.5)[1]["n"] == 100
    found, rep = build.from_confirmations(TASK, "secondlook_cnn", sha, 0.5, site_profile="ward-3")
    assert rep["n"] == 50 and rep["site_profile_filter"] == "ward-3"


def _frame(at, column: str):
    """The page's table that has `column` (AppTest's dataframes carry no key)."""
    hits = [df.value for df in at.dataframe if column in df.value.columns]
    assert hits, [list(df.value.columns) for df in at.dataframe]
    return hits[0]


def test_site_page_builds_saves_lists_and_deletes_a_profile_from_confirmations(db):
    need(bool(store.bundled_models(TASK)), "no pneumonia model bundled")
    mid = default_model(TASK)
    card = store.read_card(TASK, mid)
    confirm_cases(30, 40, mid, card["sha256"], float(card["threshold"]), site="ward-3")
    at = start(TASK, mid, page="site")
    shown = "\n".join(texts(at))
    assert "70 confirmed cases" in shown and build.READER_CONFIRMED in shown
    table = _frame(at, "reader's call")
    assert len(table) == 70 and set(table["labels"]) == {build.READER_CONFIRMED}
    assert at.selectbox(key="site_confirmed_where").options == ["All confirmations in this installation", "ward-3"]
    at.text_input(key="site_confirmed_name").input("ward-3-readers").run()
    at.button(key="site_confirmed_evaluate").click().run()
    assert not at.exception, [e.message for e in at.exception]
    shown = "\n".join(texts(at))
    assert "70 cases" in shown and "Proposed site operating point" in shown
    assert any(f"Labels: {build.READER_CONFIRMED}" in w.value for w in at.warning)
    assert set(_frame(at, "current 95% CI")["labels"]) == {build.READER_CONFIRMED}
    at.button(key="site_save").click().run()
    assert not at.exception, [e.message for e in at.exception]
    saved = profiles.get("ward-3-readers", TASK, mid)
    me = users.local_user()
    assert saved.metrics["labels"] == build.READER_CONFIRMED and build.READER_CONFIRMED in saved.note
    assert (saved.created_by, saved.created_by_role) == (me.label, me.role)
    assert at.sidebar.selectbox(key=f"site_sel/{TASK}/{mid}").value == "ward-3-readers"
    listed = _frame(at, "saved by").set_index("name").loc["ward-3-readers"]
    assert listed["labels"] == build.READER_CONFIRMED and listed["saved by"].startswith(me.label)
    kinds = [e["kind"] for e in audit.events(db=audit.db_path())]
    assert "profile_saved" in kinds and "profile_applied" in kinds

    at.button(key="site_delete").click().run()
    assert not at.exception, [e.message for e in at.exception]
    assert profiles.list_profiles(TASK, mid) == []
    assert f"{TASK}/{mid}" not in at.session_state["op_thresholds"]  # back to the shipped point
    assert "profile_deleted" in [e["kind"] for e in audit.events(db=audit.db_path())]
