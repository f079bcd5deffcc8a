// Live events on the transcript: which turn each event of the socket belongs to, and what it changes.
'use strict';

// Rules (docs/protocol.md §1):
// * Live events reach a turn by response id, else by lane (stream_id, '' = default lane) while it is in
//   flight. A lane carries one response at a time; creates sent meanwhile wait in the lane's queue, in
//   the order the relay accepted them (the order of their switchboard.request events).
// * switchboard.request comes to every socket of the conversation, this tab's own creates included.
//   The first turn of the lane still waiting for its request whose input equals the event's is that
//   request (this tab's own turn, or one the history already drew): nothing new is shown. Any other
//   starts a turn as a reload draws its record: the same parent (previous_response_id), the badge the
//   records will give it (history.js recordedOrigin), the input as its user message or tool outputs.
// * A steer's switchboard.request (origin 'steer') starts no turn: its input shows on the successor the
//   steer starts, as the records keep it, in every tab; this tab's own steer is already waiting there.
// * A response whose request this page never saw (a steered successor, a socket attached mid-turn)
//   still gets a turn from its response.created.

import { recordedOrigin } from './history.js';

const TERMINAL = new Set(['response.completed', 'response.failed', 'response.incomplete']);
const ENDED = new Set(['completed', 'incomplete', 'failed', 'cancelled', 'interrupted']);

/** JSON with sorted keys: two items are the same item whatever order their fields came in. */
function canonical(value) {
  if (Array.isArray(value)) return `[${value.map(canonical).join(',')}]`;
  if (value && typeof value === 'object') {
    return `{${Object.keys(value).sort().map((key) => `${JSON.stringify(key)}:${canonical(value[key])}`).join(',')}}`;
  }
  return JSON.stringify(value ?? null);
}

/** The text of a steer's input items (a string input is one user message with one input_text part). */
function steerText(items) {
  return items.map((item) => (typeof item?.content === 'string' ? item.content
    : (Array.isArray(item?.content) ? item.content : []).map((part) => part?.text || '').join(''))).join('\n');
}

function sameItems(a, b) {
  return a.length === b.length && a.every((item, index) => canonical(item) === canonical(b[index]));
}

/** Not yet started upstream: no response id, nothing ended. */
function unstarted(turn) {
  return !turn.responseId && !ENDED.has(turn.status);
}

/** The turn has ended: text still waiting for an animation frame is drawn now, in the same task as the
 *  status, so the page never shows an ended turn without the text it ended with (the records keep it). */
function flushed(turn) {
  for (const item of turn.view.items.values()) item.flush();
}

export class LiveTurns {
  constructor(transcript, { onSteer = () => {} } = {}) {
    this.transcript = transcript;
    this.onSteer = onSteer;
    this.active = new Map();      // lane -> key of the turn in flight there
    this.queue = new Map();       // lane -> keys of turns waiting behind it
    this.steered = new Set();     // lanes whose last response ended 'steered': a successor follows
    this.steers = new Map();      // lane -> steers sent ({items, text, own, requested, at}), shown on the successor
    this.cut = new Map();         // lane -> turn an upstream close cut off before it started (may be resent)
    this.localCount = 0;
  }

  turn(key) {
    return this.transcript.turn(key);
  }

  nextKey() {
    return `l${++this.localCount}`;
  }

  inFlight(lane = '') {
    return this.turn(this.active.get(lane));
  }

  /** The lane's turns in flight or waiting, in order. */
  waiting(lane) {
    return [this.active.get(lane), ...(this.queue.get(lane) || [])].map((key) => this.turn(key)).filter(Boolean);
  }

  /** `turns` become the lane's order: the first in flight, the rest waiting. */
  line(lane, turns) {
    const [first, ...rest] = turns;
    if (first) this.active.set(lane, first.key);
    else this.active.delete(lane);
    if (rest.length) this.queue.set(lane, rest.map((turn) => turn.key));
    else this.queue.delete(lane);
  }

  /** `turn` is no longer in flight on `lane`: the next waiting one is. */
  settle(lane, turn) {
    this.line(lane, this.waiting(lane).filter((other) => other !== turn));
  }

  /** switchboard.history: the records replace the transcript; lanes in flight follow them. */
  history(event, { select = null } = {}) {
    const sending = this.inFlight('');
    const pending = sending && sending.status === 'sending' && !sending.responseId ? sending : null;
    this.active = this.transcript.renderHistory(event, { select, pending });
    this.queue.clear();
    this.cut.clear();
  }

  /** A turn the user just sent on the default lane, continuing `continues` (a resp_… or null). */
  startLocal(items, { origin = 'user', continues = null } = {}) {
    const t = this.transcript;
    const turn = t.add({ key: this.nextKey(), parent: t.keyOf(continues), previousResponseId: continues, origin,
      status: 'sending', local: true });
    t.addInputs(turn, items);
    this.line('', [...this.waiting(''), turn]);
    this.cut.delete('');
    t.selected = turn.key;
    t.follow(() => t.render());
    return turn;
  }

  /** switchboard.request: {turn, own}; `own` when the turn was already on the page (see the rules). */
  requested(event) {
    const t = this.transcript;
    const lane = event.stream_id || '';
    const items = Array.isArray(event.input) ? event.input : [];
    const at = event.accepted_at || null;  // the record's time: every tab and a reload show it
    if (event.origin === 'steer') return this.steerRequested(lane, items, at);
    const waiting = this.waiting(lane);
    const own = waiting.find((turn) => !turn.requested && !ENDED.has(turn.status) && sameItems(turn.inputs, items));
    if (own) {
      own.requested = true;
      if (at) {
        own.sentAt = at;
        own.view.refresh();
      }
      return { turn: own, own: true };
    }
    const continues = event.previous_response_id || null;
    const parent = t.turn(t.keyOf(continues));
    const siblings = parent ? t.tree.children(t.tree.standing(parent.key)).map((key) => t.turn(key)) : [];
    const origin = !event.origin || event.origin === 'user' || event.origin === 'tool_output'
      ? recordedOrigin(items, parent, siblings, lane) : event.origin;
    const turn = t.add({ key: this.nextKey(), parent: parent?.key || null, previousResponseId: continues, lane, origin,
      status: 'sending', requested: true, ...(at && { sentAt: at }) });
    t.addInputs(turn, items);
    // Accepted before any create still waiting for its request (this tab's own, not yet accepted).
    const ahead = waiting.findIndex((other) => !other.requested && unstarted(other));
    this.line(lane, ahead < 0 ? [...waiting, turn] : [...waiting.slice(0, ahead), turn, ...waiting.slice(ahead)]);
    if (!lane) this.cut.delete('');
    if (!lane && (!turn.parent || t.path.includes(turn.parent))) t.selected = turn.key;
    t.follow(() => t.render());
    return { turn, own: false };
  }

  /** Steering text sent for the default lane's turn in flight: it shows on the successor it starts
   *  (as the records keep it); until then the turn says a steer is on its way. */
  addSteer(text) {
    const turn = this.inFlight('');
    if (!turn) return;
    this.noteSteer('', turn, { items: [{ type: 'message', role: 'user', content: text }], text, own: true });
  }

  noteSteer(lane, turn, steer) {
    if (!this.steers.has(lane)) this.steers.set(lane, []);
    this.steers.get(lane).push(steer);
    turn?.view.note('steer', `Steering: “${steer.text}”`);
  }

  /** A steer's switchboard.request: {turn (the steered one), own, inputs}. Sent elsewhere (another tab, the
   *  SDK), its input waits for the successor like this tab's own (see the rules). */
  steerRequested(lane, items, at) {
    const turn = this.inFlight(lane);
    const text = steerText(items);
    const own = (this.steers.get(lane) || []).find((steer) => steer.own && !steer.requested && steer.text === text);
    if (own) {
      own.requested = true;
      own.at = at;
      return { turn, own: true, inputs: items };
    }
    this.noteSteer(lane, turn, { items, text, own: false, requested: true, at });
    return { turn, own: false, inputs: items };
  }

  /** The relay resent the lane's request (switchboard.recovered): one turn, with a note. The upstream
   *  close that came first (the 60-minute limit) had cut that turn off: it is the one resent. */
  recovered(event) {
    const t = this.transcript;
    const lane = event.stream_id || '';
    let turn = this.inFlight(lane);
    const cut = this.turn(this.cut.get(lane));
    this.cut.delete(lane);
    if (!turn && cut?.status === 'interrupted' && !cut.responseId) {
      turn = cut;
      turn.status = 'sending';
      this.line(lane, [turn, ...this.waiting(lane)]);
      t.touch(turn);
      t.render();
    }
    if (!turn) return null;
    turn.recovered = true;
    turn.recoveredReason = turn.recoveredReason || (event.reason === 'new_upstream_socket' ? null : event.reason);
    turn.view.notes.querySelector('.note[data-kind="retrying"]')?.remove();
    t.decorate(turn);
    return turn;
  }

  /** The relay waits before resending the lane's request (switchboard.retrying): said on the turn. */
  retrying(event) {
    const turn = this.inFlight(event.stream_id || '');
    if (!turn) return;
    turn.recoveredReason = turn.recoveredReason || event.reason;
    turn.view.note('retrying', `Rate limited by the upstream: retrying in ${event.retry_in} s `
      + `(attempt ${event.attempt} of ${event.of}).`);
  }

  /** Ends the lane's turn as `status` without a terminal event (the upstream socket died, Stop). */
  abandon(lane, status) {
    const t = this.transcript;
    const turn = this.inFlight(lane);
    if (!turn) return null;
    turn.status = status;
    this.settle(lane, turn);
    if (status === 'interrupted') this.cut.set(lane, turn.key);
    flushed(turn);
    t.touch(turn);
    t.decorate(turn);
    t.onChange();
    return turn;
  }

  apply(event) {
    this.transcript.follow(() => this.route(event));
  }

  route(event) {
    const lane = event.stream_id || '';
    const type = event.type;
    if (type === 'error') return this.error(lane, event);
    if (type.startsWith('response.steer.')) return this.steerReply(event);
    if (type === 'response.created' || type === 'response.queued' || type === 'response.in_progress') {
      return this.started(lane, event.response || {}, type === 'response.queued' ? 'queued' : 'in_progress');
    }
    const turn = this.turn(this.transcript.keyOf(event.response?.id)) || this.inFlight(lane);
    if (!turn) return undefined;
    if (TERMINAL.has(type)) return this.finished(lane, turn, event.response || {});
    switch (type) {
      case 'response.output_item.added':
        return turn.view.outputItem(event.item || {}, event.output_index);
      case 'response.output_item.done':
        turn.outputs[event.output_index] = event.item || {};
        return turn.view.outputItem(event.item || {}, event.output_index).finish(event.item || {});
      case 'response.output_text.delta':
      case 'response.refusal.delta':  // time to first text, live from response.created (the records': from the send)
        if (turn.ttftMs == null && turn.firstEventAt) turn.ttftMs = Date.now() - turn.firstEventAt;
        return this.liveItem(turn, event, 'message').appendText(event.content_index, event.delta);
      case 'response.output_text.done':
        return this.liveItem(turn, event, 'message').setText(event.content_index, event.text);
      case 'response.function_call_arguments.delta':
        return this.liveItem(turn, event, 'function_call').appendArguments(event.delta);
      case 'response.reasoning_summary_text.delta':
        return this.liveItem(turn, event, 'reasoning').appendText(event.summary_index, event.delta);
      case 'response.reasoning_summary_text.done':
        return this.liveItem(turn, event, 'reasoning').setText(event.summary_index, event.text);
      case 'response.compaction.compacting':
        return this.liveItem(turn, event, 'compaction');
      default:
        return undefined;  // other events change nothing a reader needs to see
    }
  }

  /** The item an event extends; created from the event when its output_item.added never came. */
  liveItem(turn, event, kind) {
    const existing = turn.view.item(event);
    if (existing) return existing;
    const stub = { id: event.item_id, type: kind, role: kind === 'message' ? 'assistant' : undefined };
    return turn.view.outputItem(stub, event.output_index);
  }

  started(lane, response, status) {
    const t = this.transcript;
    let turn = this.turn(t.keyOf(response.id));
    if (!turn && !this.steered.has(lane)) {
      // The lane's turn in flight, unless another response already named it: then the next one waiting.
      turn = this.waiting(lane).find((other) => !other.responseId) || null;
    }
    if (!turn) {
      // A response whose request this page never saw, or a steered successor (its steering text as input).
      const continues = response.previous_response_id || null;
      const steering = this.steered.has(lane) ? this.steers.get(lane) || [] : [];
      const at = steering.find((steer) => steer.at)?.at;  // the steer's record is the successor's
      turn = t.add({ key: this.nextKey(), parent: t.keyOf(continues), previousResponseId: continues,
        lane, origin: this.steered.has(lane) ? 'steer' : 'user', status, requested: true, ...(at && { sentAt: at }) });
      t.addInputs(turn, steering.flatMap((steer) => steer.items), { steer: true });
      this.steered.delete(lane);
      this.steers.delete(lane);
      t.turn(turn.parent)?.view.notes.querySelector('.note[data-kind="steer"]')?.remove();
      if (!lane && t.path.includes(turn.parent)) t.selected = turn.key;
    }
    // In flight now: first in its lane's order.
    this.line(lane, [turn, ...this.waiting(lane).filter((other) => other !== turn)]);
    turn.responseId = response.id || turn.responseId;
    turn.model = response.model || turn.model;
    turn.status = status;
    turn.firstEventAt = turn.firstEventAt || Date.now();
    t.touch(turn);
    t.render();
    return turn;
  }

  finished(lane, turn, response) {
    const t = this.transcript;
    turn.responseId = response.id || turn.responseId;
    turn.status = response.status || 'completed';
    turn.usage = response.usage || turn.usage;
    turn.error = response.error || null;
    turn.incompleteReason = response.incomplete_details?.reason || null;
    (response.output || []).forEach((item, index) => {
      turn.outputs[index] = item;
      turn.view.outputItem(item, index).finish(item);
    });
    if (turn.incompleteReason === 'steered') this.steered.add(lane);
    this.settle(lane, turn);
    flushed(turn);
    t.touch(turn);
    t.render();
    return turn;
  }

  error(lane, event) {
    const t = this.transcript;
    let turn = this.inFlight(lane);
    if (!turn) {
      turn = t.add({ key: this.nextKey(), lane, status: 'failed', requested: true });
      if (!lane) t.selected = turn.key;
    }
    turn.status = 'failed';
    turn.error = event.error || { code: 'error' };
    this.settle(lane, turn);
    flushed(turn);
    t.touch(turn);
    t.render();
    return turn;
  }

  /** Steer replies are passing feedback (the successor, or nothing, is what the records keep). */
  steerReply(event) {
    const lane = event.stream_id || '';
    const turn = this.inFlight(lane) || this.turn(this.transcript.keyOf(event.steer?.previous_response_id));
    const kind = event.type.slice('response.steer.'.length);
    if (kind === 'failed') {  // `text`: this tab's own steer, to put back (one sent elsewhere is just dropped)
      const steer = this.steers.get(lane)?.pop();
      const text = steer?.own ? steer.text : null;
      turn?.view.notes.querySelector('.note[data-kind="steer"]')?.remove();
      this.onSteer('failed', event.error, text);
    } else {
      turn?.view.note('steer', kind === 'accepted' ? 'Steer accepted: the reply restarts with it.'
        : 'Steer waiting for the tool output.');
      this.onSteer(kind, null);
    }
  }
}
