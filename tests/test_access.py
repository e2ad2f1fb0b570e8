"""Who may do what (#30): roles from the token's claim, else the local table, else the least-privileged role; the
app shows each role only its pages and refuses the rest on the server; every audit row and event names the user."""
from __future__ import annotations

import hashlib
import subprocess
import sys
import time

import pytest
from streamlit.testing.v1 import AppTest

from core import audit, users
from core.config import REPO_ROOT
from tests.app_support import TIMEOUT

AUTH = {"redirect_uri": "http://localhost:8501/oauth2callback", "cookie_secret": "s", "client_id": "c",
        "client_secret": "x", "server_metadata_url": "http://127.0.0.1:9/.well-known/openid-configuration"}
PAGES = {  # what each role finds in the navigation (no PACS configured here)
    "clinician": {"home", "screen"},
    "technician": {"home", "screen"},
    "site_admin": {"home", "site", "monitor"},
    "auditor": {"home", "audit", "monitor"},
    None: {"home"},
}
ALL_PAGES = ("home", "screen", "site", "audit", "monitor", "predict", "threshold", "compare", "review")


@pytest.fixture
def home(monkeypatch, tmp_path):
    monkeypatch.setenv("SECONDLOOK_HOME", str(tmp_path / "home"))
    for k in ("SECONDLOOK_AUDIT", "SECONDLOOK_REVIEWS", "SECONDLOOK_SITES", "SECONDLOOK_USERS",
              "SECONDLOOK_CONFIRMATIONS", "SECONDLOOK_ROLE_CLAIM"):
        monkeypatch.delenv(k, raising=False)
    yield tmp_path / "home"
    audit.close_all()


def claims(role: str | None, **extra) -> dict:
    c = {"is_logged_in": True, "sub": f"u-{role or 'none'}", "email": f"{role or 'none'}@example.org",
         "email_verified": True, "name": str(role), "iat": time.time() - 60, "exp": time.time() + 3600}
    if role is not None:
        c["roles"] = [role]
    return {**c, **extra}


# ---------------------------------------------------------------- core.users ------------------------------------

def test_roles_come_from_the_token_claim_normalised(home):
    u = users.from_claims({"sub": "a", "email": "A@X.org", "roles": ["Site Admin", "secondlook-clinician", "other"]})
    assert u.roles == ("site_admin", "clinician") and u.source == "token" and u.email == "a@x.org"
    assert u.can("site_profiles") and u.can("score_xray") and not u.can("audit") and not u.can("score_smear")
    assert users.from_claims({"sub": "a", "groups": "auditor"}).roles == ("auditor",)
    assert users.from_claims({"sub": "a", "grp": ["auditor"], "roles": ["clinician"]},
                             role_claim="grp").roles == ("auditor",)


def test_without_a_claim_the_local_table_then_the_least_privileged_role(home):
    u = users.from_claims({"sub": "s1", "email": "t@x.org"})
    assert u.roles == ("viewer",) and u.source == "default" and "no role claim" in u.note
    assert not any(u.can(a) for a in users.ACTIONS)
    users.grant("T@x.org", "technician", by="admin")
    u = users.from_claims({"sub": "s1", "email": "t@x.org"})
    assert u.roles == ("technician",) and u.source == "table"
    # an unverified e-mail cannot borrow someone's role; the subject still can
    assert users.from_claims({"sub": "s2", "email": "t@x.org", "email_verified": False}).roles == ("viewer",)
    users.grant("s2", "auditor", by="admin")
    assert users.from_claims({"sub": "s2", "email": "t@x.org", "email_verified": False}).roles == ("auditor",)
    # a role claim naming nothing we know: the table, and the note says so
    u = users.from_claims({"sub": "s1", "email": "t@x.org", "roles": ["nurse"]})
    assert u.roles == ("technician",) and "named no SecondLook role" in u.note
    assert users.revoke("t@x.org") == 1
    assert users.from_claims({"sub": "s1", "email": "t@x.org"}).roles == ("viewer",)
    with pytest.raises(ValueError, match="unknown role"):
        users.grant("x@x.org", "superuser", by="admin")


def test_require_names_the_user_the_action_and_who_may(home):
    with pytest.raises(users.PermissionDenied, match=r"c@x.org \(clinician\) may not audit: that is for auditor"):
        users.require(users.User("c", "c@x.org", roles=("clinician",)), "audit")
    users.require(users.local_user(), "audit")  # local single-user mode: every role
    with pytest.raises(ValueError, match="unknown action"):
        users.User("c").can("launch")


def test_roles_command(home):
    run = lambda *a: subprocess.run([sys.executable, "-m", "core.roles", *a], cwd=REPO_ROOT, capture_output=True,
                                    text=True, timeout=60)
    assert run("grant", "d@x.org", "site_admin", "--by", "it@x.org").returncode == 0
    out = run("list")
    assert out.returncode == 0 and '"who": "d@x.org", "role": "site_admin", "granted_by": "it@x.org"' in out.stdout
    assert run("grant", "d@x.org", "janitor").returncode == 2
    assert "1 role(s) revoked" in run("revoke", "d@x.org").stdout


# ---------------------------------------------------------------- the audit names the user ----------------------

def test_every_audit_row_and_event_names_a_user(home):
    sha = hashlib.sha256(b"x").hexdigest()
    clin = users.User("u-c", "c@x.org", "C", ("clinician",), "token")
    audit.record(image_sha256=sha, task="pneumonia", model_id="m", model_sha256=None, threshold=0.5, probability=0.7,
                 decision="PNEUMONIA", surface="app", user=clin)
    audit.record(image_sha256=sha, task="pneumonia", model_id="m", model_sha256=None, threshold=0.5, probability=0.7,
                 decision="PNEUMONIA", surface="cli")  # a command: the account that ran it
    rows = audit.rows()
    assert [r["user_email"] for r in rows] == [None, "c@x.org"] and rows[1]["user_role"] == "clinician"
    assert rows[0]["user_sub"].startswith("local:") and all(r["user_sub"] for r in rows)
    assert [r["user_sub"] for r in audit.rows(user="c@x.org")] == ["u-c"] == [r["user_sub"] for r in audit.rows(user="u-c")]
    audit.event("sign_in", users.from_claims({"sub": "u-n", "email": "n@x.org"}), "roles from default")
    ev = audit.events(kind="sign_in")
    assert ev[0]["user_role"] == "viewer" and ev[0]["user_email"] == "n@x.org"
    assert set(audit.users_seen()) >= {"c@x.org", "n@x.org"}
    with pytest.raises(ValueError):
        audit.event("coffee", clin)


# ---------------------------------------------------------------- the app, per role -------------------------------

def _app(role: str | None, **extra) -> AppTest:
    at = AppTest.from_file(str(REPO_ROOT / "app.py"), default_timeout=TIMEOUT)
    at.secrets["auth"] = AUTH
    at.user = claims(role, **extra)
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def _reachable(at: AppTest) -> set[str]:
    ok = set()
    for page in ALL_PAGES:
        try:
            at.switch_page(f"app_pages/{page}.py").run()
        except Exception:  # not in this user's navigation
            continue
        assert not at.exception, [e.message for e in at.exception]
        ok.add(page)
    return ok


@pytest.mark.parametrize("role", list(PAGES))
def test_each_role_sees_only_its_pages(home, role):
    at = _app(role)
    assert f"Signed in as {role or 'none'}@example.org" in " ".join(c.value for c in at.sidebar.caption)
    assert _reachable(at) == PAGES[role]
    if role is None:
        at.switch_page("app_pages/home.py").run()
        assert any("no SecondLook role" in i.value for i in at.info)
        ev = audit.events(kind="sign_in")
        assert ev and "least-privileged" in ev[0]["detail"] and ev[0]["user_role"] == "viewer"
    toggles = [t for t in at.sidebar.toggle if t.key == "research"]
    assert bool(toggles) == (role == "site_admin")


@pytest.mark.parametrize("page,action", [("audit", "audit"), ("site", "site_profiles"), ("monitor", "monitor"),
                                         ("compare", "research")])
def test_a_page_run_directly_by_a_role_without_it_is_refused_on_the_server(home, page, action):
    """A crafted request that reaches a page script anyway gets one refusal and nothing else, and it is audited."""
    at = AppTest.from_file(str(REPO_ROOT / "app_pages" / f"{page}.py"), default_timeout=TIMEOUT)
    at.secrets["auth"] = AUTH
    at.user = claims("clinician")
    at.run()
    assert [e.value for e in at.error] and "may not" in at.error[0].value and not at.dataframe
    assert not at.title or page == "compare"
    ev = audit.events(kind="refused")
    assert ev and ev[0]["user_email"] == "clinician@example.org" and action in ev[0]["detail"]


def test_an_expired_session_is_sent_to_sign_in_again(home):
    at = _app("clinician", exp=time.time() - 5)
    assert any("session has expired" in w.value for w in at.warning)
    assert [b.label for b in at.button] == ["Sign in"] and not at.sidebar.caption
    at = _app("clinician", iat=time.time() - 13 * 3600)  # older than a 12-hour session, whatever the token says
    assert any("session has expired" in w.value for w in at.warning)


def test_a_technician_gets_no_answer_for_a_chest_film(home):
    from pathlib import Path

    from core.data import load_task_manifest
    from tests.conftest import require_dataset

    require_dataset("pneumonia")
    film = Path(load_task_manifest("pneumonia").query("split == 'test'").file.iloc[0])
    at = _app("technician")
    at.switch_page("app_pages/screen.py").run()
    at.file_uploader(key="screen_files_0").set_value([(film.name, film.read_bytes(), "image/jpeg")]).run()
    assert not at.exception, [e.message for e in at.exception]
    assert any("which your role (technician) does not score" in e.value for e in at.error)
    assert not [m for m in at.metric if m.label == "Decision"] and audit.count() == 0


def test_with_sign_in_every_audit_row_names_the_signed_in_user(home):
    from pathlib import Path

    from core.data import load_task_manifest
    from tests.conftest import require_dataset

    require_dataset("pneumonia")
    films = [Path(f) for f in load_task_manifest("pneumonia").query("split == 'test'").file.iloc[:2]]
    at = _app("clinician")
    at.switch_page("app_pages/screen.py").run()
    at.file_uploader(key="screen_files_0").set_value([(f.name, f.read_bytes(), "image/jpeg") for f in films]).run()
    assert not at.exception, [e.message for e in at.exception]
    rows = audit.rows()
    assert len(rows) >= 2 and {(r["user_sub"], r["user_email"], r["user_role"]) for r in rows} == {
        ("u-clinician", "clinician@example.org", "clinician")}


def test_the_auditor_filters_the_log_by_user_and_the_export_is_audited(home):
    sha = hashlib.sha256(b"y").hexdigest()
    for who in ("a@example.org", "b@example.org", "a@example.org"):
        audit.record(image_sha256=sha, task="malaria", model_id="m", model_sha256=None, threshold=0.5, probability=0.2,
                     decision="Uninfected", surface="app",
                     user=users.User(f"u-{who[0]}", who, roles=("technician",), source="token"))
    at = _app("auditor")
    at.switch_page("app_pages/audit.py").run()
    assert len(at.dataframe[0].value) == 3
    assert {"a@example.org", "b@example.org"} <= set(at.selectbox(key="audit_user").options)
    at.selectbox(key="audit_user").select("a@example.org").run()
    assert list(at.dataframe[0].value["user_email"]) == ["a@example.org"] * 2

    def export():  # what the download button calls, on the server, in the auditor's session
        import streamlit as st

        from ui import audit_view

        st.text(str(audit_view._export({"user": "a@example.org"}).count(b"\n")))

    run = AppTest.from_function(export, default_timeout=TIMEOUT)
    run.secrets["auth"] = AUTH
    run.user = claims("auditor")
    run.run()
    assert [t.value for t in run.text] == ["3"]  # header + two rows
    ev = audit.events(kind="audit_export")
    assert ev[0]["user_email"] == "auditor@example.org" and "2 row(s)" in ev[0]["detail"]


def test_the_site_admin_applies_a_profile_for_everyone_and_a_clinician_scores_with_it(home):
    from core.models import store
    from core.models.selection import default_model
    from core.site import profiles

    task = "malaria"
    mid = default_model(task)
    if mid not in store.bundled_models(task):
        pytest.skip("the malaria default model is not bundled")
    key = f"{task}/{mid}"
    profiles.save(profiles.SiteProfile("lab-a", task, mid, profiles.current_sha256(task, mid), 60, 0.4242, 0.5, None,
                                       {"note": "made in the test"}))
    at = _app("site_admin")
    if at.session_state["task"] != task:
        at.sidebar.selectbox(key="task").select(task).run()
    at.sidebar.selectbox(key=f"site_sel/{key}").select("lab-a").run()
    at.sidebar.button(key=f"site_apply/{key}").click().run()
    assert not at.exception, [e.message for e in at.exception]
    assert profiles.applied(task, mid)["name"] == "lab-a" and profiles.applied(task, mid)["applied_by"] == "site_admin@example.org"
    assert "applied for everyone" in audit.events(kind="profile_applied")[0]["detail"]

    clin = _app("clinician")
    if clin.session_state["task"] != task:
        clin.sidebar.selectbox(key="task").select(task).run()
    assert not [s for s in clin.sidebar.selectbox if s.key == f"site_sel/{key}"]  # not the clinician's to choose
    captions = " ".join(c.value for c in clin.sidebar.caption)
    assert "Site profile **lab-a**, applied for everyone by site_admin@example.org" in captions
    assert "Threshold **0.4242** · site profile lab-a" in captions and "changed by you" not in captions
    assert clin.session_state["op_thresholds"][key] == pytest.approx(0.4242)


def test_reviews_and_site_profiles_keep_the_users_subject_e_mail_and_role(home):
    from core.evaluation import reviews
    from core.models import store
    from core.models.selection import default_model
    from core.site import profiles

    reviews.add_review("malaria", "m", "a.png", "model_error", reviewer="r@x.org", reviewer_sub="u-r",
                       reviewer_role="site_admin")
    got = reviews.list_reviews().iloc[0]
    assert (got["reviewer"], got["reviewer_sub"], got["reviewer_role"]) == ("r@x.org", "u-r", "site_admin")
    mid = default_model("malaria")
    if mid not in store.bundled_models("malaria"):
        pytest.skip("the malaria default model is not bundled")
    profiles.save(profiles.SiteProfile("lab-b", "malaria", mid, profiles.current_sha256("malaria", mid), 60, 0.4, 0.5,
                                       None, {}, created_by="a@x.org", created_by_role="site_admin",
                                       created_by_sub="u-a"))
    p = profiles.get("lab-b", "malaria", mid)
    assert (p.created_by, p.created_by_role, p.created_by_sub) == ("a@x.org", "site_admin", "u-a")
    assert p.to_json()["created_by_sub"] == "u-a"  # an exported profile says who made it
