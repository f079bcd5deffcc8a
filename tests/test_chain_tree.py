"""The admin's chain tree, read back from the rendered HTML: nodes, branches and what each node says."""

from __future__ import annotations

from html.parser import HTMLParser

import pytest
from django.urls import reverse

from sessions_app.models import ResponseRecord
from sessions_app.services import conversation_create, default_profile_sync
from tests.admin_world import PROFILE_KEY, build_world

pytestmark = pytest.mark.django_db


class Outline(HTMLParser):
    """The tree's <ol>/<li>/<span> elements (the template closes each one), with their attributes and text."""

    TAGS = {"ol", "li", "span"}

    def __init__(self) -> None:
        super().__init__()
        self.root: dict | None = None
        self.stack: list[dict] = []

    def handle_starttag(self, tag, attrs):
        if tag not in self.TAGS:
            return
        element = {"tag": tag, "attrs": dict(attrs), "children": [], "text": ""}
        if self.stack:
            self.stack[-1]["children"].append(element)
        elif tag == "ol" and "data-tree-root" in element["attrs"]:
            self.root = element
        else:
            return
        self.stack.append(element)

    def handle_endtag(self, tag):
        if tag in self.TAGS and self.stack:
            assert self.stack[-1]["tag"] == tag, f"</{tag}> closes <{self.stack[-1]['tag']}>"
            self.stack.pop()

    def handle_data(self, data):
        if self.stack:
            self.stack[-1]["text"] += data


def spans(element) -> list[str]:
    found = []
    for child in element["children"]:
        if child["tag"] == "span":
            found.append(" ".join(child["text"].split()))
        found.extend(spans(child))
    return found


def shape(ol) -> list:
    """[(response_id, parent, tags) for a node | [branch shape] for a branch] of an <ol>."""
    out = []
    for li in ol["children"]:
        classes = li["attrs"].get("class", "").split()
        if "sb-branch" in classes:
            (inner,) = [c for c in li["children"] if c["tag"] == "ol"]
            out.append(shape(inner))
        else:
            assert "sb-node" in classes
            out.append((li["attrs"]["data-response"], li["attrs"]["data-parent"], spans(li)))
    return out


def render(client, conversation) -> list:
    response = client.get(reverse("admin:sessions_app_conversation_chain", args=[conversation.pk]))
    assert response.status_code == 200
    html = response.content.decode()
    assert PROFILE_KEY not in html
    outline = Outline()
    outline.feed(html)
    assert outline.root is not None and not outline.stack
    return shape(outline.root)


def test_a_fork_a_function_call_a_compaction_an_error_and_a_replay_draw_as_they_happened(client, staff_user, user):
    world = build_world(user)
    client.force_login(staff_user)
    tree = render(client, world.conversation)
    rid = {key: record.response_id for key, record in world.records.items()}

    (hello, branch_a, branch_b) = tree  # the root turn, then its two continuations as branches
    assert hello[:2] == (rid["hello"], "")
    assert "forks here" in hello[2] and "branch" not in hello[2]
    assert [node[:2] for node in branch_a] == [(rid["call"], rid["hello"]), (rid["answer"], rid["call"])]
    assert [node[:2] for node in branch_b] == [(rid["edit"], rid["hello"]), (rid["replay"], rid["edit"])]
    call, answer = branch_a
    assert "calls get_weather()" in call[2] and "branch" in call[2]
    assert "compacted" in answer[2] and "Tool output" in answer[2]
    assert "compacted" not in call[2]
    edit, replay = branch_b
    assert "branch" in edit[2] and "Fork" in edit[2]
    # The failed attempt is no node: it folded into the replay, which carries its error.
    assert "recovered, 2 attempts" in replay[2] and "previous_response_not_found" in replay[2]
    assert "Recovery replay" in replay[2]
    assert rid["attempt"] is None and all(node[0] for branch in (branch_a, branch_b) for node in branch)


def test_each_node_links_to_its_response(client, staff_user, user):
    world = build_world(user)
    client.force_login(staff_user)
    html = client.get(reverse("admin:sessions_app_conversation_chain", args=[world.conversation.pk])).content.decode()
    for key in ("hello", "call", "answer", "edit", "replay"):
        assert reverse("admin:sessions_app_responserecord_change", args=[world.records[key].pk]) in html, key


def test_two_hundred_turns_stay_one_flat_list_in_few_queries(client, staff_user, user, django_assert_max_num_queries):
    default_profile_sync()
    conversation = conversation_create(owner=user, title="agent loop")
    parent = None
    for n in range(200):
        parent = ResponseRecord.objects.create(conversation=conversation, response_id=f"resp_{n:04d}", parent=parent,
                                               status="completed", origin="tool_output" if n else "user")
    client.force_login(staff_user)
    with django_assert_max_num_queries(20):
        tree = render(client, conversation)
    assert len(tree) == 200 and all(isinstance(node, tuple) for node in tree)
    assert [node[0] for node in tree[:2]] == ["resp_0000", "resp_0001"] and tree[-1][1] == "resp_0198"


def test_the_chain_page_is_for_staff_only(client, user, other_user):
    world = build_world(user)
    url = reverse("admin:sessions_app_conversation_chain", args=[world.conversation.pk])
    assert client.get(url).status_code == 302
    client.force_login(user)  # its owner, but not staff
    response = client.get(url)
    assert response.status_code == 302 and response["Location"].startswith("/admin/login/")
