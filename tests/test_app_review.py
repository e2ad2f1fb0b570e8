"""AppTest: Misclassified review — gallery at the operating point, filters, tags in SQLite, no-data message."""
from __future__ import annotations

from core.evaluation import reviews
from tests.app_support import start, task_with_models, texts, use_threshold
from tests.conftest import require_dataset


def _summary(at) -> str:
    return next(t for t in texts(at) if t.startswith("At threshold"))


def test_review_gallery_follows_the_slider(tmp_path, monkeypatch):
    monkeypatch.setenv("SECONDLOOK_REVIEWS", str(tmp_path / "reviews.sqlite"))
    task = task_with_models()
    require_dataset(task)
    at = start(task, page="review")
    assert at.title[0].value == "Misclassified review"
    s0 = _summary(at)
    cards0 = [m.value for m in at.markdown if m.value.startswith(("**Missed**", "**False alarm**"))]
    assert cards0
    use_threshold(at, 0.999)
    s1 = _summary(at)
    assert s1 != s0
    cards1 = [m.value for m in at.markdown if m.value.startswith(("**Missed**", "**False alarm**"))]
    assert cards1 and cards1 != cards0
    assert all(c.startswith("**Missed**") for c in cards1[:4])  # at a very high threshold the worst mistakes are misses


def test_filter_open_tag_and_export(tmp_path, monkeypatch):
    db = tmp_path / "reviews.sqlite"
    monkeypatch.setenv("SECONDLOOK_REVIEWS", str(db))
    task = task_with_models()
    require_dataset(task)
    at = start(task, page="review")
    at.button_group(key="review_kind").set_value("fp").run()
    assert not at.exception
    cards = [m.value for m in at.markdown if m.value.startswith(("**Missed**", "**False alarm**"))]
    assert cards and all(c.startswith("**False alarm**") for c in cards)
    # Grad-CAM toggle on the first card
    first_toggle = next(t for t in at.toggle if t.key and t.key.startswith("review_cam_"))
    first_toggle.set_value(True).run()
    assert not at.exception
    # open the first case and tag it
    opener = next(b for b in at.button if b.key and b.key.startswith("review_open_"))
    path = opener.key.removeprefix("review_open_")
    opener.click().run()
    assert not at.exception
    at.radio(key="review_tag").set_value("label_wrong").run()
    at.text_area(key="review_note").input("Costophrenic angle looks sharp to me").run()
    at.button(key="review_save").click().run()
    assert not at.exception, [e.message for e in at.exception]
    saved = reviews.list_reviews(task, db=db)
    assert len(saved) == 1 and saved.iloc[0]["path"] == path and saved.iloc[0]["tag"] == "label_wrong"
    assert saved.iloc[0]["error_type"] == "fp"
    assert "Costophrenic" in reviews.export_csv(task, db=db).decode()
    assert at.download_button(key="review_export") is not None


def test_without_dataset_explains_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setenv("SECONDLOOK_DATA", str(tmp_path / "nowhere"))
    monkeypatch.setenv("SECONDLOOK_REVIEWS", str(tmp_path / "reviews.sqlite"))
    task = task_with_models()
    at = start(task, page="review")
    assert not at.exception
    assert any("SECONDLOOK_DATA" in w.value for w in at.warning)
    # the stored predictions still give the counts
    assert _summary(at)
