// The transcript: the conversation as a tree of turns, showing one branch (root to leaf) at a time.
'use strict';

// Rules:
// * Every turn is keyed: `r<pk>` from the records, `l<n>` for one started live (until the records
//   name it: a reload then keys it by its record). Live events and which turn is in flight on each
//   lane are live.js's; this module draws what they built.
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
  constructor(root, { onChange = () => {} } = {}) {
    this.root = root;
    this.onChange = onChange;
    this.editable = false;
    this.tree = new ConversationTree();
    this.turns = new Map();       // key -> turn
    this.selected = null;         // the key the shown path runs through (null: the default path)
    this.standalone = new Map();  // key -> standalone compaction figures after that turn
    this.path = [];
  }

  // -- building turns ------------------------------------------------------------------

  turn(key) {
    return this.turns.get(key) || null;
  }

  keyOf(responseId) {
    return responseId ? this.tree.keyOf(responseId) : null;
  }

  /** A new turn from `fields`. `local`: sent from this tab; `requested`: its switchboard.request came (or none
   *  will: live.js matches each request to the first turn of its lane still waiting for one). */
  add(fields) {
    const turn = {
      key: fields.key, record: null, responseId: null, previousResponseId: null, parent: null, supersedes: null,
      lane: '', origin: 'user', status: 'sending', usage: null, error: null, incompleteReason: null,
      sentAt: new Date().toISOString(), ttftMs: null, model: '', recovered: false, inputs: [], outputs: [],
      activity: Date.now(), local: false, requested: false, ...fields,
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

  /** Replaces the transcript with the records (switchboard.history); `select`: a resp_… to show.
   *  `pending`: a message sent but not yet answered (no response.created), which a history built just
   *  before its record was may miss: it stays, as the default lane's turn in flight, unless the history
   *  has one. Returns lane -> key of the turn in flight there. */
  renderHistory(history, { select = null, pending = null } = {}) {
    this.tree = new ConversationTree();
    this.turns.clear();
    this.standalone.clear();
    const lanes = new Map();
    const { turns, standalone } = turnsFromHistory(history);
    for (const { fields, inputs, outputs, steer, inFlight } of turns) {
      const turn = this.add(fields);
      this.addInputs(turn, inputs, { steer });
      outputs.forEach((item, index) => {
        turn.outputs[index] = item;
        turn.view.outputItem(item, index).finish(item);
      });
      if (inFlight) lanes.set(turn.lane, turn.key);
    }
    this.standalone = standalone;
    let chosen = select ? this.keyOf(select) : null;
    if (pending && !lanes.has('')) {
      const turn = this.add({ key: pending.key, previousResponseId: pending.previousResponseId, origin: pending.origin,
        parent: this.keyOf(pending.previousResponseId), sentAt: pending.sentAt, status: 'sending',
        local: pending.local, requested: pending.requested });
      this.addInputs(turn, pending.inputs);
      lanes.set('', turn.key);
      chosen = chosen || turn.key;
    }
    this.selected = chosen;
    this.render();
    if (chosen) this.reveal(chosen);
    else this.scrollToEnd();
    return lanes;
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
    if (turn.recovered) view.note('recovered', recoveredNote(turn));
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

  /** The context meter's reading: input tokens of the latest finished turn on the path (null: none yet), and
   *  whether that turn compacted its context (server-side, or Compact now after it): {before, after} then, the
   *  tokens after known only for a standalone compaction (the next turn's input tokens tell the rest). */
  context() {
    for (let i = this.path.length - 1; i >= 0; i--) {
      const turn = this.lastAttempt(this.turns.get(this.path[i]));
      const tokens = turn.usage?.input_tokens;
      if (tokens == null) continue;
      const standalone = this.standalone.get(this.path[i]);
      if (standalone) {
        return { tokens, compacted: { before: standalone.input_tokens_before ?? tokens, after: standalone.tokens_after ?? null } };
      }
      const compacted = turn.outputs.some((item) => item?.type === 'compaction');
      return { tokens, compacted: compacted ? { before: tokens, after: null } : null };
    }
    return { tokens: null, compacted: null };
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
