"""The user pages with realistic content, for the layout, accessibility and screenshot tests.

Content is made the way a user makes it: conversations through the relay and the simulator
(a reply, a tool call and its output, a long unbroken word, an error), a token through the tokens
page. Only the dashboard's dozen conversations are written directly (support.orm).
"""

from __future__ import annotations

from pathlib import Path

from playwright.sync_api import Page, expect

from tests.browser.support import composer_ready, orm, send

NARROW = 420
WIDE = 1280
HEIGHTS = {NARROW: 860, WIDE: 800}
AXE = Path(__file__).resolve().parent / "vendor" / "axe-core-4.14.1" / "axe.min.js"
LONG_WORD = "resp_" + "0123456789abcdef" * 10  # a 165-character id, as the model sometimes prints them

# The elements sticking out past the window's right edge (the outermost of each), for the failure message.
OVERFLOW_JS = """() => {
  const width = document.documentElement.clientWidth;
  const wide = [...document.querySelectorAll('body *')].filter((node) => {
    const box = node.getBoundingClientRect();
    return box.width > 0 && box.right > width + 0.5 && !node.closest('.table-scroll, pre, .snippet');
  });
  const outer = wide.filter((node) => !wide.includes(node.parentElement));
  const name = (node) => node.tagName.toLowerCase() + (node.id ? `#${node.id}` : '')
    + [...node.classList].map((c) => `.${c}`).join('');
  return {
    scrollWidth: document.scrollingElement.scrollWidth,
    culprits: outer.slice(0, 8).map((node) => `${name(node)} right=${Math.round(node.getBoundingClientRect().right)}`),
  };
}"""


def resize(page: Page, width: int) -> None:
    page.set_viewport_size({"width": width, "height": HEIGHTS.get(width, 860)})


def assert_fits(page: Page, label: str, width: int = NARROW) -> None:
    """No sideways scrolling: document.scrollingElement.scrollWidth <= the window's width, once the page's
    stylesheet applies (on a busy machine an element can be visible before it does: the tokens page's snippet then
    scrolled the page, not itself, seen once with two test workers)."""
    page.wait_for_load_state("load")
    found = page.evaluate(OVERFLOW_JS)
    assert found["scrollWidth"] <= width, (
        f"{label} at {width} px scrolls sideways: scrollWidth {found['scrollWidth']}; {found['culprits']}")


def _conversations(username: str, count: int) -> None:
    from django.contrib.auth import get_user_model

    from sessions_app.models import Conversation
    from sessions_app.services import conversation_create

    owner = get_user_model().objects.get(username=username)
    titles = ["Quarterly report outline", "Refactor the relay's lane book", "Whale facts", "Trip to Lisbon",
              "SQL query review", "Release notes for 2.4", "Weather bot (tools)", "Birthday ideas",
              "Why is the build slow?", "Translate the onboarding email",
              "A very long title that goes on and on to see how the list wraps it at narrow widths",
              "Untitled experiment"]
    statuses = {2: "failed", 5: "streaming"}
    for index in range(count):
        conversation = conversation_create(owner=owner, title=titles[index % len(titles)])
        if index in statuses:
            Conversation.objects.filter(pk=conversation.pk).update(status=statuses[index])


def seed_conversations(username: str, count: int = 12) -> None:
    """A dozen conversations for the dashboard (written directly: their content does not matter here)."""
    orm(_conversations, username, count)


def new_conversation(username: str, title: str = "") -> str:
    """A conversation of `username`'s; its page's path."""
    from django.contrib.auth import get_user_model

    from sessions_app.services import conversation_create

    def make() -> str:
        owner = get_user_model().objects.get(username=username)
        return f"/conversations/{conversation_create(owner=owner, title=title).pk}/"

    return orm(make)


def answered(page: Page, text: str, reply: str) -> None:
    """Sends `text` through the composer and waits until the reply shows and the composer is free."""
    send(page, text)
    expect(page.locator("#transcript")).to_contain_text(reply)
    composer_ready(page)


def fill_conversation(page: Page) -> None:
    """A few turns through the relay: markdown-ish text, a tool call and its output, a long unbroken
    word, and an error."""
    composer_ready(page)
    answered(page, "Hello! Plan for **launch day**:\n- ship the relay\n- write the `docs`\n1. test\n2. release",
             "You said:")
    answered(page, '/tool get_weather {"city": "Lisbon", "unit": "celsius"}', "get_weather")
    answer = page.locator(".tool-answer textarea")
    expect(answer).to_be_visible()
    answer.fill('{"forecast": "sunny", "high": 24}')
    page.get_by_role("button", name="Send").click()
    expect(page.locator("#transcript")).to_contain_text("The get_weather tool returned")
    composer_ready(page)
    answered(page, f"Which id was it? {LONG_WORD}", LONG_WORD[:40])
    answered(page, "/error invalid_value", "invalid_value")


def run_axe(page: Page) -> list[dict]:
    """axe-core's WCAG 2 A/AA violations on the page as it is now.

    The site's CSP allows no inline script, and Playwright's add_script_tag(path=…) inserts the
    file's text as an inline <script>, which the CSP blocks; so axe's source is evaluated through
    the DevTools protocol (page.evaluate is not subject to the page's CSP) and nothing else is relaxed.
    """
    if not page.evaluate("() => typeof window.axe === 'object'"):
        page.evaluate(AXE.read_text(encoding="utf-8"))
    result = page.evaluate("""async () => {
      const results = await axe.run(document, {runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa']},
                                               resultTypes: ['violations']});
      return results.violations.map((v) => ({id: v.id, impact: v.impact, help: v.help,
        nodes: v.nodes.slice(0, 5).map((n) => ({target: n.target.join(' '), summary: n.failureSummary}))}));
    }""")
    return result


def serious(violations: list[dict]) -> list[dict]:
    return [v for v in violations if v["impact"] in ("serious", "critical")]


def describe(label: str, violations: list[dict]) -> str:
    lines = [f"{label}:"]
    for v in violations:
        lines.append(f"  [{v['impact']}] {v['id']}: {v['help']}")
        lines.extend(f"      {node['target']}: {node['summary']}" for node in v["nodes"])
    return "\n".join(lines)
