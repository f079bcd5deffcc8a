// The conversation page: wires the composer to the socket and the socket to the transcript.
'use strict';

import { Announcer, focusShortcut } from './announce.js';
import { ChainPanel } from './chain_panel.js';
import { compactNow } from './compact.js';
import { composerHint } from './composer_hint.js';
import { explain } from './errors.js';
import { recordedOrigin } from './history.js';
import { LiveTurns } from './live.js';
import { PageStatus } from './page_status.js';
import { ReconnectingSocket, socketUrl } from './socket.js';
import { ToolAnswers } from './tool_answers.js';
import { Transcript } from './transcript.js';
import { partsText } from './turns.js';

// Rules: the default lane carries one response at a time, so Send gives way to Stop from the moment
// a create is sent until that response ends; Enter meanwhile steers it. Each create continues the
// last finished turn of the branch on screen (transcript.js) via previous_response_id and carries only
// the new input; the relay adds model, store, instructions, tools and the other settings. While that
// turn waits on function calls, each call gets its own answer form and all outputs go in one create.
// A create sent elsewhere (another tab, the SDK through the gateway: switchboard.request) makes the lane
// busy here too: an owner tab may stop or steer it; a read-only viewer only watches.
// With a compaction threshold replies cannot be steered (composer_hint.js): Enter holds the message until
// the reply ends. A steer the upstream refused puts its text back.

const composer = document.getElementById('composer');
const input = document.getElementById('composer-input');
const sendButton = document.getElementById('send-button');
const steerButton = document.getElementById('steer-button');
const stopButton = document.getElementById('stop-button');
const hint = document.getElementById('composer-hint');
const compactButton = document.getElementById('compact-button');
const status = new PageStatus({
  connection: document.getElementById('connection-state'), badge: document.getElementById('conversation-status'),
  meter: document.getElementById('context-meter'),
});
const announcer = new Announcer(document.getElementById('announcer'));

const state = {
  readOnly: composer.dataset.readOnly === 'true',
  ready: false,            // switchboard.history received on the current socket
  busy: false,             // a default-lane response was sent and has not ended
  inFlightId: null,        // its response id, once response.created arrived
  fork: null,              // editing an earlier message: {continues: resp_… | null}
  lastSent: null,          // {items, continues}: the last create sent from here
  held: false,             // Enter while a reply streams that cannot be steered: send when it ends
};

const transcript = new Transcript(document.getElementById('transcript'), {
  onChange: () => {
    chain.update();
    answers.show(state.readOnly ? [] : pendingCalls());
    status.meter(transcript.context());
    updateControls();
  },
});
const live = new LiveTurns(transcript, {
  onSteer: (kind, error, text) => {
    if (kind !== 'failed') { hint.textContent = 'Steer accepted.'; return; }
    const back = Boolean(text) && !input.value.trim();  // as a failed turn does: the text goes back in the box
    if (back) input.value = text;
    hint.dataset.sticky = 'true';
    hint.textContent = `Steer not applied: ${explain(error).summary}${back ? ' Your text is back in the box.' : ''}`;
  },
});
const chain = new ChainPanel({
  panel: document.getElementById('chain-panel'), list: document.getElementById('chain-list'),
  toggle: document.getElementById('chain-toggle'), transcript,
});
const answers = new ToolAnswers(document.getElementById('tool-answers'), input, { onPlain: () => updateControls() });
const socket = new ReconnectingSocket(socketUrl(composer.dataset.socketPath), { onState: showConnection });

function showConnection(name, detail) {
  status.connection(name, detail);
  if (name !== 'open') state.ready = false;  // a new socket sends the history again
  updateControls();
}

function setBusy(busy, inFlightId = null) {
  state.busy = busy;
  state.inFlightId = busy ? inFlightId : null;
  updateControls();
}

/** A default-lane turn ended as `ended` (a status, or null: the badge waits for switchboard.status): busy
 *  while another one is in flight or waiting. */
function settle(ended) {
  const next = live.inFlight('');
  setBusy(Boolean(next), next?.responseId || null);
  status.status(next ? 'streaming' : ended);
  if (state.held && !state.busy) {  // a reply that ended well is followed by the message held for it
    state.held = false;
    if (ended === 'idle') send();
    else updateControls();
  }
}

const canSteer = () => !status.threshold;  // unless the conversation compacts automatically (see the rules)

function updateControls() {
  const usable = !state.readOnly && state.ready && socket.isOpen;
  const inFlight = live.inFlight('');
  input.disabled = state.readOnly;
  sendButton.hidden = state.busy && !state.readOnly;
  sendButton.disabled = !usable || state.busy;
  steerButton.hidden = state.readOnly || !state.busy || !canSteer();
  document.getElementById('steer-keys')?.toggleAttribute('hidden', !canSteer());  // "(steers while it replies)"
  steerButton.disabled = !usable || !state.inFlightId;
  stopButton.hidden = state.readOnly || !state.busy;
  stopButton.disabled = !usable;
  if (compactButton) compactButton.disabled = !usable || state.busy || !transcript.leaf();
  const words = composerHint({ ...state, elsewhere: Boolean(inFlight?.requested && !inFlight.local),
    started: Boolean(state.inFlightId), steerable: canSteer(), calls: pendingCalls().length, plain: answers.plain });
  if (words !== null && !(state.busy && !state.fork && hint.dataset.sticky)) hint.textContent = words;  // a notice of
  else if (!hint.dataset.sticky) hint.textContent = '';  // this reply (a refused steer) stays while it streams
}

// -- function calls: one answer form per pending call -------------------------------

function pendingCalls() {
  return state.fork ? [] : transcript.pendingCalls();
}

// -- sending ------------------------------------------------------------------------

function userMessage(text) {
  return { type: 'message', role: 'user', content: [{ type: 'input_text', text }] };
}

/** Send a create continuing `continues` (resp_… or null) with `items`; true if it left. */
function create(items, continues) {
  const parent = transcript.turn(transcript.keyOf(continues));
  const siblings = parent ? transcript.tree.children(transcript.tree.standing(parent.key)) : [];
  const origin = recordedOrigin(items, parent, siblings.map((key) => transcript.turn(key)));
  const frame = { type: 'response.create', input: items };
  if (continues) frame.previous_response_id = continues;
  if (!socket.send(frame)) {
    hint.textContent = 'Not connected: your message was kept.';
    return false;
  }
  state.lastSent = { items, continues };
  delete hint.dataset.sticky;  // an earlier notice gives way to this turn's
  live.startLocal(items, { origin, continues });
  setBusy(true, null);
  return true;
}

function send() {
  if (sendButton.disabled || state.busy) return;
  const text = input.value.trim();
  const calls = pendingCalls();
  let items;
  if (calls.length && !answers.plain) {
    items = answers.outputs();
    if (!items) return;
  } else if (!text) {
    return;
  } else if (calls.length) {
    items = calls.map((call) => ({ type: 'function_call_output', call_id: call.call_id, output: text }));
  } else {
    items = [userMessage(text)];
  }
  const continues = state.fork ? state.fork.continues : (transcript.leaf()?.responseId || null);
  if (!create(items, continues)) return;
  state.fork = null;
  input.value = '';
  answers.clear();
}

function steer() {
  const text = input.value.trim();
  if (!text) return;
  if (!canSteer()) {  // held, not lost: sent as the next message once the reply ends
    state.held = true;
    updateControls();
    return;
  }
  if (!state.inFlightId) {
    hint.textContent = 'Wait a moment: the reply has not started yet, so it cannot be steered.';
    return;
  }
  if (socket.send({ type: 'response.steer', previous_response_id: state.inFlightId, input: text })) {
    live.addSteer(text);
    hint.textContent = 'Steer sent…';
    input.value = '';
  }
}

/** Stop: the relay stops relaying the reply at once and answers switchboard.stopped; what arrived
 *  before that answer is what the records keep (docs/protocol.md), so the page shows exactly that. */
function stop() {
  if (!state.busy || state.readOnly) return;
  if (socket.send({ type: 'switchboard.stop', ...(state.inFlightId ? { response_id: state.inFlightId } : {}) })) {
    hint.textContent = 'Stopping…';
  }
}

function onStopped(event) {
  if (!event.stopped || event.stream_id) return;
  state.held = false;  // stopped: a held message stays in the box
  live.abandon('', 'cancelled');
  settle('idle');
  hint.dataset.sticky = 'true';
  hint.textContent = 'Stopped: the reply keeps what it had said.';
}

function retry(key) {
  const turn = transcript.turn(key);
  if (!turn || state.busy) return;
  const parent = transcript.turn(turn.parent);
  create(turn.inputs.slice(), parent?.responseId || turn.previousResponseId || null);
}

function continueTurn(key) {
  const turn = transcript.turn(key);
  if (!turn?.responseId || state.busy) return;
  create([userMessage('Continue exactly where you stopped.')], turn.responseId);
}

/** A turn sent from here failed: its text goes back into the composer (rate limits the relay already
 *  retried, announcing it with switchboard.retrying). */
function failed() {
  const message = state.lastSent?.items.find((item) => item.type === 'message');
  if (message && !input.value.trim()) {
    input.value = partsText(message.content);
    hint.dataset.sticky = 'true';
    hint.textContent = 'That turn failed: your message is back in the box. Retry, or edit and send it again.';
  }
}

// -- compaction -----------------------------------------------------------------------

async function compact() {
  compactButton.disabled = true;
  hint.textContent = await compactNow(compactButton, transcript);
  hint.dataset.sticky = 'true';  // the answer stays in view until the next reply starts
  updateControls();
}

// -- socket events ----------------------------------------------------------------------

function onHistory(event) {
  const conversation = event.conversation || {};
  state.readOnly = state.readOnly || Boolean(conversation.read_only);
  transcript.editable = !state.readOnly;
  const wanted = new URLSearchParams(window.location.search).get('response');
  live.history(event, { select: state.ready ? null : wanted });
  // A drawer the user is editing keeps their edits; one that is closed shows what the next turn uses.
  if (conversation.settings) applySettings(conversation.settings, { fill: !document.querySelector('dialog[open]') });
  status.status(conversation.status);
  state.ready = true;
  const inFlight = live.inFlight('');
  setBusy(Boolean(inFlight), inFlight && inFlight.responseId);
}

function onStatus(event) {
  status.status(event.status);
  if (event.upstream) {
    status.upstream = event.upstream;
    showConnection(socket.isOpen ? 'open' : 'connecting', {});
  }
}

/** A create (or steer) the relay accepted (docs/protocol.md §1): this tab's own is already on the page; one
 *  sent elsewhere gets its turn now (a steer: its text on the steered reply, live.js), and on the default
 *  lane makes the composer busy until its reply ends. */
function onRequest(event) {
  const { turn, own, inputs } = live.requested(event);
  if (own) return;
  announcer.request(inputs || turn.inputs);
  // Named lanes (other clients) never block this composer; a steer's lane is busy already.
  if (event.stream_id || event.origin === 'steer') return;
  delete hint.dataset.sticky;
  const inFlight = live.inFlight('');
  setBusy(true, inFlight?.responseId || null);
  status.status('streaming');
}

function onResponseEvent(event) {
  const stopped = transcript.turn(transcript.keyOf(event.response?.id));
  if (stopped && stopped.status === 'cancelled' && !event.stream_id) return;  // the user stopped it
  const before = event.stream_id ? null : live.inFlight('');
  live.apply(event);
  announcer.event(event);
  if (event.stream_id) return;  // named lanes (other clients) never block this composer
  if (event.type === 'response.created' || event.type === 'response.queued') {
    delete hint.dataset.sticky;
    setBusy(true, event.response && event.response.id);
    status.status('streaming');
  } else if (event.type === 'response.completed' || event.type === 'response.incomplete') {
    settle('idle');
  } else if (event.type === 'response.failed' || event.type === 'error') {
    settle('failed');
    if (!before || before.local) failed();  // a turn sent elsewhere leaves this composer alone
  }
}

/** Said in the hint, not the transcript: the records keep no such line, so a reload would lose it. A turn
 *  it ended already got its own error; one still open is cut off, unless the relay resends it (recovered). */
function onUpstreamClosed(event) {
  const code = event.code ? ` ${event.code}` : '';
  if (state.busy) {
    live.abandon('', 'interrupted');
    settle(null);
  }
  if (!hint.dataset.sticky) {
    hint.dataset.sticky = 'true';
    hint.textContent = `Upstream connection closed (${event.reason || 'unknown'}${code}). The next message reconnects.`;
  }
}

function onRecovered(event) {
  const turn = live.recovered(event);
  if (turn && !event.stream_id && !state.busy) setBusy(true, turn.responseId);
}

/** The server titled the conversation (its first message): the heading and the window follow. */
function onTitled(event) {
  const heading = document.getElementById('conversation-title');
  if (!event.title || !heading) return;
  heading.textContent = event.title;
  document.title = `${event.title} · Switchboard`;
}

// -- the user's hands -----------------------------------------------------------------

composer.addEventListener('submit', (event) => {
  event.preventDefault();
  if (state.busy) steer();
  else send();
});
input.addEventListener('keydown', (event) => {
  if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    if (state.busy) steer();
    else send();
  } else if (event.key === 'Escape' && state.fork) {
    state.fork = null;
    input.value = '';
    updateControls();
  }
});
document.addEventListener('keydown', (event) => {
  if (event.key === 'Escape' && state.busy && !document.querySelector('dialog[open]')) stop();
});
steerButton.addEventListener('click', steer);
stopButton.addEventListener('click', stop);
compactButton?.addEventListener('click', compact);
transcript.root.addEventListener('click', (event) => {
  const target = event.target.closest('button');
  if (!target || !transcript.root.contains(target)) return;
  if (target.dataset.switch) {
    transcript.switchSibling(target.closest('.switcher').dataset.key, Number(target.dataset.switch));
  } else if (target.dataset.action === 'retry' && !state.readOnly) {
    retry(target.dataset.key);
  } else if (target.dataset.action === 'continue' && !state.readOnly) {
    continueTurn(target.dataset.key);
  } else if (target.classList.contains('edit') && !state.readOnly) {
    // Editing an earlier user message branches the conversation from that message's parent.
    const turn = transcript.turn(target.closest('.turn').dataset.key);
    state.fork = { continues: transcript.turn(turn?.parent)?.responseId || null };
    input.value = target.dataset.text || '';
    input.focus();
    updateControls();
  }
});

focusShortcut(input);
socket
  .on('switchboard.history', onHistory)
  .on('switchboard.conversation', onTitled)
  .on('switchboard.request', onRequest)
  .on('switchboard.status', onStatus)
  .on('switchboard.recovered', onRecovered)
  .on('switchboard.stopped', onStopped)
  .on('switchboard.retrying', (event) => {
    live.retrying(event);
    if (!event.stream_id) hint.textContent = `Rate limited: Switchboard retries in ${event.retry_in} s…`;
  })
  .on('switchboard.upstream_closed', onUpstreamClosed)
  .on('switchboard.live', (event) => {  // paused: this tab still chats; resumed: caught up from the records
    status.livePaused = event.state === 'paused';
    showConnection(socket.isOpen ? 'open' : 'connecting', {});
  })
  .on('*', (event) => {
    if (event.type === 'error' || event.type.startsWith('response.')) onResponseEvent(event);
  });
// Conversation settings (static/js/settings.js): once the drawer saved them, the socket is told, so the next
// turn uses them; what any tab saved comes back as switchboard.settings for the drawer to show.
document.addEventListener('switchboard:settings-saved', () => socket.send({ type: 'switchboard.settings_changed' }));
function applySettings(settings, { fill = true } = {}) {
  if ('compact_threshold' in settings) {
    status.threshold = Number(settings.compact_threshold) || null;
    status.meter(transcript.context());
    updateControls();  // steering is offered or not (a compaction threshold)
  }
  if (fill) document.dispatchEvent(new CustomEvent('switchboard:settings', { detail: settings }));
}
socket.on('switchboard.settings', (event) => applySettings(event.settings || {}));
socket.connect();
