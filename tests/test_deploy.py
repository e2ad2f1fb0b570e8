"""Who is using it: the databases live in SECONDLOOK_HOME (outside the repository, this user only), and without
sign-in the app serves this computer only (banner) or nothing but one line on configuring sign-in (refusal)."""
from __future__ import annotations

import contextlib
import hashlib
import http.server
import json
import os
import threading
import stat
import tomllib
from pathlib import Path

import pytest
from streamlit import config as st_config
from streamlit.testing.v1 import AppTest

from core import audit, config
from core.config import REPO_ROOT
from core.evaluation import reviews
from core.site import profiles
from ui import deploy

PER_FILE = ("SECONDLOOK_AUDIT", "SECONDLOOK_REVIEWS", "SECONDLOOK_SITES")


@pytest.fixture
def no_paths(monkeypatch):
    """No per-file variable and no SECONDLOOK_HOME: each test sets what it needs."""
    for k in (*PER_FILE, "SECONDLOOK_HOME", "XDG_DATA_HOME"):
        monkeypatch.delenv(k, raising=False)
    yield monkeypatch
    audit.close_all()


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_databases_live_in_secondlook_home(no_paths, tmp_path):
    no_paths.setenv("SECONDLOOK_HOME", str(tmp_path / "home"))
    assert config.home_dir() == tmp_path / "home"
    assert audit.db_path() == tmp_path / "home" / "audit.sqlite"
    assert reviews.db_path() == tmp_path / "home" / "reviews.sqlite"
    assert profiles.db_path() == tmp_path / "home" / "sites.sqlite"
    no_paths.setenv("SECONDLOOK_REVIEWS", str(tmp_path / "r" / "reviews.sqlite"))  # the home beats "next to reviews"
    assert audit.db_path() == tmp_path / "home" / "audit.sqlite"
    assert profiles.db_path() == tmp_path / "home" / "sites.sqlite"


def test_per_file_variables_win(no_paths, tmp_path):
    no_paths.setenv("SECONDLOOK_HOME", str(tmp_path / "home"))
    for env, fn in (("SECONDLOOK_AUDIT", audit.db_path), ("SECONDLOOK_REVIEWS", reviews.db_path),
                    ("SECONDLOOK_SITES", profiles.db_path)):
        no_paths.setenv(env, str(tmp_path / "own" / f"{env}.db"))
        assert fn() == tmp_path / "own" / f"{env}.db"


def test_default_home_is_a_user_data_folder_not_the_repository(no_paths, tmp_path):
    default = config.home_dir()
    assert default == Path.home() / ".local" / "share" / "secondlook"
    assert REPO_ROOT not in default.resolve().parents and default.resolve() != REPO_ROOT
    assert audit.db_path().parent == reviews.db_path().parent == profiles.db_path().parent == default
    no_paths.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert config.home_dir() == tmp_path / "xdg" / "secondlook"
    no_paths.setenv("XDG_DATA_HOME", "relative/dir")  # invalid by the XDG spec: ignored
    assert config.home_dir() == default


def test_created_folder_and_databases_are_private(no_paths, tmp_path):
    home = tmp_path / "home"
    no_paths.setenv("SECONDLOOK_HOME", str(home))
    old_umask = os.umask(0)  # the modes must not depend on the umask
    try:
        audit.record(image_sha256=hashlib.sha256(b"x").hexdigest(), task="pneumonia", model_id="m", model_sha256=None,
                     threshold=0.5, probability=0.7, decision="PNEUMONIA", surface="cli")
        reviews.add_review("pneumonia", "m", "a.png", "model_error")
    finally:
        os.umask(old_umask)
    assert audit.count() == 1
    assert _mode(home) == 0o700
    made = sorted(p.name for p in home.iterdir())
    assert {"audit.sqlite", "audit.sqlite-wal", "audit.sqlite-shm", "reviews.sqlite"} <= set(made), made
    assert {p.name: _mode(p) for p in home.iterdir()} == {name: 0o600 for name in made}


def test_an_existing_readable_database_is_made_private(tmp_path):
    db = tmp_path / "reviews.sqlite"
    reviews.add_review("pneumonia", "m", "a.png", "model_error", db=db)
    os.chmod(db, 0o644)
    assert len(reviews.list_reviews(db=db)) == 1
    assert _mode(db) == 0o600


@pytest.mark.parametrize("addr", ["localhost", "LOCALHOST", "127.0.0.1", "127.1.2.3", "::1", "[::1]"])
def test_local_addresses(addr):
    assert deploy.local_address(addr)


@pytest.mark.parametrize("addr", ["", None, "0.0.0.0", "::", "10.1.2.3", "192.168.0.5", "secondlook.example.org",
                                  "myhost"])
def test_addresses_others_can_reach(addr):
    # "" / unset: Streamlit then listens on every interface, so it is not local
    assert not deploy.local_address(addr)


def test_config_listens_on_localhost():
    cfg = tomllib.loads((REPO_ROOT / ".streamlit" / "config.toml").read_text())
    assert cfg["server"]["address"] == "localhost"


@pytest.fixture
def address():
    """Set Streamlit's server.address for an AppTest (it runs in this process); restored afterwards."""
    old = st_config.get_option("server.address")

    def set_to(value):
        st_config.set_option("server.address", value)

    yield set_to
    st_config.set_option("server.address", old)


def _page():
    import streamlit as st

    from ui import deploy

    deploy.guard()
    st.title("A page")


@contextlib.contextmanager
def _discovery():
    """A stand-in for an identity provider's discovery document on a free localhost port (the browser tests use a
    real provider, tests/oidc_support.py)."""
    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = json.dumps({"issuer": url, "authorization_endpoint": url + "/auth"}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
    url = f"http://127.0.0.1:{srv.server_address[1]}"
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        yield url + "/.well-known/openid-configuration"
    finally:
        srv.shutdown()
        srv.server_close()


def _auth(metadata_url: str) -> dict:
    return {"redirect_uri": "http://localhost:8501/oauth2callback", "cookie_secret": "s", "client_id": "c",
            "client_secret": "x", "server_metadata_url": metadata_url}


def _run(at: AppTest) -> AppTest:
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def test_guard_banner_refusal_and_sign_in(address):
    address("127.0.0.1")
    at = _run(AppTest.from_function(_page))
    assert [c.value for c in at.caption] == [deploy.LOCAL_BANNER] and [t.value for t in at.title] == ["A page"]

    address("0.0.0.0")
    at = _run(AppTest.from_function(_page))
    assert len(at.error) == 1 and "`[auth]` block" in at.error[0].value and "secrets.toml" in at.error[0].value
    assert not at.title and not at.caption and not at.markdown

    at = AppTest.from_function(_page)
    at.secrets["auth"] = {"redirect_uri": "http://x/oauth2callback", "cookie_secret": "s"}
    at = _run(at)  # sign-in configured but incomplete: one message naming what is missing, no sign-in button
    assert [t.value for t in at.title] == ["SecondLook"] and not at.button and len(at.error) == 1
    assert "lacks client_id, client_secret, server_metadata_url" in at.error[0].value

    with _discovery() as url:
        at = AppTest.from_function(_page)
        at.secrets["auth"] = _auth(url)
        at = _run(at)  # sign-in configured, provider up, nobody signed in: the sign-in page and nothing else
        assert not at.caption and not at.error and [t.value for t in at.title] == ["SecondLook"]
        assert [b.label for b in at.button] == ["Sign in"]
    deploy._reachable.clear()
    at = AppTest.from_function(_page)
    at.secrets["auth"] = _auth(url)  # the same provider, now down
    at = _run(at)
    assert not at.button and len(at.error) == 1 and "sign-in service" in at.error[0].value

    at = AppTest.from_function(_page)
    at.secrets["other"] = "x"  # a secrets file without [auth] is no sign-in
    assert len(_run(at).error) == 1


def test_app_refuses_on_a_network_address_without_sign_in(address):
    address("0.0.0.0")
    at = _run(AppTest.from_file(str(REPO_ROOT / "app.py"), default_timeout=240))
    assert len(at.error) == 1 and "`0.0.0.0`" in at.error[0].value and "`[auth]` block" in at.error[0].value
    assert [el.type for el in at.main.children.values()] == ["error"] and not at.sidebar.children
    assert not at.title and not at.caption and not at.markdown


def test_app_shows_the_local_banner(address):
    from tests.app_support import start

    address("localhost")
    at = start(research=False)
    assert deploy.LOCAL_BANNER in [c.value for c in at.caption]
    assert at.title, "the page itself is served"
