// The transcript: the conversation as a tree of turns, showing one branch (root to leaf) at a time.
'use strict';

// Rules:
// * Every turn is keyed: `r<pk>` from the records, `l<n>` for one sent from this page (until the
//   records name it: a reload then keys it by its record). Live events reach a turn by response id,
//   else by lane (stream_id, '' = default lane) while it is in flight.
// * A turn's parent is the turn it continues (its previous response); a resent attempt the relay
//   superseded is folded into the turn that superseded it (tree.js), so a recovered request is one
//   turn with a note, live and after a reload alike.
// * The page shows the path through the selected turn, continued down the branch with the latest
//   activity; the next message continues the last finished turn of that path.
// * Compaction: a server-side compaction item is a divider inside its turn; a standalone compaction
//   is a divider after the turn it compacted. Both show the items replaced (counted along the path
//   the same way live and after a reload) and the tokens before → after.

import { turnsFromHistory } from './history.js';
import { ConversationTree } from './tree.js';
import { el, recoveredNote, standaloneDivider, TurnView } from './turns.js';

const TERMINAL = new Set(['response.completed', 'response.failed', 'response.incomplete']);
const ENDED = new Set(['completed', 'incomplete', 'failed', 'cancelled', 'interrupted']);
// A stopped or interrupted response is continued too: the relay replays what it had said (stopping.py).
const CONTINUABLE = new Set(['completed', 'incomplete', 'cancelled', 'interrupted']);
const BADLY = new Set(['failed', 'interrupted', 'cancelled']);

/** A turn the next message does not continue: it failed, or ended before the upstream named a response.
 *  It stays in view where it happened (tree.js), and is no branch. */
function dead(turn) {
  return turn.status === 'failed' || (BADLY.has(turn.status) && !turn.responseId);
}

function isUserMessage(item) {
  if (typeof item === 'string') return true;
  return Boolean(item) && (item.type === 'message' || (!item.type && item.role)) && (item.role || 'user') === 'user';
}

export class Transcript {
  constructor(root, { onChange = () => {}, onSteer = () => {} } = {}) {
    this.root = root;
    this.onChange = onChange;
    this.onSteer = onSteer;
    this.editable = false;
    this.tree = new ConversationTree();
    this.turns = new Map();       // key -> turn
    this.active = new Map();      // lane -> key of the turn in flight there
    this.selected = null;         // the key the shown path runs through (null: the default path)
    this.steered = new Set();     // lanes whose last response ended 'steered': a successor follows
    this.steers = new Map();      // lane -> steering texts sent, shown on the successor they start
    this.standalone = new Map();  // key -> standalone compaction figures after that turn
    this.cut = new Map();         // lane -> turn an upstream close cut off before it started (may be resent)
    this.localCount = 0;
    this.path = [];
  }

  // -- building turns ------------------------------------------------------------------

  turn(key) {
    return this.turns.get(key) || null;
  }

  keyOf(responseId) {
    return responseId ? this.tree.keyOf(responseId) : null;
  }

  add(fields) {
    const turn = {
      key: fields.key, record: null, responseId: null, previousResponseId: null, parent: null, supersedes: null,
      lane: '', origin: 'user', status: 'sending', usage: null, error: null, incompleteReason: null,
      sentAt: new Date().toISOString(), ttftMs: null, model: '', recovered: false, inputs: [], outputs: [],
      activity: Date.now(), ...fields,
    };
    turn.view = new TurnView(turn);
    this.turns.set(turn.key, turn);
    this.tree.upsert({ key: turn.key, responseId: turn.responseId, parent: turn.parent, supersedes: turn.supersedes,
      activity: turn.activity, dead: dead(turn) });
    return turn;
  }

  addInputs(turn, items, { steer = false } = {}) {
    for (const item of items) {
      turn.inputs.push(item);
      const editable = this.editable && !turn.lane && !steer && isUserMessage(item);
      turn.view.addInput(item, { editable, steer });
    }
  }

  /** Touch a turn: its branch becomes the latest activity, and its views show its state. */
  touch(turn) {
    turn.activity = Math.max(turn.activity, Date.now());
    this.tree.upsert({ key: turn.key, responseId: turn.responseId, activity: turn.activity, dead: dead(turn) });
    turn.view.refresh();
  }

  // -- the records ---------------------------------------------------------------------

  /** Replaces the transcript with the records (switchboard.history); `select`: a resp_… to show. */
  renderHistory(history, { select = null } = {}) {
    // A message sent but not yet answered (no response.created) may be missing from a history built
    // just before its record was: it stays, as the turn in flight, unless the history has one.
    const sending = this.turns.get(this.active.get(''));
    const pending = sending && sending.status === 'sending' && !sending.responseId ? sending : null;
    this.tree = new ConversationTree();
    this.turns.clear();
    this.active.clear();
    this.cut.clear();
    this.standalone.clear();
    const { turns, standalone } = turnsFromHistory(history);
    for (const { fields, inputs, outputs, steer, inFlight } of turns) {
      const turn = this.add(fields);
      this.addInputs(turn, inputs, { steer });
      outputs.forEach((item, index) => {
        turn.outputs[index] = item;
        turn.view.outputItem(item, index).finish(item);
      });
      if (inFlight) this.active.set(turn.lane, turn.key);
    }
    this.standalone = standalone;
    let chosen = select ? this.keyOf(select) : null;
    if (pending && !this.active.has('')) {
      const turn = this.add({ key: pending.key, previousResponseId: pending.previousResponseId, origin: pending.origin,
        parent: this.keyOf(pending.previousResponseId), sentAt: pending.sentAt, status: 'sending' });
      this.addInputs(turn, pending.inputs);
      this.active.set('', turn.key);
      chosen = chosen || turn.key;
    }
    this.selected = chosen;
    this.render();
    if (chosen) this.reveal(chosen);
    else this.scrollToEnd();
  }

  // -- the shown path ------------------------------------------------------------------

  /** Draws the path through the selected turn: its turns, their switchers, notes and dividers. */
  render() {
    const path = this.tree.path(this.selected);
    this.path = path;
    const onPath = new Set(path);
    const nodes = [];
    let context = 0;  // items the model has in context along this path, as compactions count them
    let compactedAt = null;  // the divider waiting for the next turn's input tokens
    for (const key of this.tree.display(path)) {
      const turn = this.turns.get(key);
      if (!onPath.has(key)) {  // a dead attempt, shown where it happened; the model never saw it
        turn.view.setSwitcher(0, 0);
        this.decorate(turn);
        nodes.push(turn.view.el);
        continue;
      }
      const attempt = this.lastAttempt(turn);
      if (compactedAt) {
        compactedAt.after = attempt.usage?.input_tokens ?? null;
        compactedAt.view.setFigures(compactedAt);
        compactedAt = null;
      }
      context += attempt.inputs.length;
      attempt.outputs.forEach((item, index) => {
        if (item?.type === 'compaction') {
          const view = attempt.view.outputItem(item, index);
          compactedAt = { view, replaced: context + index, before: attempt.usage?.input_tokens ?? null, after: null };
          view.setFigures(compactedAt);
          context = attempt.outputs.length - index;
        }
      });
      if (!attempt.outputs.some((item) => item?.type === 'compaction')) context += attempt.outputs.length;
      const { index, count } = this.tree.position(key);
      turn.view.setSwitcher(index, count);
      this.decorate(turn);
      nodes.push(turn.view.el);
      const standalone = this.standalone.get(key);
      if (standalone) {
        nodes.push(standaloneDivider(standalone, context));
        context = 1;
      }
    }
    if (compactedAt) compactedAt.view.setFigures(compactedAt);
    if (!nodes.length) nodes.push(el('p', 'empty', 'No turns yet.'));
    this.root.replaceChildren(...nodes);
    this.onChange();
  }

  /** The record that stands for a turn (a superseded attempt's view is its superseder's). */
  lastAttempt(turn) {
    return this.turns.get(this.tree.standing(turn.key)) || turn;
  }

  /** Notes and actions of a turn, from its state. */
  decorate(turn) {
    const view = turn.view;
    view.refresh();
    if (turn.recovered) view.note('recovered', recoveredNote(turn.recoveredReason));
    view.noteIncomplete(turn.incompleteReason);
    view.showError(ENDED.has(turn.status) && turn.status !== 'completed' ? turn.error : null);
    const actions = [];
    if (!this.editable) { view.setActions([]); return; }
    if (turn.status === 'failed' || turn.status === 'interrupted' || turn.status === 'cancelled') {
      actions.push(['retry', 'Retry', 'Send the same message again from the same point']);
    }
    if (turn.status === 'incomplete' && turn.incompleteReason === 'max_output_tokens') {
      actions.push(['continue', 'Continue', 'Ask the model to go on where it stopped']);
    }
    view.setActions(actions);
  }

  /** Show the path through `key`, and scroll to that turn. */
  select(key) {
    if (!this.turns.has(key)) return;
    this.selected = key;
    this.render();
    this.reveal(key);
  }

  /** Switch the turn `key` to its sibling `step` (-1 / +1) away. */
  switchSibling(key, step) {
    const { index, siblings } = this.tree.position(key);
    const target = siblings[index + step];
    if (target === undefined) return;
    this.selected = target;
    this.render();
    this.turns.get(target)?.view.el.scrollIntoView({ block: 'nearest' });
  }

  reveal(key) {
    const view = this.turns.get(this.tree.standing(key))?.view || this.turns.get(key)?.view;
    if (!view) return;
    view.el.scrollIntoView({ block: 'center' });
    view.el.classList.add('highlight');
    setTimeout(() => view.el.classList.remove('highlight'), 2000);
  }

  /** The default-lane turn the next message continues: the last finished one on the shown path. */
  leaf() {
    for (let i = this.path.length - 1; i >= 0; i--) {
      const turn = this.turns.get(this.path[i]);
      if (!turn.lane && turn.responseId && CONTINUABLE.has(turn.status)) return turn;
    }
    return null;
  }

  /** The last turn of the shown path (whatever its state). */
  tail() {
    return this.path.length ? this.turns.get(this.path[this.path.length - 1]) : null;
  }

  /** Function calls of the shown leaf that no later turn answered. */
  pendingCalls() {
    const leaf = this.leaf();
    if (!leaf || leaf !== this.tail()) return [];
    return leaf.outputs.filter((item) => item && item.type === 'function_call' && item.call_id);
  }

  /** Input tokens of the latest finished turn on the path (the context meter). */
  contextTokens() {
    for (let i = this.path.length - 1; i >= 0; i--) {
      const usage = this.turns.get(this.path[i]).usage;
      if (usage && usage.input_tokens != null) return usage.input_tokens;
    }
    return null;
  }

  // -- live ----------------------------------------------------------------------------

  /** A turn the user just sent on the default lane, continuing `continues` (a resp_… or null). */
  startLocalTurn(items, { origin = 'user', continues = null } = {}) {
    const key = `l${++this.localCount}`;
    const turn = this.add({ key, parent: this.keyOf(continues), previousResponseId: continues, origin, status: 'sending' });
    this.addInputs(turn, items);
    this.active.set('', key);
    this.cut.delete('');
    this.selected = key;
    this.follow(() => this.render());
    return turn;
  }

  /** Steering text sent for the default lane's turn in flight: it shows on the successor it starts
   *  (as the records keep it); until then the turn says a steer is on its way. */
  addSteer(text) {
    const turn = this.turns.get(this.active.get(''));
    if (!turn) return;
    if (!this.steers.has('')) this.steers.set('', []);
    this.steers.get('').push(text);
    turn.view.note('steer', `Steering: “${text}”`);
  }

  /** The relay resent the lane's request (switchboard.recovered): one turn, with a note. The upstream
   *  close that came first (the 60-minute limit) had cut that turn off: it is the one resent. */
  recovered(event) {
    const lane = event.stream_id || '';
    let turn = this.turns.get(this.active.get(lane));
    const cut = this.turns.get(this.cut.get(lane));
    this.cut.delete(lane);
    if (!turn && cut?.status === 'interrupted' && !cut.responseId) {
      turn = cut;
      turn.status = 'sending';
      this.active.set(lane, turn.key);
      this.touch(turn);
      this.render();
    }
    if (!turn) return null;
    turn.recovered = true;
    turn.recoveredReason = turn.recoveredReason || (event.reason === 'new_upstream_socket' ? null : event.reason);
    turn.view.notes.querySelector('.note[data-kind="retrying"]')?.remove();
    this.decorate(turn);
    return turn;
  }

  /** The relay waits before resending the lane's request (switchboard.retrying): said on the turn. */
  retrying(event) {
    const turn = this.turns.get(this.active.get(event.stream_id || ''));
    if (!turn) return;
    turn.recoveredReason = turn.recoveredReason || event.reason;
    turn.view.note('retrying', `Rate limited by the upstream: retrying in ${event.retry_in} s `
      + `(attempt ${event.attempt} of ${event.of}).`);
  }

  /** Ends the lane's turn as `status` without a terminal event (the upstream socket died, Stop). */
  abandon(lane, status) {
    const turn = this.turns.get(this.active.get(lane));
    if (!turn) return null;
    turn.status = status;
    this.active.delete(lane);
    if (status === 'interrupted') this.cut.set(lane, turn.key);
    for (const item of turn.view.items.values()) item.flush();  // the text it had is the text it keeps
    this.touch(turn);
    this.decorate(turn);
    this.onChange();
    return turn;
  }

  inFlight(lane = '') {
    return this.turns.get(this.active.get(lane)) || null;
  }

  apply(event) {
    this.follow(() => this.route(event));
  }

  route(event) {
    const lane = event.stream_id || '';
    const type = event.type;
    if (type === 'error') return this.error(lane, event);
    if (type.startsWith('response.steer.')) return this.steerReply(event);
    if (type === 'response.created' || type === 'response.queued' || type === 'response.in_progress') {
      return this.started(lane, event.response || {}, type === 'response.queued' ? 'queued' : 'in_progress');
    }
    const turn = this.turns.get(this.keyOf(event.response?.id)) || this.turns.get(this.active.get(lane));
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
    let turn = this.turns.get(this.keyOf(response.id)) || this.turns.get(this.active.get(lane));
    if (turn && turn.responseId && response.id && turn.responseId !== response.id) turn = null;
    if (!turn) {
      // Sent by another tab or client, or a steered successor: a turn with no input shown.
      const continues = response.previous_response_id || null;
      const steering = this.steered.has(lane) ? this.steers.get(lane) || [] : [];
      turn = this.add({ key: `l${++this.localCount}`, parent: this.keyOf(continues), previousResponseId: continues,
        lane, origin: this.steered.has(lane) ? 'steer' : 'user', status });
      this.addInputs(turn, steering.map((text) => ({ type: 'message', role: 'user', content: text })),
        { steer: true });
      this.steered.delete(lane);
      this.steers.delete(lane);
      this.turns.get(turn.parent)?.view.notes.querySelector('.note[data-kind="steer"]')?.remove();
      if (!lane && this.path.includes(turn.parent)) this.selected = turn.key;
    }
    this.active.set(lane, turn.key);
    turn.responseId = response.id || turn.responseId;
    turn.model = response.model || turn.model;
    turn.status = status;
    turn.firstEventAt = turn.firstEventAt || Date.now();
    this.touch(turn);
    this.render();
    return turn;
  }

  finished(lane, turn, response) {
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
    if (this.active.get(lane) === turn.key) this.active.delete(lane);
    this.touch(turn);
    this.render();
    return turn;
  }

  error(lane, event) {
    let turn = this.turns.get(this.active.get(lane));
    if (!turn) {
      turn = this.add({ key: `l${++this.localCount}`, lane, status: 'failed' });
      if (!lane) this.selected = turn.key;
    }
    turn.status = 'failed';
    turn.error = event.error || { code: 'error' };
    this.active.delete(lane);
    this.touch(turn);
    this.render();
    return turn;
  }

  /** Steer replies are passing feedback (the successor, or nothing, is what the records keep). */
  steerReply(event) {
    const lane = event.stream_id || '';
    const turn = this.turns.get(this.active.get(lane)) || this.turns.get(this.keyOf(event.steer?.previous_response_id));
    const kind = event.type.slice('response.steer.'.length);
    if (kind === 'failed') {
      this.steers.get(lane)?.pop();
      turn?.view.notes.querySelector('.note[data-kind="steer"]')?.remove();
      this.onSteer('failed', event.error);
    } else {
      turn?.view.note('steer', kind === 'accepted' ? 'Steer accepted: the reply restarts with it.'
        : 'Steer waiting for the tool output.');
      this.onSteer(kind, null);
    }
  }

  /** Runs `change`, then keeps the page pinned to the end if the reader was already there. */
  follow(change) {
    const atEnd = window.innerHeight + window.scrollY >= document.body.scrollHeight - 80;
    const result = change();
    if (atEnd) this.scrollToEnd();
    return result;
  }

  scrollToEnd() {
    window.scrollTo(0, document.body.scrollHeight);
  }
}
