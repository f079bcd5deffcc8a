"""Real Chromium under the real policy: every page loads, works and reports no CSP violation.

Violations are caught two ways: a `securitypolicyviolation` listener installed before any page
script runs (reported straight to Python, so a navigation cannot lose one), and Chromium's own
console messages ("Refused to …"). The chat must still stream a reply over its socket.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import BrowserContext, ConsoleMessage, Page, Response, expect

from tests.browser.conftest import browser, new_page  # noqa: F401 (fixtures)
from tests.browser.support import RESULTS, composer_ready, create_user, orm, send, sign_in
from tests.browser.test_chat import start_conversation, turn

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

ADMIN_MODELS = ["upstreamprofile", "conversation", "upstreamconnection", "responserecord", "item", "errorevent",
                "compactionevent", "apitoken"]
LISTEN = """
document.addEventListener('securitypolicyviolation', (event) => {
  window.__cspViolation({directive: event.violatedDirective, blocked: event.blockedURI,
                         source: event.sourceFile, line: event.lineNumber, sample: event.sample,
                         page: document.location.pathname});
});
"""


class ViolationLog:
    """What the page's policy refused, from the DOM event and from the console."""

    def __init__(self, context: BrowserContext) -> None:
        self.events: list[dict] = []
        self.console: list[str] = []
        self.documents = 0
        context.expose_function("__cspViolation", lambda violation: self.events.append(violation))
        context.add_init_script(LISTEN)

    def watch(self, page: Page) -> Page:
        page.on("console", self.on_console)
        page.on("response", self.on_response)
        return page

    def on_response(self, response: Response) -> None:
        """Every document Daphne serves carries the strict policy."""
        if response.request.resource_type == "document" and response.status == 200:
            self.documents += 1
            policy = response.headers.get("content-security-policy", "")
            if "script-src 'self'" not in policy or "unsafe-inline" in policy:
                self.console.append(f"{response.url}: policy {policy!r}")

    def on_console(self, message: ConsoleMessage) -> None:
        text = message.text
        if "Content Security Policy" in text or "Content-Security-Policy" in text or text.startswith("Refused to"):
            self.console.append(f"{message.type}: {text}")

    def assert_none(self) -> None:
        assert self.events == [], self.events
        assert self.console == [], self.console


@pytest.fixture
def watched(new_page):  # noqa: F811 (the fixture imported above)
    """A page in a fresh context whose CSP violations are recorded."""
    page = new_page()
    log = ViolationLog(page.context)
    return log.watch(page), log


def pixels(page: Page, selector: str, prop: str) -> float:
    return page.locator(selector).first.evaluate(f"(el) => parseFloat(getComputedStyle(el)['{prop}'])")


def test_the_collector_sees_a_violation_when_one_happens(watched) -> None:
    page, log = watched
    page.goto("/accounts/login/")
    page.evaluate("document.body.insertAdjacentHTML('beforeend', '<p style=\"color: red\">x</p>')")
    page.wait_for_timeout(300)
    assert any(event["directive"].startswith("style-src") for event in log.events), log.events


def test_every_page_works_under_the_policy_and_the_chat_streams(watched) -> None:
    page, log = watched
    create_user("root", "root-password-1", is_staff=True, is_superuser=True)

    page.goto("/accounts/login/")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    sign_in(page, "root", "root-password-1")
    # The app's stylesheet applies (a blocked one would leave the top bar unstyled).
    assert page.locator(".topbar").evaluate("(el) => getComputedStyle(el).display") == "flex"

    # Chat: the socket opens under connect-src and a reply streams in.
    start_conversation(page, "Under CSP")
    send(page, "hello under a strict policy")
    expect(turn(page, 0)).to_have_class(re.compile(r"\bcompleted\b"))
    expect(turn(page, 0).locator(".item.output.message")).to_contain_text('You said: "hello under a strict policy"')
    send(page, "remember: lighthouse")
    expect(turn(page, 1)).to_have_class(re.compile(r"\bcompleted\b"))
    # Fork from the second message (the Edit button is added by transcript.js): the chain view indents it.
    turn(page, 1).get_by_role("button", name="Edit").click()
    page.get_by_label("Message").fill("remember: harbour")
    page.get_by_label("Message").press("Enter")
    expect(turn(page, 1)).to_contain_text("Okay, I will remember: harbour.")  # the new branch, in place
    expect(turn(page, 1).locator(".switcher .position")).to_have_text("2 / 2")
    # The chain panel draws both branches.
    page.get_by_role("button", name="Chain").click()
    expect(page.locator("#chain-list li")).to_have_count(3)
    expect(page.locator("#chain-list .mark.fork")).to_have_count(1)
    conversation_path = page.evaluate("location.pathname")
    page.reload()
    composer_ready(page)
    expect(page.locator("#transcript")).to_contain_text("Okay, I will remember: harbour.")

    page.goto("/tokens/")
    page.get_by_placeholder("Token name (e.g. my agent)").fill("agent")
    page.get_by_role("button", name="Create token").click()
    expect(page.locator("#new-token code.secret")).to_contain_text("sb_")

    page.goto("/accounts/password_change/")
    expect(page.get_by_role("heading", name="Change password")).to_be_visible()

    # The dashboard, paginated: 60 more conversations make two pages.
    from sessions_app import services
    from sessions_app.models import Conversation

    root = orm(lambda: Conversation.objects.get(title="Under CSP").owner)
    orm(lambda: [services.conversation_create(owner=root, title=f"filler {n}") for n in range(60)])
    page.goto("/")
    expect(page.get_by_text("Page 1 of 2")).to_be_visible()
    assert page.locator(".pagination").evaluate("(el) => getComputedStyle(el).display") == "flex"
    page.get_by_role("link", name="Next ›").click()
    expect(page.get_by_text("Page 2 of 2")).to_be_visible()
    RESULTS.mkdir(exist_ok=True)
    page.screenshot(path=str(RESULTS / "csp-dashboard-page-2.png"), full_page=True)

    # The admin: index, every changelist, a change form with inlines, the usage and chain views.
    page.goto("/admin/")
    expect(page.get_by_role("heading", name="Site administration")).to_be_visible()
    for model in ADMIN_MODELS:
        page.goto(f"/admin/sessions_app/{model}/")
        expect(page.locator("#changelist")).to_be_visible()
    page.goto("/admin/auth/user/")
    page.locator("#action-toggle").check()  # admin/js/actions.js runs: every row is selected
    expect(page.locator("input.action-select").first).to_be_checked()
    page.goto("/admin/sessions_app/responserecord/usage/")
    expect(page.locator("#content table")).to_be_visible()
    conversation_pk = conversation_path.strip("/").split("/")[-1]
    page.goto(f"/admin/sessions_app/conversation/{conversation_pk}/change/")
    expect(page.locator("#conversation_form")).to_be_visible()
    page.goto(f"/admin/sessions_app/conversation/{conversation_pk}/chain/")
    # The writer batches records a moment behind the page: a fork shows as two indented branches.
    for _ in range(20):
        if page.locator("ol.sb-tree li.sb-branch").count() >= 2:
            break
        page.wait_for_timeout(250)
        page.reload()
    expect(page.locator("ol.sb-tree li.sb-branch")).not_to_have_count(0)
    rem = pixels(page, "html", "fontSize")
    assert pixels(page, "li.sb-branch > ol.sb-tree", "marginLeft") == pytest.approx(1.4 * rem)
    assert pixels(page, "ol[data-tree-root]", "marginLeft") == 0
    assert pixels(page, "li.sb-node", "borderLeftWidth") == 3  # admin-chain.css applies
    page.screenshot(path=str(RESULTS / "csp-admin-chain.png"), full_page=True)

    assert log.documents >= 20
    log.assert_none()
