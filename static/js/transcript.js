// The transcript: renders recorded turns and live Responses events into #transcript, text only.
'use strict';

// Rules: model and user text reach the DOM through textContent / text nodes only, never
// innerHTML. The markup mirrors templates/sessions_app/partials/turn.html so server-rendered
// and live turns look alike. Live events are routed by lane (stream_id, '' = default lane)
// to the turn in flight there, and by item_id (or output_index) to the item they extend.

const STATUS_LABELS = {
  sending: 'Sending', queued: 'Queued', in_progress: 'In progress', completed: 'Completed',
  incomplete: 'Incomplete', failed: 'Failed', cancelled: 'Cancelled', interrupted: 'Interrupted (socket died)',
};
const ORIGIN_LABELS = {
  user: 'User message', tool_output: 'Tool output', fork: 'Fork', recovery_replay: 'Recovery replay',
  steer: 'Steered successor', warmup: 'Warm-up (generate: false)',
};
const TERMINAL = new Set(['response.completed', 'response.failed', 'response.incomplete']);

function el(tag, className = '', text = null) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== null && text !== undefined) node.textContent = String(text);
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

function errorText(error) {
  if (!error) return 'Unknown error';
  const code = error.code || error.type || 'error';
  return error.message ? `${code}: ${error.message}` : code;
}

function itemKind(item) {
  if (typeof item === 'string') return 'message';
  return item.type || (item.role ? 'message' : 'other');
}

/** One item of a turn (a message, a function call, its output, reasoning, a compaction…). */
class ItemView {
  constructor(item, direction) {
    if (typeof item === 'string') item = { type: 'message', role: 'user', content: item };
    this.kind = itemKind(item);
    this.id = item.id || null;
    this.parts = new Map();
    this.el = el('div', `item ${direction} ${this.kind}`);
    if (this.id) this.el.dataset.itemId = this.id;
    this.who = el('span', 'who');
    this.el.append(this.who);
    this.render(item, direction);
  }

  render(item, direction) {
    switch (this.kind) {
      case 'message':
        this.who.textContent = item.role || (direction === 'input' ? 'user' : 'assistant');
        this.setText(0, partsText(item.content));
        break;
      case 'function_call':
      case 'custom_tool_call': {
        this.who.textContent = 'function call';
        const code = el('code', 'call');
        this.name = el('span', 'call-name', item.name || '');
        this.args = el('span', 'call-arguments', item.arguments ?? item.input ?? '');
        code.append(this.name, '(', this.args, ')');
        this.el.append(code);
        if (item.call_id) this.el.append(' ', el('span', 'badge call-id', item.call_id));
        break;
      }
      case 'function_call_output':
      case 'custom_tool_call_output':
        this.who.textContent = item.call_id ? `function output · ${item.call_id}` : 'function output';
        this.el.append(el('pre', 'call-output', partsText(item.output)));
        break;
      case 'reasoning':
        this.who.textContent = 'reasoning';
        (item.summary || []).forEach((part, index) => this.setText(index, partsText([part])));
        break;
      case 'compaction':
        this.who.textContent = 'compaction';
        this.marker = el('p', 'marker', item.encrypted_content ? 'Context compacted' : 'Compacting context…');
        this.el.append(this.marker);
        break;
      default:
        this.who.textContent = this.kind;
        this.el.append(el('pre', 'raw', JSON.stringify(item, null, 2)));
    }
  }

  /** The paragraph for content part / summary `index`, created on first use. */
  part(index) {
    if (!this.parts.has(index)) {
      const paragraph = el('p');
      this.parts.set(index, paragraph);
      this.el.append(paragraph);
    }
    return this.parts.get(index);
  }

  appendText(index, delta) {
    this.part(index ?? 0).append(document.createTextNode(delta || ''));
  }

  setText(index, text) {
    this.part(index ?? 0).textContent = text || '';
  }

  appendArguments(delta) {
    if (this.args) this.args.append(document.createTextNode(delta || ''));
  }

  /** The item as it finally is (output_item.done or the terminal response): the truth wins. */
  finish(item) {
    if (this.kind === 'message') {
      if (typeof item.content === 'string') this.setText(0, item.content);
      else (item.content || []).forEach((part, index) => this.setText(index, partsText([part])));
    } else if ((this.kind === 'function_call' || this.kind === 'custom_tool_call') && this.args) {
      this.name.textContent = item.name || this.name.textContent;
      this.args.textContent = item.arguments ?? item.input ?? this.args.textContent;
    } else if (this.kind === 'reasoning') {
      (item.summary || []).forEach((part, index) => this.setText(index, partsText([part])));
    } else if (this.kind === 'compaction' && this.marker) {
      this.marker.textContent = 'Context compacted';
    }
    this.el.classList.add('done');
  }
}

/** One response: header (id, lane, origin, status, usage), its input items, its output items. */
class TurnView {
  constructor({ responseId = null, lane = '', origin = 'user', status = 'in_progress', continues = null } = {}) {
    this.items = new Map();
    this.continues = continues || null;  // the response this one continues (its parent), if any
    this.el = el('article', 'turn');
    const header = el('header');
    this.idEl = el('code', 'response-id');
    this.statusEl = el('span', 'status');
    this.usageEl = el('span', 'usage');
    header.append(this.idEl);
    this.lane = lane;
    if (lane) header.append(el('span', 'badge lane', `lane ${lane}`));
    header.append(el('span', 'badge origin', ORIGIN_LABELS[origin] || origin), this.statusEl, this.usageEl);
    this.el.append(header);
    this.setResponseId(responseId);
    this.setStatus(status);
  }

  setResponseId(responseId) {
    this.responseId = responseId || null;
    this.idEl.textContent = responseId || '(not created)';
    this.el.dataset.responseId = responseId || '';
  }

  setStatus(status) {
    this.status = status;
    this.el.className = `turn ${status}`;
    this.statusEl.className = `status ${status}`;
    this.statusEl.textContent = STATUS_LABELS[status] || status;
  }

  setUsage(usage) {
    this.usageEl.textContent = usageText(usage);
    this.usageEl.title = 'input / cached / output / reasoning';
  }

  addItem(item, direction, key = null) {
    const view = new ItemView(item, direction);
    this.el.append(view.el);
    const itemKey = key ?? view.id;
    if (itemKey) this.items.set(itemKey, view);
    return view;
  }

  /** The live item an event refers to, by item_id, else by output_index. */
  item(event) {
    return this.items.get(event.item_id) || this.items.get(`#${event.output_index}`) || null;
  }

  outputItem(item, outputIndex) {
    const existing = (item.id && this.items.get(item.id)) || this.items.get(`#${outputIndex}`);
    if (existing) return existing;
    const view = this.addItem(item, 'output');
    this.items.set(`#${outputIndex}`, view);
    return view;
  }

  addError(error, label = 'error') {
    const box = el('div', 'item error');
    box.append(el('span', 'who', label), el('p', '', errorText(error)));
    this.el.append(box);
  }

  addNote(text) {
    this.el.append(el('p', 'note', text));
  }

  /** The terminal response: status, usage, and any output item the stream did not show. */
  finish(response) {
    this.setResponseId(response.id || this.responseId);
    this.setStatus(response.status || 'completed');
    this.setUsage(response.usage);
    (response.output || []).forEach((item, index) => this.outputItem(item, index).finish(item));
    if (response.error) this.addError(response.error);
    if (response.incomplete_details?.reason) this.addNote(`Stopped early: ${response.incomplete_details.reason}`);
  }
}

export class Transcript {
  constructor(root) {
    this.root = root;
    this.editable = false;  // user messages get an Edit button (forks from before them)
    this.active = new Map();  // lane -> TurnView in flight (or sent and awaiting response.created)
    this.turns = new Map();  // response id -> TurnView, for late terminal events
    this.steered = new Set();  // lanes whose last response ended 'steered': a successor follows
  }

  /** Replaces the server-rendered turns with the recorded history (switchboard.history). */
  renderHistory(responses) {
    this.active.clear();
    this.turns.clear();
    const turns = (responses || []).map((record) => {
      const turn = new TurnView({
        responseId: record.response_id, lane: record.stream_id || '', origin: record.origin || 'user',
        status: record.status || 'completed', continues: record.parent_response_id ?? record.previous_response_id,
      });
      (record.input_items || []).forEach((item) => this.addInput(turn, item));
      (record.output_items || []).forEach((item, index) => {
        turn.outputItem(item, index).finish(item);
      });
      turn.setUsage(record.usage);
      if (record.response_id) this.turns.set(record.response_id, turn);
      if (record.error) turn.addError(record.error);
      if (record.status === 'in_progress' || record.status === 'queued') this.active.set(record.stream_id || '', turn);
      return turn.el;
    });
    if (turns.length) {
      this.root.replaceChildren(...turns);
    } else {
      this.root.replaceChildren(el('p', 'empty', 'No turns yet.'));
    }
    this.scrollToEnd();
  }

  /** A turn the user just sent on the default lane; live events attach to it. */
  startLocalTurn(items, origin = 'user', continues = null) {
    return this.follow(() => {
      const turn = new TurnView({ origin, status: 'sending', continues });
      items.forEach((item) => this.addInput(turn, item));
      this.append(turn);
      this.active.set('', turn);
      return turn;
    });
  }

  /** An input item; a user message on the default lane can be edited, which forks the chain before it. */
  addInput(turn, item) {
    const view = turn.addItem(item, 'input');
    const isUserMessage = view.kind === 'message' && (typeof item === 'string' || (item.role || 'user') === 'user');
    if (this.editable && isUserMessage && !turn.lane) {
      const button = el('button', 'link edit', 'Edit');
      button.type = 'button';
      button.title = 'Edit this message: the conversation forks from before it';
      button.dataset.continues = turn.continues || '';
      button.dataset.text = typeof item === 'string' ? item : partsText(item.content);
      view.who.after(button);
    }
    return view;
  }

  /** Steering text, shown on the default lane's turn in flight. */
  addSteer(text) {
    this.follow(() => {
      const turn = this.active.get('');
      if (!turn) return;
      turn.addItem({ type: 'message', role: 'user', content: text }, 'input').who.textContent = 'user · steer';
    });
  }

  notice(text, kind = 'info') {
    this.follow(() => this.root.append(el('p', `notice ${kind}`, text)));
  }

  /** Ends the lane's turn as `status` without a terminal event (e.g. the upstream socket died). */
  abandon(lane, status) {
    const turn = this.active.get(lane);
    if (!turn) return;
    turn.setStatus(status);
    this.active.delete(lane);
  }

  append(turn) {
    this.root.querySelector(':scope > .empty')?.remove();
    this.root.append(turn.el);
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
    const turn = this.turns.get(event.response?.id) || this.active.get(lane);
    if (!turn) return undefined;
    if (TERMINAL.has(type)) {
      turn.finish(event.response || {});
      if (event.response?.incomplete_details?.reason === 'steered') this.steered.add(lane);
      if (this.active.get(lane) === turn) this.active.delete(lane);
      return undefined;
    }
    switch (type) {
      case 'response.output_item.added':
        return turn.outputItem(event.item || {}, event.output_index);
      case 'response.output_item.done':
        return turn.outputItem(event.item || {}, event.output_index).finish(event.item || {});
      case 'response.output_text.delta':
      case 'response.refusal.delta':
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
    const existing = turn.item(event);
    if (existing) return existing;
    const stub = { id: event.item_id, type: kind, role: kind === 'message' ? 'assistant' : undefined };
    return turn.outputItem(stub, event.output_index);
  }

  started(lane, response, status) {
    let turn = this.active.get(lane);
    if (turn && turn.responseId && response.id && turn.responseId !== response.id) turn = null;
    if (!turn) {
      // Sent by another tab or client, or a steered successor: a turn with no input shown.
      turn = new TurnView({ lane, origin: this.steered.has(lane) ? 'steer' : 'user' });
      this.steered.delete(lane);
      this.append(turn);
      this.active.set(lane, turn);
    }
    if (response.id) {
      turn.setResponseId(response.id);
      this.turns.set(response.id, turn);
    }
    turn.setStatus(status);
    return turn;
  }

  error(lane, event) {
    const turn = this.active.get(lane);
    if (turn) {
      turn.addError(event.error);
      turn.setStatus('failed');
      this.active.delete(lane);
    } else {
      const box = new TurnView({ lane, origin: 'user', status: 'failed' });
      box.addError(event.error);
      this.append(box);
    }
  }

  steerReply(event) {
    const turn = this.active.get(event.stream_id || '');
    const kind = event.type.slice('response.steer.'.length);
    if (kind === 'failed') {
      if (turn) turn.addError(event.error, 'steer failed');
      else this.root.append(el('p', 'notice error', `Steer failed: ${errorText(event.error)}`));
    } else if (turn) {
      turn.addNote(kind === 'accepted' ? 'Steer accepted' : `Steer pending: ${event.reason || ''}`);
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
