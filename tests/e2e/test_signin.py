"""Sign-in against a real OpenID Connect provider (tests/oidc, started per module) in headless Chromium.

The app runs with an [auth] block pointing at the provider (a secrets file outside the repository). Users sign in
through the provider's own login form; what each role sees in the sidebar, pages a role may not open, forged and
expired session cookies, and a provider that is down are checked as a user meets them.
"""
from __future__ import annotations

import re
import time
from contextlib import contextmanager

import pytest

from benchmarks.browser import CHROMIUM_ARGS, settle
from tests.e2e.test_browser import _chromium
from tests.oidc_support import (
    ADMIN,
    AUDITOR,
    CLINICIAN,
    NOROLES,
    TECHNICIAN,
    id_claims,
    nav_links,
    sign_in,
    signed_in_caption,
    signed_user_cookie,
    signin_stack,
    user_cookie,
)

TIMEOUT_MS = 60_000
EXPIRED = "Your session has expired"
NAV = {  # the sidebar's page links per role (no PACS configured here)
    CLINICIAN.sub: ["Home", "Predict"],
    TECHNICIAN.sub: ["Home", "Predict"],
    ADMIN.sub: ["Home", "Site validation", "Monitoring"],
    AUDITOR.sub: ["Home", "Audit log", "Monitoring"],
    NOROLES.sub: ["Home"],
}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with signin_stack(tmp_path_factory.mktemp("signin")) as s:
        yield s


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    exe = _chromium()
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@contextmanager
def _page(browser, cookies: list[dict] | None = None):
    """A fresh browser context (no cookies but `cookies`): one user's browser, closed however the test ends."""
    ctx = browser.new_context(viewport={"width": 1280, "height": 800})
    try:
        if cookies:
            ctx.add_cookies(cookies)
        yield ctx.new_page()
    finally:
        ctx.close()


def _sign_in_page(page, timeout_ms: float = TIMEOUT_MS) -> None:
    """The sign-in page and nothing else: its title, line and button; no page links, no signed-in caption."""
    page.get_by_text("Sign in to continue.").wait_for(timeout=timeout_ms)
    settle(page)
    assert page.get_by_role("heading", name="SecondLook", level=1).count() == 1
    assert page.get_by_role("button", name="Sign in").count() == 1
    assert nav_links(page) == []
    assert page.get_by_text("Signed in as").count() == 0


def _expired_page(page) -> None:
    page.get_by_text(EXPIRED).first.wait_for(timeout=TIMEOUT_MS)
    settle(page)
    assert page.get_by_role("button", name="Sign in").count() == 1
    assert nav_links(page) == []
    assert page.get_by_text("Signed in as").count() == 0


def _h1(page) -> list[str]:
    return [h.strip() for h in page.locator("h1").all_inner_texts()]


def _cookie(stack, value: str) -> dict:
    return {"name": "_streamlit_user", "value": value, "url": stack.url + "/", "httpOnly": True, "sameSite": "Lax"}


@pytest.mark.parametrize("path", ["/", "/predict", "/audit", "/site"])
def test_without_a_session_every_page_is_the_sign_in_page(stack, browser, path):
    with _page(browser) as page:
        page.goto(stack.url + path)
        _sign_in_page(page)
        assert "Audit log" not in _h1(page) and "Site validation" not in _h1(page)


@pytest.mark.parametrize("user", [CLINICIAN, TECHNICIAN, ADMIN, AUDITOR, NOROLES], ids=lambda u: u.sub)
def test_each_user_signs_in_through_the_provider_and_sees_their_pages(stack, browser, user):
    with _page(browser) as page:
        page.goto(stack.url + "/")
        sign_in(page, stack, user)
        page.wait_for_url(re.compile(re.escape(stack.url) + "/"), timeout=TIMEOUT_MS)
        caption = signed_in_caption(page)
        settle(page)
        assert user.email in caption, caption
        if user.roles:
            role = user.roles[0]
            assert role in caption or role.replace("_", " ") in caption, caption
        links = nav_links(page)
        if user is NOROLES:
            assert links in ([], ["Home"]), links  # one page: Streamlit may hide the navigation altogether
            page.get_by_text(re.compile("no SecondLook role")).first.wait_for(timeout=TIMEOUT_MS)
        else:
            assert links == NAV[user.sub], links
        claims = user_cookie(page.context, stack.cookie_secret)
        assert claims["sub"] == user.sub and claims["iss"] == stack.idp.issuer
        assert claims.get("roles") == user.roles  # the ID token's roles claim reached st.user (none: absent)

        page.locator('[data-testid="stSidebar"]').get_by_role("button", name="Sign out").click()
        _sign_in_page(page)
        assert user_cookie(page.context, stack.cookie_secret) is None


def test_a_wrong_password_stays_on_the_providers_form(stack, browser):
    with _page(browser) as page:
        page.goto(stack.url + "/")
        sign_in(page, stack, CLINICIAN, password="not-the-password")
        page.get_by_text("Wrong e-mail or password.").wait_for(timeout=TIMEOUT_MS)
        assert page.url.startswith(stack.idp.issuer + "/interaction/")
        assert page.get_by_label("Password").count() == 1
        assert user_cookie(page.context, stack.cookie_secret) is None


@pytest.mark.parametrize("path, title", [("/audit", "Audit log"), ("/site", "Site validation")])
def test_a_clinician_cannot_open_pages_of_other_roles(stack, browser, path, title):
    with _page(browser) as page:
        page.goto(stack.url + "/")
        sign_in(page, stack, CLINICIAN)
        signed_in_caption(page)
        settle(page)
        page.goto(stack.url + path)
        signed_in_caption(page)
        page.get_by_role("heading", name="SecondLook", level=1).wait_for(timeout=TIMEOUT_MS)  # back on Home
        settle(page)
        assert title not in _h1(page), _h1(page)
        assert nav_links(page) == NAV[CLINICIAN.sub]


def test_a_cookie_signed_with_another_secret_is_not_a_session(stack, browser):
    claims = id_claims(ADMIN, stack.idp.issuer, exp=int(time.time()) + 3600)
    forged = signed_user_cookie("not-the-apps-cookie-secret", claims, stack.url)
    with _page(browser, [_cookie(stack, forged)]) as page:
        page.goto(stack.url + "/site")
        _sign_in_page(page)
        assert "Site validation" not in _h1(page)


def test_a_correctly_signed_cookie_is_a_session(stack, browser):
    """The control for the two cookie tests around it: the cookie is made the way Streamlit makes it."""
    claims = id_claims(CLINICIAN, stack.idp.issuer, exp=int(time.time()) + 3600)
    with _page(browser, [_cookie(stack, signed_user_cookie(stack.cookie_secret, claims, stack.url))]) as page:
        page.goto(stack.url + "/")
        assert CLINICIAN.email in signed_in_caption(page)


def test_a_correctly_signed_cookie_with_a_past_expiry_has_expired(stack, browser):
    now = int(time.time())
    claims = id_claims(CLINICIAN, stack.idp.issuer, exp=now - 60, iat=now - 3660)
    with _page(browser, [_cookie(stack, signed_user_cookie(stack.cookie_secret, claims, stack.url))]) as page:
        page.goto(stack.url + "/predict")
        _expired_page(page)


def test_a_real_id_token_expires(tmp_path, browser):
    """A provider whose ID tokens live 4 s: signed in through the form, then, once `exp` has passed, a reload
    shows the expired message and nothing else."""
    ttl = 4
    with signin_stack(tmp_path, id_token_ttl=ttl) as short, _page(browser) as page:
        page.goto(short.url + "/")
        sign_in(page, short, CLINICIAN)
        page.wait_for_url(re.compile(re.escape(short.url) + "/"), timeout=TIMEOUT_MS)
        page.get_by_text(re.compile(f"Signed in as|{EXPIRED}")).first.wait_for(timeout=TIMEOUT_MS)
        claims = user_cookie(page.context, short.cookie_secret)
        assert claims["iss"] == short.idp.issuer and claims["exp"] - claims["iat"] == ttl
        time.sleep(max(0.0, claims["exp"] + 1 - time.time()))
        page.reload()
        _expired_page(page)


def test_a_provider_that_is_down_is_said_once(tmp_path, browser):
    with signin_stack(tmp_path, provider_up=False) as down, _page(browser) as page:
        page.goto(down.url + "/")
        message = page.get_by_text(re.compile("sign-in service"))
        message.first.wait_for(timeout=TIMEOUT_MS)
        settle(page)
        assert message.count() == 1
        assert page.get_by_role("button", name="Sign in").count() == 0
        assert nav_links(page) == []


def test_a_signed_in_auditor_exports_the_log_and_the_export_names_them(tmp_path, browser):
    """A download's data is made on click, outside the page's run (Streamlit's deferred download): it must still know
    who asked, so a signed-in export works and is audited under the signed-in user."""
    import hashlib

    from core import audit, users

    home = tmp_path / "home"
    db = home / "audit.sqlite"
    audit.record(image_sha256=hashlib.sha256(b"x").hexdigest(), task="malaria", model_id="m", model_sha256=None,
                 threshold=0.5, probability=0.2, decision="Uninfected", surface="cli",
                 user=users.User("u-t", "t@example.org", roles=("technician",), source="token"), db=db)
    audit.close_all()
    with signin_stack(tmp_path, env={"SECONDLOOK_HOME": str(home), "SECONDLOOK_AUDIT": str(db)}) as stack, _page(browser) as page:
        page.goto(stack.url + "/audit")
        sign_in(page, stack, AUDITOR)
        signed_in_caption(page)
        page.goto(stack.url + "/audit")
        page.get_by_role("button", name="Export CSV").wait_for(timeout=TIMEOUT_MS)
        settle(page)
        with page.expect_download(timeout=TIMEOUT_MS) as dl:
            page.get_by_role("button", name="Export CSV").click()
        body = open(dl.value.path(), "rb").read()
    assert body.count(b"\n") == 2 and b"t@example.org" in body  # header + the one row
    ev = audit.events(kind="audit_export", db=db)
    audit.close_all()
    assert ev and ev[0]["user_email"] == AUDITOR.email
