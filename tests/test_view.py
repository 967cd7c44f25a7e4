"""``kb view``: the run page and the listing, rendered from real stores, through the CLI, over
HTTP with a sign-in cookie, and driven by keys in headless Chromium."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from kb.cli import app
from kb.embeddings import HashEmbedder
from kb.models import Experience, ExperienceCreate, Step
from kb.service import KnowledgeBase
from kb.view import align, content_security_policy, render_run
from tests.conftest import ROOT, requires_data

SAMPLE = ROOT / "examples" / "data" / "shop_trajectories.json"
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
runner = CliRunner()


# -- helpers --------------------------------------------------------------------------------------
def _steps(*specs: tuple[str, str | None, dict[str, Any] | None, str | None]) -> list[Step]:
    """Steps from ``(kind, tool, args, error)``; tool calls by the assistant, results by the tool."""
    out = []
    for i, (kind, tool, args, error) in enumerate(specs):
        role = "assistant" if kind in {"tool_call", "message"} else "tool"
        if kind == "user":
            kind, role = "message", "user"
        out.append(
            Step(index=i, role=role, agent=role, kind=kind, tool=tool, args=args, error=error)
        )
    return out


def _exp(steps: list[Step], *, outcome: str = "failure", task: str = "t") -> Experience:
    return Experience(
        **ExperienceCreate(task=task, outcome=outcome, steps=steps).model_dump(),
        id=f"exp_{outcome}",
        namespace="default",
    )


def _shop_failure(kb: KnowledgeBase, source_id: str) -> Experience:
    return next(
        e for e in kb.list_experiences(outcome="failure") if e.provenance.source_id == source_id
    )


def _inline_script(html: str) -> str:
    return re.findall(r"<script>(.*?)</script>", html, flags=re.S)[-1]


def _label_beside_tracer(kb: KnowledgeBase, exp_id: str, *, step: int, reason: str) -> None:
    """A human label, with the tracer's attribution kept beside it. Until the store keeps both,
    a label replaces ``attribution``; the viewer reads the tracer's from
    ``artifacts["tracer_attribution"]`` then."""
    traced = kb.trace(exp_id, method="heuristic")
    kb.label(exp_id, step=step, reason=reason)
    artifacts = kb.get_experience(exp_id).artifacts
    kb.update_experience(
        exp_id, {"artifacts": {**artifacts, "tracer_attribution": traced.model_dump(mode="json")}}
    )


@pytest.fixture(scope="module")
def shop_store(tmp_path_factory: pytest.TempPathFactory, embedder: Any) -> Path:
    """The demo sample in a store with the real model; failures traced by the heuristic."""
    path = tmp_path_factory.mktemp("shop") / "store"
    with KnowledgeBase.open(path, namespace="default", embedder=embedder) as kb:
        kb.import_file(SAMPLE)
        for failure in kb.list_experiences(outcome="failure"):
            kb.trace(failure.id, method="heuristic")
    return path


@pytest.fixture
def shop(shop_store: Path, tmp_path: Path, embedder: Any) -> Iterator[KnowledgeBase]:
    """A copy of the demo store of this module, for one test to change."""
    copy = tmp_path / "shop"
    shutil.copytree(shop_store, copy)
    with KnowledgeBase.open(copy, namespace="default", embedder=embedder) as kb:
        yield kb


# -- alignment ------------------------------------------------------------------------------------
CALL_A = ("tool_call", "find_customer", {"email": "a@x"}, None)
OBS_A = ("observation", "find_customer", None, None)
CALL_B = ("tool_call", "get_order", {"order_id": "#1"}, None)
OBS_B = ("observation", "get_order", None, None)
USER = ("user", None, None, None)


@pytest.mark.parametrize(
    ("run", "success", "same_task", "divergence", "op"),
    [
        pytest.param([USER, CALL_A, OBS_A], [USER, CALL_A, OBS_A], True, None, None, id="same"),
        pytest.param([USER, CALL_B, OBS_B], [USER, CALL_A, OBS_A, CALL_B, OBS_B], True, 1,
                     "only_right", id="skipped a step"),
        pytest.param([USER, CALL_A, OBS_A, CALL_B], [USER, CALL_A, OBS_A], True, 3, "only_left",
                     id="an extra step"),
        pytest.param([USER, ("tool_call", "get_order", {"order_id": "#2"}, None)], [USER, CALL_B],
                     True, 1, "args", id="other arguments, same task"),
        pytest.param([USER, ("tool_call", "get_order", {"order_id": "#2"}, None)], [USER, CALL_B],
                     False, None, None, id="other arguments, similar task"),
        pytest.param([USER, CALL_B, ("error", "get_order", None, "boom")], [USER, CALL_B, OBS_B],
                     True, 2, "error", id="only this run failed"),
        pytest.param([USER, CALL_A], [USER, CALL_B], False, 1, "changed", id="another tool"),
        pytest.param([USER, USER, CALL_A], [USER, CALL_A], False, None, None,
                     id="another message, similar task"),
        pytest.param([USER, USER, CALL_A], [USER, CALL_A], True, 0, "only_left",
                     id="another message, same task"),
    ],
)  # fmt: skip
def test_alignment_marks_where_the_runs_part(
    run: list[Any], success: list[Any], same_task: bool, divergence: int | None, op: str | None
) -> None:
    alignment = align(
        _exp(_steps(*run)), _exp(_steps(*success), outcome="success"), same_task=same_task
    )
    assert alignment.divergence == divergence
    if divergence is not None:
        assert alignment.rows[divergence].op == op
    # every step of both runs appears once, in order
    assert [r.left for r in alignment.rows if r.left is not None] == list(range(len(run)))
    assert [r.right for r in alignment.rows if r.right is not None] == list(range(len(success)))


# -- rendering on a real store --------------------------------------------------------------------
def test_run_page_of_a_demo_failure(shop: KnowledgeBase) -> None:
    failure = _shop_failure(shop, "refund-3")  # skipped find_customer, refunded too much
    view = shop.viewer.gather_run(failure.id)
    assert view.tracer is not None and view.tracer.step == 4 and view.label is None
    assert len(view.scores) == len(failure.steps) and view.scores[4] == max(
        s for s in view.scores if s is not None
    )
    nearest = view.nearest
    assert nearest is not None and nearest.success.outcome.value == "success"
    assert nearest.success.provenance.source_id in {"refund-1", "refund-2"}
    row = nearest.divergence_row()
    assert row is not None and row.op == "only_right"
    assert nearest.success.steps[row.right or 0].tool == "find_customer"

    html = shop.view_html(failure.id)
    assert 'class="step role-assistant kind-tool_call blamed"' in html
    assert re.search(r'class="step [^"]*diverges[^"]*" id="step-2"', html)
    assert html.count('class="score"') == len(failure.steps)
    assert 'id="curve-scores"' in html and 'id="curve-risk"' not in html
    assert "find_customer" in html and 'id="divergence"' in html
    assert "The success took a step this run skipped before this run&#x27;s step #2" in html
    # self-contained: no address to fetch, and only the page's own script may run
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)
    assert "<link" not in html and "@import" not in html
    digest = hashlib.sha256(_inline_script(html).encode()).digest()
    csp = content_security_policy(html)
    assert csp is not None and f"'sha256-{base64.b64encode(digest).decode()}'" in csp
    assert "default-src 'none'" in csp


def test_label_beside_the_tracer_repairs_and_skills(shop: KnowledgeBase) -> None:
    failure = _shop_failure(shop, "refund-3")
    _label_beside_tracer(shop, failure.id, step=2, reason="never verified the customer")
    success = shop.viewer.gather_run(failure.id).nearest
    assert success is not None
    shop.add_edge(failure.id, success.success.id, "repaired_by")
    skill = shop.add_skill(
        {"name": "refund-with-check", "description": "verify, read the order, refund the paid"}
    )
    shop.add_edge(skill.id, failure.id, "derived_from")

    view = shop.viewer.gather_run(failure.id)
    assert view.label is not None and view.label.step == 2 and view.label.method == "label"
    assert view.tracer is not None and view.tracer.step == 4 and view.tracer.method == "heuristic"
    assert view.blamed_step == 4
    assert [(n.id, n.relation) for n in view.repairs] == [(success.success.id, "repaired by")]
    assert [n.id for n in view.skills] == [skill.id]
    html = render_run(view, link="/view/{id}")
    assert '<h3>Tracer <span class="method">heuristic</span>' in html
    assert '<h3>Human label <span class="method">label</span>' in html
    assert "The tracer blames step 4; the label says step 2." in html
    assert "never verified the customer" in html
    assert f'href="/view/{success.success.id}"' in html and "refund-with-check v1" in html
    assert re.search(r'class="step [^"]*labelled[^"]*" id="step-2"', html)
    assert 'assistant · step 4 <span class="m-label-text">(label: step 2)</span>' in (
        shop.view_list_html()
    )
    # the success sees the failure it repairs
    back = shop.viewer.gather_run(success.success.id)
    assert [(n.id, n.relation) for n in back.repairs] == [(failure.id, "repairs")]


def test_untrusted_text_is_escaped_and_risk_is_plotted(fake_kb: KnowledgeBase) -> None:
    evil = "</script><script>alert(1)</script><img src=x onerror=alert(2)>"
    exp_id = fake_kb.add_experience(
        {
            "task": f"a task {evil}",
            "outcome": "failure",
            "steps": [
                {"index": 0, "role": "user", "content": evil},
                {"index": 1, "role": "assistant", "kind": "tool_call", "tool": "x",
                 "args": {"q": evil}},
                {"index": 2, "role": "tool", "kind": "error", "tool": "x", "error": evil},
            ],
            "attribution": {"agent": evil, "step": 1, "reason": evil, "method": "heuristic",
                            "step_scores": [0.1, 0.8, 0.1]},
            "artifacts": {"session_risk": {"risk": [0.1, 0.5, 0.9], "threshold": 0.7}},
        }
    ).id  # fmt: skip
    html = fake_kb.view_html(exp_id)
    assert "<img src=x" not in html and "<script>alert" not in html
    assert html.count("<script") == 2  # the data block and the page's own script
    assert 'id="curve-risk"' in html and 'class="threshold"' in html
    data = json.loads(re.search(r'id="kb-data">(.*?)</script>', html, re.S).group(1))  # type: ignore[union-attr]
    assert data["blamed"] == 1 and data["steps"] == 3


def test_listing_failures_newest_first_with_filters(fake_kb: KnowledgeBase) -> None:
    fake_kb.import_file(SAMPLE, domain="shop")
    fake_kb.add_experience({"task": "a failure elsewhere", "outcome": "failure", "domain": "bank"})
    failures = fake_kb.viewer.listing()
    assert [i.outcome for i in failures] == ["failure"] * 5
    assert failures[0].task == "a failure elsewhere"  # newest first
    traced = fake_kb.list_experiences(outcome="failure", domain="shop")[0]
    fake_kb.label(traced.id, step=2, agent="assistant", reason="wrong order")
    shop = fake_kb.viewer.listing(domain="shop")
    assert len(shop) == 4 and {i.domain for i in shop} == {"shop"}
    row = next(i for i in shop if i.id == traced.id)
    assert (row.blamed_agent, row.blamed_step, row.method) == ("assistant", 2, "label")
    assert len(fake_kb.viewer.listing(outcome="all")) == 13
    html = fake_kb.view_list_html(outcome="all", link="{id}.html")
    assert html.count("<tr data-id=") == 13 and f'href="{traced.id}.html"' in html
    assert "assistant · step 2" in html


@pytest.mark.slow
def test_tau_retail_failures_with_their_labels(kb: KnowledgeBase) -> None:
    data = requires_data("tau-retail", "trajectories.json")
    kb.import_file(data)
    report = kb.import_labels(data.parent / "failure_labels.json")
    assert len(report.labelled) == 27
    exp = next(
        e
        for e in kb.list_experiences(outcome="failure", limit=200)
        if e.provenance.source_id == "2"
    )
    _label_beside_tracer(kb, exp.id, step=6, reason=kb.get_experience(exp.id).attribution.reason)  # type: ignore[union-attr]
    view = kb.viewer.gather_run(exp.id)
    assert view.label is not None and view.label.step == 6 and view.tracer is not None
    assert view.nearest is not None and view.nearest.success.outcome.value == "success"
    assert not view.nearest.same_task  # one trial per task: the nearest is a similar task
    html = kb.view_html(exp.id)
    assert re.search(r'class="step [^"]*labelled[^"]*" id="step-6"', html)
    assert 'details class="fold"' in html  # the long policy message is folded
    listing = kb.viewer.listing(limit=200)
    assert len(listing) == 27 and sum(i.labelled for i in listing) == 27


# -- CLI ------------------------------------------------------------------------------------------
def test_cli_view_and_list(fake_kb: KnowledgeBase, tmp_path: Path) -> None:
    fake_kb.import_file(SAMPLE)
    failure = _shop_failure(fake_kb, "cancel-2")
    store = str(fake_kb.path)
    fake_kb.close()
    out = tmp_path / "pages" / "run.html"
    # opened with the real model's name, the store refuses vector search: the nearest success is
    # then found by words alone
    result = runner.invoke(app, ["--store", store, "view", failure.id, "-o", str(out), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"path": str(out), "runs": []}
    html = out.read_text()
    assert html.startswith("<!doctype html>") and "Cancel my order #E500" in html
    assert "Nearest success" in html and 'id="divergence"' in html

    listing = tmp_path / "pages" / "runs.html"
    result = runner.invoke(
        app, ["--store", store, "view", "--list", "--runs", "-o", str(listing), "--json"]
    )
    assert result.exit_code == 0, result.output
    written = json.loads(result.stdout)["runs"]
    assert len(written) == 4 and all(Path(p).is_file() for p in written)
    assert f'href="{failure.id}.html"' in listing.read_text()

    result = runner.invoke(app, ["--store", store, "view", "--list", "-o", "-"])
    assert result.exit_code == 0 and result.stdout.count("<tr data-id=") == 4

    for args in (["view"], ["view", failure.id, "--list"], ["view", "exp_missing", "-o", str(out)]):
        result = runner.invoke(app, ["--store", store, *args])
        assert result.exit_code == 1 and len(result.stderr.strip().splitlines()) == 1, args


# -- HTTP -----------------------------------------------------------------------------------------
@contextmanager
def serving(app_: Any) -> Iterator[str]:
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app_, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the HTTP server did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


class Tenants:
    """The two things the routes ask of the server's hub: a token's namespace, and its handle."""

    def __init__(self, store: Path):
        self.root = KnowledgeBase.open(store, embedder=HashEmbedder())

    def resolve_token(self, secret: str) -> str | None:
        return self.root.resolve_token(secret)

    def kb(self, namespace: str) -> KnowledgeBase:
        return KnowledgeBase.on(self.root.store, namespace)


def test_http_viewer_signs_in_with_a_cookie_and_keeps_namespaces_apart(tmp_path: Path) -> None:
    import httpx2
    from starlette.applications import Starlette

    from mcp_server.view_routes import COOKIE, view_routes

    store = tmp_path / "store"
    with KnowledgeBase.open(store, namespace="A", embedder=HashEmbedder()) as a:
        mine = a.add_experience({"task": "tenant A's failed refund", "outcome": "failure"}).id
        token = a.create_token("browser", "A")
    with KnowledgeBase.open(store, namespace="B", embedder=HashEmbedder()) as b:
        theirs = b.add_experience({"task": "tenant B's secret failure", "outcome": "failure"}).id
    hub = Tenants(store)
    try:
        with serving(Starlette(routes=view_routes(lambda: hub))) as base:
            client = httpx2.Client(base_url=base, follow_redirects=False)
            first = client.get("/view")
            assert first.status_code == 303 and first.headers["location"].startswith("/view/login")
            form = client.get("/view/login")
            assert form.status_code == 200 and 'type="password" name="token"' in form.text
            assert "frame-ancestors 'none'" in form.headers["content-security-policy"]
            bad = client.post("/view/login", data={"token": "kbt_wrong", "next": "/view"})
            assert bad.status_code == 401 and "unknown or revoked" in bad.text
            foreign = client.post(
                "/view/login", data={"token": token.secret}, headers={"Origin": "http://evil"}
            )
            assert foreign.status_code == 403
            ok = client.post(
                "/view/login", data={"token": token.secret, "next": "https://evil/view"}
            )
            assert ok.status_code == 303 and ok.headers["location"] == "/view"
            cookie = ok.headers["set-cookie"]
            assert cookie.startswith(f"{COOKIE}=") and "HttpOnly" in cookie
            assert "SameSite=strict" in cookie and "Path=/view" in cookie
            assert token.secret not in ok.headers["location"]

            listing = client.get("/view")
            assert listing.status_code == 200
            assert f'href="/view/{mine}"' in listing.text and theirs not in listing.text
            assert 'data-live="1"' in listing.text
            page = client.get(f"/view/{mine}")
            assert page.status_code == 200 and "tenant A&#x27;s failed refund" in page.text
            assert "script-src 'sha256-" in page.headers["content-security-policy"]
            assert client.get(f"/view/{theirs}").status_code == 404
            assert client.get("/view?outcome=nope").status_code == 400

            with KnowledgeBase.open(store, embedder=HashEmbedder()) as admin:
                admin.revoke_token(token.id)
            assert client.get("/view").status_code == 303
    finally:
        hub.root.close()


# -- in a real browser ----------------------------------------------------------------------------
@pytest.fixture
def browser() -> Iterator[Any]:
    """Headless Debian Chromium driven by selenium through /usr/bin/chromedriver (no download)."""
    webdriver = pytest.importorskip(
        "selenium.webdriver", reason="selenium is not installed (pip install -e '.[test]')"
    )
    from selenium.webdriver.chrome.service import Service

    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.is_file()]
    if missing:
        pytest.skip(f"{', '.join(missing)} missing: run .ci/system-deps.sh as root (apt)")
    profile = tempfile.mkdtemp(prefix="kb-view-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1400,1300",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


class Page:
    """Keys in, DOM state out."""

    def __init__(self, driver: Any, shots: Path):
        self.driver = driver
        self.shots = shots
        shots.mkdir(parents=True, exist_ok=True)

    def open(self, path: Path) -> None:
        self.driver.get(path.as_uri())
        deadline = time.monotonic() + 20
        while self.js("return document.body.dataset.ready") != "1":
            assert time.monotonic() < deadline, "the page's script did not start"
            time.sleep(0.05)

    def js(self, script: str) -> Any:
        return self.driver.execute_script(script)

    def press(self, keys: str) -> None:
        from selenium.webdriver.common.action_chains import ActionChains

        ActionChains(self.driver).send_keys(keys).perform()

    @property
    def focus(self) -> int:
        focused = self.js(
            "var f = document.querySelectorAll('article.step.focused');"
            "return [f.length, f[0].dataset.index, document.body.dataset.focus,"
            " document.activeElement === f[0]];"
        )
        assert focused[0] == 1 and focused[1] == focused[2] and focused[3], focused
        return int(focused[1])

    def classes(self, step: int) -> set[str]:
        return set(self.js(f"return document.getElementById('step-{step}').className").split())

    def shot(self, name: str) -> Path:
        path = self.shots / f"{name}.png"
        self.driver.save_screenshot(str(path))
        assert path.stat().st_size > 10_000
        return path


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_stepping_through_a_failure_in_chromium(
    shop: KnowledgeBase, browser: Any, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    failure = _shop_failure(shop, "refund-3")
    _label_beside_tracer(shop, failure.id, step=2, reason="refunded without verifying the customer")
    path = tmp_path / "run.html"
    path.write_text(shop.view_html(failure.id), encoding="utf-8")
    page = Page(browser, tmp_path / "screenshots")
    page.open(path)
    assert page.focus == 0
    page.shot("01-start")

    page.press("jj")
    assert page.focus == 2
    page.press("k")
    assert page.focus == 1

    page.press("n")  # the refund the payment service refused
    assert page.focus == 5 and "has-error" in page.classes(5)
    page.press("N")
    assert page.focus == 5  # no earlier error: stays, and says so
    assert "no error before" in page.js("return document.getElementById('status').textContent")

    page.press("g")
    page.press("t")
    assert (
        page.focus == 2 and page.js("return document.getElementById('step-2').dataset.call") == "1"
    )

    page.press("b")  # the tracer's blamed step, its twin in the success shown beside it
    assert page.focus == 4
    assert {"blamed", "focused"} <= page.classes(4)
    assert page.js("return document.querySelectorAll('article.step.blamed').length") == 1
    twin = page.js(
        "var t = document.querySelector('.twin:not([hidden])'); return t && t.dataset.right"
    )
    assert twin == "6"  # the success's refund_payment
    assert page.js("return document.querySelector('table.align tr.current').dataset.left") == "4"
    page.shot("02-blamed-step")

    page.press("l")  # the human label, beside the tracer's
    assert page.focus == 2 and "labelled" in page.classes(2)

    page.press("G")
    page.press("d")  # where the run parts from the success: it skipped find_customer
    assert page.focus == 2 and "diverges" in page.classes(2)
    divergence = page.js(
        "var r = document.querySelector('table.align tr.divergence');"
        "return [r.id, r.dataset.op, r.dataset.right];"
    )
    assert divergence == ["divergence", "only_right", "2"]
    page.shot("03-divergence")

    # a breakpoint on a tool: continue stops at its call
    page.press("g")
    field = browser.find_element(By.ID, "bp-tool")
    field.click()
    field.send_keys("refund_payment" + Keys.ENTER)
    page.press(Keys.ESCAPE)
    assert page.js("return document.body.dataset.breakpoints") == "refund_payment"
    page.press("c")
    assert page.focus == 4
    assert page.js("return document.body.dataset.stopped") == "breakpoint on tool refund_payment"
    assert page.js("return document.getElementById('status').classList.contains('stopped')")
    page.shot("04-breakpoint-tool")

    # and on errors
    browser.find_element(By.ID, "bp-errors").click()
    page.press(Keys.ESCAPE)
    page.press("c")
    assert (
        page.focus == 5
        and page.js("return document.body.dataset.stopped") == "breakpoint on errors"
    )
    page.press("c")  # nothing ahead: runs to the end
    assert page.focus == 6 and page.js("return document.body.dataset.stopped") is None

    # a click on the score curve jumps there
    browser.find_element(By.CSS_SELECTOR, '#curve-scores circle[data-step="3"]').click()
    assert page.focus == 3
    page.press("?")
    assert page.js("return document.getElementById('help').hidden") is False
    page.shot("05-keys")
    page.press(Keys.ESCAPE)
    page.press("b")
    page.js("window.scrollTo(0, 0)")
    assert page.focus == 4
    page.shot("07-overview")  # docs/img/viewer.png

    # the listing: filter on the page, j and Enter open a run
    pages = tmp_path / "site"
    pages.mkdir()
    for item in shop.viewer.listing(outcome="all"):
        (pages / f"{item.id}.html").write_text(shop.view_html(item.id), encoding="utf-8")
    (pages / "index.html").write_text(
        shop.view_list_html(outcome="all", link="{id}.html"), encoding="utf-8"
    )
    page.open(pages / "index.html")
    count = "return document.querySelectorAll('table.listing tbody tr:not([hidden])').length"
    assert page.js(count) == 12
    browser.find_element(By.CSS_SELECTOR, "#f-outcome option[value=failure]").click()
    assert page.js(count) == 4
    page.shot("06-listing")
    page.press(Keys.ESCAPE)  # out of the filter
    page.press("j")
    first = page.js("return document.body.dataset.focus")
    assert first in {i.id for i in shop.viewer.listing()}
    page.press(Keys.ENTER)
    deadline = time.monotonic() + 10
    while f"/{first}.html" not in browser.current_url:
        assert time.monotonic() < deadline, browser.current_url
        time.sleep(0.05)
