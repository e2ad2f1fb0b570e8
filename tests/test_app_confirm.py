"""AppTest: the reader's confirmation beside each decision on Predict (clinical and the research workbench): agree or
disagree, the reader's call, a note, Save; a change of mind is a new row; a withheld answer takes the call alone; a
result shown under another operating point or model file is refused with the reason and nothing is kept."""
from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from core import confirmations, users
from core.data import load_task_manifest
from core.models import store
from core.models.selection import default_model
from tests.app_support import need, start, texts
from tests.conftest import require_dataset


@pytest.fixture(autouse=True)
def _stores(tmp_path, monkeypatch):
    """Confirmations (and everything else the app writes) go to this test's folder."""
    monkeypatch.setenv("SECONDLOOK_HOME", str(tmp_path))
    monkeypatch.setenv("SECONDLOOK_CONFIRMATIONS", str(tmp_path / "confirmations.sqlite"))
    yield tmp_path / "confirmations.sqlite"


def _film() -> tuple[str, bytes]:
    """A child's chest film from the pneumonia test split: the pneumonia answer is given, the effusion one withheld."""
    require_dataset("pneumonia")
    f = load_task_manifest("pneumonia").query("split == 'test'").file.iloc[0]
    return Path(f).name, Path(f).read_bytes()


def _predict(name: str, data: bytes):
    need(all(store.bundled_models(t) for t in ("pneumonia", "effusion")), "both chest models must be bundled")
    at = start(page="screen", research=False)
    at.file_uploader(key="screen_files_0").set_value([(name, data, "application/octet-stream")]).run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def _key(task: str, data: bytes) -> str:
    return f"confirm_{task}_{hashlib.sha256(data).hexdigest()[:16]}"


def _popovers(at) -> list[str]:
    return [p.proto.popover.label for p in at.get("popover")]


def _save(at, key: str):
    at.button(key=f"{key}_save").click().run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def test_agree_disagree_change_of_mind_and_a_withheld_answer(_stores):
    name, data = _film()
    at = _predict(name, data)
    key = _key("pneumonia", data)
    assert _popovers(at) == ["Confirm or disagree", "Confirm or disagree"]  # pneumonia, and effusion (withheld)
    call = at.radio(key=f"{key}_call")
    decision = call.label.split("**")[1]
    other = next(lab for lab in ("NORMAL", "PNEUMONIA") if lab != decision)
    assert call.value is None and call.label == f"SecondLook says **{decision}**. Your call:"
    assert call.options == [f"Agree: {decision}", f"Disagree: {other}"]  # one control: agreement and call together
    assert at.button(key=f"{key}_save").disabled  # no call yet

    call.set_value(other).run()  # disagree: the other label is the reader's call
    at.text_input(key=f"{key}_note").input("consolidation right lower lobe").run()
    _save(at, key)
    sha = hashlib.sha256(data).hexdigest()
    [row] = confirmations.rows(task="pneumonia", db=_stores)
    mid = default_model("pneumonia")
    card = store.read_card("pneumonia", mid)
    assert row["image_sha256"] == sha and row["model_id"] == mid and row["model_sha256"] == card["sha256"]
    assert row["threshold"] == pytest.approx(card["threshold"]) and row["decision"] == decision
    assert row["reader_call"] == other and row["agree"] == 0 and row["note"] == "consolidation right lower lobe"
    assert row["user_sub"] == users.local_user().sub and row["site_profile"] is None
    assert 0 <= row["probability"] <= 1
    assert f"Saved: you disagreed ({other}) · change" in _popovers(at)

    assert at.radio(key=f"{key}_call").value == other  # the box keeps the saved call
    at.radio(key=f"{key}_call").set_value(decision).run()  # a change of mind
    _save(at, key)
    both = confirmations.to_frame(task="pneumonia", db=_stores)
    assert len(both) == 2 and confirmations.latest(both)["agree"].tolist() == [1]
    assert f"Saved: you agreed ({decision}) · change" in _popovers(at)

    wkey = _key("effusion", data)  # withheld: no decision to agree with, the reader's call alone
    wcall = at.radio(key=f"{wkey}_call")
    assert "no decision" in wcall.label and wcall.options == ["NORMAL", "EFFUSION"]
    wcall.set_value("NORMAL").run()
    _save(at, wkey)
    [w] = confirmations.rows(task="effusion", db=_stores)
    assert w["decision"] is None and w["agree"] is None and w["probability"] is None and w["reader_call"] == "NORMAL"
    assert "Saved: your call NORMAL (no decision to agree with) · change" in _popovers(at)
    assert confirmations.agreement(confirmations.to_frame(db=_stores)) == {"n": 1, "agreed": 1, "rate": 1.0}


def test_a_result_shown_at_another_operating_point_is_refused(_stores):
    name, data = _film()
    at = _predict(name, data)
    key = _key("pneumonia", data)
    at.radio(key=f"{key}_call").set_value("NORMAL").run()
    mid = default_model("pneumonia")
    shown_at = store.read_card("pneumonia", mid)["threshold"]
    at.session_state["op_thresholds"] = {f"pneumonia/{mid}": 0.123}  # the operating point moved before Save landed
    _save(at, key)
    warned = [w.value for w in at.warning if w.value.startswith("Not saved")]
    assert len(warned) == 1 and f"shown at threshold {shown_at:.4f}" in warned[0] and "0.1230" in warned[0]
    assert confirmations.rows(db=_stores) == []
    at.radio(key=f"{key}_call").set_value("PNEUMONIA").run()  # shown again at 0.123: that one may be saved
    _save(at, key)
    [row] = confirmations.rows(db=_stores)
    assert row["threshold"] == pytest.approx(0.123)


def test_a_result_from_another_model_file_is_refused(_stores, monkeypatch):
    from ui import confirm

    name, data = _film()
    at = _predict(name, data)
    key = _key("pneumonia", data)
    at.radio(key=f"{key}_call").set_value("NORMAL").run()
    real = confirm.in_force
    monkeypatch.setattr(confirm, "in_force", lambda t, m: ("f" * 64, real(t, m)[1]))  # the model file was replaced
    _save(at, key)
    assert any("another version of" in w.value and "score the file again" in w.value for w in at.warning)
    assert confirmations.rows(db=_stores) == []


def test_the_workbench_confirms_the_model_it_shows(_stores):
    name, data = _film()
    mid = default_model("pneumonia")
    at = start("pneumonia", mid, page="predict")
    at.file_uploader(key="predict_files").set_value([(name, data, "application/octet-stream")]).run()
    assert not at.exception, [e.message for e in at.exception]
    key = f"wb_confirm_pneumonia_{mid}_{hashlib.sha256(data).hexdigest()[:16]}"
    at.radio(key=f"{key}_call").set_value("PNEUMONIA").run()
    at.text_input(key=f"{key}_note").input("workbench").run()
    _save(at, key)
    [row] = confirmations.rows(db=_stores)
    assert row["model_id"] == mid and row["reader_call"] == "PNEUMONIA" and row["note"] == "workbench"
    assert any(t.startswith("Saved: you") for t in texts(at))
