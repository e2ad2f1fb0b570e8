"""Splits are leak-free and reproducible; manifests parse as the evaluation contract says."""
from __future__ import annotations

import pandas as pd
import pytest

from core.data import group_keys, load_task_manifest, read_manifest, split_train_val
from core.registry import TASKS, get_task
from tests.conftest import require_dataset


def _frame(n_groups: int = 40) -> pd.DataFrame:
    rows = []
    for g in range(n_groups):
        for k in range(3):
            rows.append({"path": f"g{g}_{k}.png", "label": "B" if g % 2 else "A", "split": "train", "patient_id": f"p{g}", "y": g % 2})
    rows += [{"path": "t.png", "label": "A", "split": "test", "patient_id": "p0", "y": 0}]
    return pd.DataFrame(rows)


def test_split_never_puts_a_group_on_both_sides():
    task = get_task("malaria")
    tr, va = split_train_val(_frame(), task)
    assert set(tr.patient_id).isdisjoint(set(va.patient_id))
    assert len(tr) + len(va) == 120  # the test row is never used
    assert 0.1 <= len(va) / 120 <= 0.3
    assert set(va.y) == {0, 1}  # both classes are validated


def test_split_is_deterministic():
    task = get_task("malaria")
    a = split_train_val(_frame(), task)[1]
    b = split_train_val(_frame(), task)[1]
    assert a.path.tolist() == b.path.tolist()


@pytest.mark.parametrize("task_name", sorted(TASKS))
def test_real_split_is_leak_free(task_name):
    require_dataset(task_name)
    task = get_task(task_name)
    df = load_task_manifest(task_name)
    tr, va = split_train_val(df, task)
    assert set(group_keys(tr, task)).isdisjoint(group_keys(va, task))
    assert not set(tr.path) & set(df[df.split == "test"].path)
    assert not set(va.path) & set(df[df.split == "test"].path)
    frac = len(va) / (len(tr) + len(va))
    assert abs(frac - task.val_fraction) < 0.05, frac
    for y in (0, 1):  # each class keeps roughly its share in validation
        share = (va.y == y).sum() / (df[df.split == "train"].y == y).sum()
        assert 0.5 * task.val_fraction < share < 2 * task.val_fraction


def test_pneumonia_groups_by_patient_and_subtype():
    # SOURCE.md: person<N> numbers are counted separately per subtype, so the key is patient+subtype.
    assert get_task("pneumonia").group_column == ("patient_id", "subtype")
    assert get_task("effusion").group_column == ("split_group",)
    assert get_task("malaria").group_column == ("patient_id",)


def test_read_manifest_rejects_foreign_labels(tmp_path):
    (tmp_path / "m.csv").write_text("path,label\na.png,CAT\n")
    with pytest.raises(ValueError, match="CAT"):
        read_manifest(tmp_path / "m.csv", get_task("pneumonia"))


def test_read_manifest_requires_path_and_label(tmp_path):
    (tmp_path / "m.csv").write_text("file,label\na.png,NORMAL\n")
    with pytest.raises(ValueError, match="path"):
        read_manifest(tmp_path / "m.csv", get_task("pneumonia"))


def test_read_manifest_resolves_relative_paths(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "m.csv").write_text("path,label\nimg/a.png,PNEUMONIA\nimg/b.png,NORMAL\n")
    df = read_manifest(tmp_path / "sub" / "m.csv", get_task("pneumonia"))
    assert df.file[0] == str((tmp_path / "sub" / "img" / "a.png").resolve())
    assert df.y.tolist() == [1, 0]
