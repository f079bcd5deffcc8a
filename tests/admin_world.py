"""A conversation with everything the staff views draw: a fork, a function call, a compaction, a recovery
replay that superseded a failed attempt, an error, two upstream sockets. Shared by the admin tests."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from django.utils import timezone

from sessions_app.models import CompactionEvent, Conversation, ErrorEvent, Item, ResponseRecord, UpstreamConnection
from sessions_app.services import conversation_create, default_profile_sync

PROFILE_KEY = "sk-admin-lists-profile-key-5f3e2d1c"


@dataclass
class World:
    conversation: Conversation
    records: dict[str, ResponseRecord]


def build_world(owner, *, tag: str = "") -> World:
    profile = default_profile_sync()
    profile.set_api_key(PROFILE_KEY)
    profile.save()
    conversation = conversation_create(owner=owner, title="Trip planner", profile=profile)
    t0 = timezone.now() - timedelta(minutes=5)
    first = UpstreamConnection.objects.create(conversation=conversation, url="ws://sim/v1/responses",
                                              upstream_profile=profile, opened_at=t0,
                                              closed_at=t0 + timedelta(seconds=95), close_code=1011,
                                              close_reason="upstream_error", close_text="keepalive ping timeout",
                                              responses_carried=3)
    second = UpstreamConnection.objects.create(conversation=conversation, url="ws://sim/v1/responses",
                                               upstream_profile=profile, opened_at=t0 + timedelta(seconds=96))
    records: dict[str, ResponseRecord] = {}

    def add(key, *, parent=None, at, never_created=False, connection=first, items=(), **fields):
        fields.setdefault("status", "completed")
        # As long as the upstream's ids (resp_ + 48 hex): shorter ones hid a chain tree wider than 420 px.
        rid = None if never_created else f"resp_{key}{tag}_" + "0123456789abcdef" * 3
        record = ResponseRecord.objects.create(
            conversation=conversation, response_id=rid, parent=records.get(parent), connection=connection,
            previous_response_id=records[parent].response_id if parent and fields.get("origin") != "recovery_replay"
            else "", sent_at=t0 + timedelta(seconds=at), first_text_at=t0 + timedelta(seconds=at, milliseconds=420),
            completed_at=t0 + timedelta(seconds=at + 2), model="gpt-5.5", input_tokens=100 * at,
            cached_input_tokens=10, output_tokens=20, total_tokens=100 * at + 20,
            request_payload={"type": "response.create", "input": [{"role": "user", "content": key}]}, **fields)
        for position, (direction, item_type, text, raw) in enumerate(items):
            Item.objects.create(response=record, direction=direction, position=position, item_type=item_type,
                                text=text, raw=raw, call_id=raw.get("call_id", ""))
        records[key] = record
        return record

    add("hello", at=1, items=[("input", "message", "plan a trip", {"type": "message", "role": "user"}),
                              ("output", "message", "Where to?", {"type": "message"})])
    add("call", parent="hello", at=10, items=[
        ("input", "message", "Lisbon, check the weather", {"type": "message"}),
        ("output", "function_call", '{"city": "Lisbon"}',
         {"type": "function_call", "name": "get_weather", "call_id": "call_w1", "arguments": '{"city": "Lisbon"}'})])
    add("answer", parent="call", at=20, origin="tool_output", produced_compaction=True, items=[
        ("input", "function_call_output", "sunny", {"type": "function_call_output", "call_id": "call_w1"}),
        ("output", "message", "It is sunny.", {"type": "message"})])
    CompactionEvent.objects.create(conversation=conversation, response=records["answer"], kind="server_side",
                                   input_tokens_before=2000, tokens_after=500, items_replaced=4,
                                   compacted_output=[{"type": "compaction", "encrypted_content": "x"}])
    add("edit", parent="hello", at=30, origin="fork", items=[("input", "message", "Porto instead", {"type": "message"})])
    attempt = add("attempt", parent="edit", at=40, never_created=True, status="failed",
                  response_payload={"superseded_by": "recovery"})
    ErrorEvent.objects.create(conversation=conversation, response=attempt, connection=first, source="upstream",
                              status=400, code="previous_response_not_found",
                              message="Previous response with id 'resp_edit' not found on this socket.")
    add("replay", parent="edit", at=96, origin="recovery_replay", supersedes=attempt, connection=second,
        items=[("output", "message", "Porto it is.", {"type": "message"})])
    return World(conversation=conversation, records=records)
