// One turn of the transcript (a response, with the input that asked for it) and its items.
'use strict';

// Rules: user text, tool arguments, error messages and ids reach the DOM through textContent only;
// assistant text goes through markdown.js (rendered, then sanitised). The same TurnView draws a turn
// from the records (switchboard.history) and from live events, so a reload shows what was streamed.

import { explain } from './errors.js';
import { copyText, MarkdownBlock } from './markdown.js';

export const STATUS_LABELS = {
  sending: 'Sending', queued: 'Queued', in_progress: 'Responding', completed: 'Completed',
  incomplete: 'Stopped early', failed: 'Failed', cancelled: 'Stopped', interrupted: 'Interrupted',
};
const ORIGIN_LABELS = {
  tool_output: 'Tool output', fork: 'Edited', recovery_replay: 'Recovered', steer: 'Steered', warmup: 'Warm-up',
};
const INCOMPLETE_NOTES = {
  max_output_tokens: 'Stopped early: the reply reached its length limit (max_output_tokens).',
  content_filter: 'Stopped early: the content filter ended the reply.',
  max_messages: 'Stopped early: the message limit was reached.',
  steered: 'Steered: the reply was ended to take the new instructions; it continues below.',
};
/** What a turn the relay resent or replayed reads as (null: it was sent once, as asked). An edit is a branch
 *  (origin `fork`): the upstream keeps only its latest response, so a branch from an older one is always
 *  replayed from the records; that is how an edit works, no recovery. The rest are recoveries: the 60-minute
 *  limit, a dropped or new upstream socket, a lost cache; `retried` after a rate limit. Live and after a reload
 *  alike (history.js gives a replayed turn the origin it was sent with). */
export function replayKind(turn) {
  if (!turn?.recovered) return null;
  const reason = turn.recoveredReason || null;
  if (reason === 'rate_limit_exceeded') return 'retried';
  if (turn.origin === 'fork' && (!reason || reason === 'previous_response_not_found')) return 'edit';
  return 'recovered';
}

/** The note of a turn the relay resent, by why it first had to (docs/protocol.md §3). */
export function recoveredNote(turn) {
  const kind = replayKind(turn);
  if (kind === 'retried') return 'Retried: the upstream was rate limiting; sent again after a pause.';
  if (kind === 'edit') {
    return 'Replayed: the upstream keeps only its latest response, so this branch’s context was sent from the records.';
  }
  if (turn.recoveredReason === 'websocket_connection_limit_reached') {
    return 'Recovered: the upstream connection reached its time limit; resent on a new one.';
  }
  return 'Recovered: the upstream had lost the context; replayed from the records.';
}

export function el(tag, className = '', text = null) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== null && text !== undefined) node.textContent = String(text);
  return node;
}

function button(label, className, title = '') {
  const node = el('button', className, label);
  node.type = 'button';
  if (title) node.title = title;
  return node;
}

/** Text of a content value: a string, or a list of parts (input_text, output_text, refusal…). */
export function partsText(content) {
  if (typeof content === 'string') return content;
  if (!Array.isArray(content)) return '';
  return content.map((part) => {
    if (!part || typeof part !== 'object') return '';
    if (part.type === 'refusal') return part.refusal || '';
    return typeof part.text === 'string' ? part.text : '';
  }).join('');
}

export function usageText(usage) {
  if (!usage || usage.total_tokens === undefined || usage.total_tokens === null) return '';
  const cached = usage.cached_input_tokens ?? usage.input_tokens_details?.cached_tokens ?? 0;
  return `${usage.input_tokens} in (${cached} cached) · ${usage.output_tokens} out · ${usage.total_tokens} total`;
}

function pretty(json) {
  try {
    return JSON.stringify(JSON.parse(json), null, 2);
  } catch (error) {
    return json;  // still streaming, or not JSON: shown as it is
  }
}

function itemKind(item) {
  if (typeof item === 'string') return 'message';
  return item.type || (item.role ? 'message' : 'other');
}

/** One item of a turn (a message, a function call, its output, reasoning, a compaction…). */
export class ItemView {
  constructor(item, direction) {
    if (typeof item === 'string') item = { type: 'message', role: 'user', content: item };
    this.kind = itemKind(item);
    this.direction = direction;
    this.item = item;
    this.id = item.id || null;
    this.parts = new Map();
    this.el = el('div', `item ${direction} ${this.kind}`);
    if (this.id) this.el.dataset.itemId = this.id;
    this.who = el('span', 'who');
    this.el.append(this.who);
    this.render(item);
  }

  get markdown() {
    return this.kind === 'message' && this.direction === 'output';
  }

  render(item) {
    switch (this.kind) {
      case 'message':
        this.who.textContent = item.role || (this.direction === 'input' ? 'user' : 'assistant');
        this.setText(0, partsText(item.content));
        break;
      case 'function_call':
      case 'custom_tool_call':
        this.who.textContent = 'function call';
        this.name = el('span', 'call-name', item.name || '');
        this.callId = el('code', 'call-id', item.call_id || '');
        this.args = el('pre', 'call-arguments', pretty(item.arguments ?? item.input ?? ''));
        this.el.append(this.name, ' ', this.callId, this.args);
        break;
      case 'function_call_output':
      case 'custom_tool_call_output':
        this.who.textContent = 'function output';
        if (item.call_id) this.el.append(el('code', 'call-id', item.call_id));
        this.el.append(el('pre', 'call-output', partsText(item.output)));
        break;
      case 'reasoning': {
        this.who.textContent = 'reasoning';
        (item.summary || []).forEach((part, index) => this.setText(index, partsText([part])));
        break;
      }
      case 'compaction':
        this.who.textContent = 'context compacted';
        this.el.classList.add('divider');
        this.marker = el('p', 'marker', item.encrypted_content ? 'Context compacted' : 'Compacting context…');
        this.el.append(this.marker);
        break;
      default:
        this.who.textContent = this.kind;
        this.el.append(el('pre', 'raw', JSON.stringify(item, null, 2)));
    }
  }

  /** The block for content part / summary `index`, created on first use. */
  part(index) {
    if (!this.parts.has(index)) {
      const block = el('div', 'text');
      this.parts.set(index, this.markdown ? new MarkdownBlock(block) : { el: block, text: '' });
      this.el.append(block);
    }
    return this.parts.get(index);
  }

  appendText(index, delta) {
    const part = this.part(index ?? 0);
    if (part instanceof MarkdownBlock) part.append(delta || '');
    else { part.text += delta || ''; part.el.append(document.createTextNode(delta || '')); }
  }

  setText(index, text) {
    const part = this.part(index ?? 0);
    if (part instanceof MarkdownBlock) part.set(text || '');
    else { part.text = text || ''; part.el.textContent = text || ''; }
  }

  get text() {
    return [...this.parts.values()].map((part) => part.text).join('\n\n');
  }

  /** Renders what is still waiting for the next animation frame, so the DOM is final now. */
  flush() {
    for (const part of this.parts.values()) if (part instanceof MarkdownBlock && part.frame) part.flush();
  }

  appendArguments(delta) {
    if (this.args) this.args.append(document.createTextNode(delta || ''));
  }

  /** The item as it finally is (output_item.done or the terminal response): the truth wins. */
  finish(item) {
    this.item = item;
    if (this.kind === 'message') {
      if (typeof item.content === 'string') this.setText(0, item.content);
      else (item.content || []).forEach((part, index) => this.setText(index, partsText([part])));
    } else if ((this.kind === 'function_call' || this.kind === 'custom_tool_call') && this.args) {
      this.name.textContent = item.name || this.name.textContent;
      this.callId.textContent = item.call_id || this.callId.textContent;
      this.args.textContent = pretty(item.arguments ?? item.input ?? this.args.textContent);
    } else if (this.kind === 'reasoning') {
      (item.summary || []).forEach((part, index) => this.setText(index, partsText([part])));
    } else if (this.kind === 'compaction' && this.marker && !this.figures) {
      this.marker.textContent = 'Context compacted';
    }
    this.el.classList.add('done');
  }

  /** A compaction divider's figures: tokens before → after, items replaced. */
  setFigures({ before = null, after = null, replaced = null } = {}) {
    if (!this.marker) return;
    this.figures = true;
    const parts = ['Context compacted'];
    if (replaced) parts.push(`${replaced} item${replaced === 1 ? '' : 's'} replaced`);
    if (before !== null && before !== undefined) {
      parts.push(after !== null && after !== undefined ? `${before} → ${after} tokens` : `${before} tokens before`);
    }
    this.marker.textContent = parts.join(' · ');
  }
}

function timeOf(iso) {
  const time = el('time', 'sent-at');
  time.dataset.from = iso || '';
  if (!iso) return time;
  const moment = new Date(iso);
  time.dateTime = moment.toISOString();
  time.textContent = moment.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
  time.title = moment.toLocaleString();
  return time;
}

/** One turn: the input that asked, the response's output, notes, and its details and actions. */
export class TurnView {
  constructor(turn) {
    this.turn = turn;  // the controller's record of it (transcript.js)
    this.items = new Map();
    this.el = el('article', 'turn');
    this.el.dataset.key = turn.key;
    this.inputs = el('div', 'turn-inputs');
    this.outputs = el('div', 'turn-outputs');
    this.notes = el('div', 'turn-notes');
    this.meta = el('footer', 'turn-meta');
    this.statusEl = el('span', 'status');
    this.originEl = el('span', 'badge origin');
    this.timeEl = timeOf(turn.sentAt);
    this.usageEl = el('span', 'usage');
    this.actions = el('span', 'turn-actions');
    this.details = el('details', 'turn-details');
    const summary = el('summary', '', 'Details');
    this.detailBody = el('div', 'detail-body');
    this.details.append(summary, this.detailBody);
    this.meta.append(this.statusEl, this.originEl, this.timeEl, this.usageEl, this.actions, this.details);
    this.el.append(this.inputs, this.outputs, this.notes, this.meta);
    this.noted = new Set();
    this.refresh();
  }

  /** Header, badges and details from the turn's current state. */
  refresh() {
    const turn = this.turn;
    this.el.className = `turn ${turn.status}`;
    this.el.dataset.responseId = turn.responseId || '';
    this.el.id = turn.responseId ? `turn-${turn.responseId}` : '';
    this.statusEl.className = `status ${turn.status}`;
    this.statusEl.textContent = STATUS_LABELS[turn.status] || turn.status;
    this.statusEl.hidden = turn.status === 'completed';
    const replay = replayKind(turn);
    const origin = replay === 'edit' ? 'fork' : replay ? 'recovery_replay' : turn.origin;
    this.originEl.textContent = ORIGIN_LABELS[origin] || '';
    this.originEl.hidden = !ORIGIN_LABELS[origin];
    if (turn.lane) this.originEl.textContent = `lane ${turn.lane}${this.originEl.hidden ? '' : ` · ${this.originEl.textContent}`}`;
    if (turn.lane) this.originEl.hidden = false;
    if ((turn.sentAt || '') !== this.timeEl.dataset.from) this.timeEl.replaceWith(this.timeEl = timeOf(turn.sentAt));
    this.usageEl.textContent = usageText(turn.usage);
    this.usageEl.title = 'input tokens (cached) · output tokens · total';
    this.renderDetails();
  }

  renderDetails() {
    const turn = this.turn;
    const rows = [['Response', turn.responseId || '(not created)'], ['Model', turn.model || ''],
      ['First token', turn.ttftMs != null ? `${turn.ttftMs} ms after sending` : ''],
      ['Lane', turn.lane || 'default'], ['Continues', turn.previousResponseId || '(start of a chain)']];
    const list = el('dl');
    for (const [name, value] of rows) {
      if (!value) continue;
      list.append(el('dt', '', name), el('dd', '', value));
    }
    const copy = button('Copy id', 'link copy-id', 'Copy the response id');
    copy.disabled = !turn.responseId;
    copy.addEventListener('click', () => copyText(copy, turn.responseId || ''));
    this.detailBody.replaceChildren(list, copy);
  }

  addInput(item, { editable = false, steer = false } = {}) {
    const view = new ItemView(item, 'input');
    if (steer) view.who.textContent = 'user · steer';
    if (editable && view.kind === 'message' && (view.item.role || 'user') === 'user') {
      const edit = button('Edit', 'link edit', 'Edit this message: the conversation branches from before it');
      edit.dataset.text = view.text;
      view.who.after(edit);
    }
    this.inputs.append(view.el);
    return view;
  }

  /** The live item an event refers to, by item_id, else by output_index. */
  item(event) {
    return this.items.get(event.item_id) || this.items.get(`#${event.output_index}`) || null;
  }

  outputItem(item, outputIndex) {
    const existing = (item.id && this.items.get(item.id)) || this.items.get(`#${outputIndex}`);
    if (existing) return existing;
    const view = new ItemView(item, 'output');
    this.outputs.append(view.el);
    if (view.id) this.items.set(view.id, view);
    this.items.set(`#${outputIndex}`, view);
    return view;
  }

  /** The assistant's text, for Copy and for the screen-reader announcement. */
  get replyText() {
    return [...new Set(this.items.values())].filter((view) => view.markdown).map((view) => view.text).join('\n\n');
  }

  showError(error) {
    this.notes.querySelector('.item.error')?.remove();
    if (!error) return;
    const words = explain(error);
    const box = el('div', 'item error');
    box.setAttribute('role', 'alert');
    box.append(el('span', 'who', 'error'), el('p', 'summary', words.summary), el('p', 'advice', words.advice),
      el('code', 'detail', words.detail));
    this.notes.prepend(box);
  }

  /** A note shown once per kind ("recovered", "stopped", a steer reply…). */
  note(kind, text) {
    let node = this.notes.querySelector(`.note[data-kind="${kind}"]`);
    if (!node) {
      node = el('p', 'note');
      node.dataset.kind = kind;
      this.notes.append(node);
    }
    node.textContent = text;
  }

  noteIncomplete(reason) {
    if (reason) this.note('incomplete', INCOMPLETE_NOTES[reason] || `Stopped early: ${reason}.`);
  }

  /** The action buttons that fit the turn now (the controller handles their clicks by data-action). */
  setActions(actions) {
    const nodes = actions.map(([action, label, title]) => {
      const node = button(label, `link action-${action}`, title);
      node.dataset.action = action;
      node.dataset.key = this.turn.key;
      return node;
    });
    const copy = button('Copy', 'link copy-reply', 'Copy the reply');
    copy.addEventListener('click', () => copyText(copy, this.replyText));
    copy.hidden = !this.replyText;
    this.actions.replaceChildren(...nodes, copy);
  }

  /** The switcher "‹ 2 / 3 ›" among the turns that continue the same parent (edits, retries, forks). */
  setSwitcher(index, count) {
    this.el.querySelector('.switcher')?.remove();
    if (count < 2) return;
    const nav = el('nav', 'switcher');
    nav.setAttribute('aria-label', 'Versions of this turn');
    const previous = button('‹', 'link switch', 'Previous version');
    previous.dataset.switch = '-1';
    previous.disabled = index === 0;
    previous.setAttribute('aria-label', 'Previous version');
    const next = button('›', 'link switch', 'Next version');
    next.dataset.switch = '1';
    next.disabled = index === count - 1;
    next.setAttribute('aria-label', 'Next version');
    nav.dataset.key = this.turn.key;
    nav.append(previous, el('span', 'position', `${index + 1} / ${count}`), next);
    this.inputs.prepend(nav);
  }
}

/** The divider a standalone compaction (Compact now) leaves after the turn it compacted. `context`: the
 *  items in context there, counted along the path, when the record does not say. */
export function standaloneDivider(compaction, context) {
  const box = el('div', 'item divider standalone-compaction');
  box.append(el('span', 'who', 'context compacted'));
  const replaced = compaction.items_replaced || context;
  const figures = [`Compacted on request · ${replaced} item${replaced === 1 ? '' : 's'} replaced`];
  if (compaction.input_tokens_before != null) {
    figures.push(`${compaction.input_tokens_before} → ${compaction.tokens_after ?? '?'} tokens`);
  }
  box.append(el('p', 'marker', figures.join(' · ')));
  return box;
}
