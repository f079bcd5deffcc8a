// The conversation page: wires the composer to the socket and the socket to the transcript.
'use strict';

import { Announcer, focusShortcut } from './announce.js';
import { ReconnectingSocket, socketUrl } from './socket.js';
import { Transcript } from './transcript.js';

// Rules: the default lane carries one response at a time, so Send is disabled from the moment
// a create is sent until that response ends. Each create continues the latest completed (or
// incomplete) default-lane response via previous_response_id and carries only the new input;
// the relay adds model, store, instructions and tools. While the latest response waits on
// function calls, what the user types is sent as their output.

const composer = document.getElementById('composer');
const input = document.getElementById('composer-input');
const sendButton = document.getElementById('send-button');
const steerButton = document.getElementById('steer-button');
const hint = document.getElementById('composer-hint');
const connection = document.getElementById('connection-state');
const statusBadge = document.getElementById('conversation-status');
const transcript = new Transcript(document.getElementById('transcript'));
const announcer = new Announcer(document.getElementById('announcer'));

const state = {
  readOnly: composer.dataset.readOnly === 'true',
  ready: false,            // switchboard.history received on the current socket
  busy: false,             // a default-lane response was sent and has not ended
  inFlightId: null,        // its response id, once response.created arrived
  latestResponseId: null,  // what the next create continues
  pendingCalls: [],        // function calls of the latest response still waiting for output
  upstream: null,          // 'connected' | 'disconnected', from switchboard.status
  forkFrom: null,          // editing an earlier message: the id to continue ('' = a new root), else null
};

const socket = new ReconnectingSocket(socketUrl(composer.dataset.socketPath), { onState: showConnection });

// Why the server closed the socket for good (docs/protocol.md §1, §8).
const CLOSED_LABELS = {
  4401: 'Signed out: reload the page to sign in again',
  4403: 'You may no longer view this conversation',
  4404: 'Conversation not found',
};

function showConnection(name, detail) {
  const labels = {
    connecting: 'Connecting…',
    open: state.upstream ? `Connected · upstream ${state.upstream}` : 'Connected',
    reconnecting: `Disconnected; retrying in ${Math.ceil((detail.delay || 0) / 1000)} s`,
    closed: CLOSED_LABELS[detail.code] || 'Disconnected',
  };
  connection.dataset.state = name;
  connection.textContent = labels[name];
  if (name !== 'open') state.ready = false;
  if (name === 'open') connection.dataset.upstream = state.upstream || '';
  updateControls();
}

function showStatus(status) {
  if (!statusBadge || !status) return;
  statusBadge.className = `status ${status}`;
  statusBadge.textContent = status.charAt(0).toUpperCase() + status.slice(1);
}

function setBusy(busy, inFlightId = null) {
  state.busy = busy;
  state.inFlightId = busy ? inFlightId : null;
  updateControls();
}

function updateControls() {
  const live = !state.readOnly && state.ready && socket.isOpen;
  input.disabled = state.readOnly;
  sendButton.disabled = !live || state.busy;
  steerButton.hidden = state.readOnly || !state.busy;
  steerButton.disabled = !live || !state.inFlightId;
  if (state.readOnly) {
    hint.textContent = 'Read-only: you are viewing someone else\'s conversation.';
  } else if (state.forkFrom !== null) {
    hint.textContent = 'Editing an earlier message: Send forks the conversation from before it (Esc cancels).';
  } else if (state.pendingCalls.length) {
    const call = state.pendingCalls[0];
    hint.textContent = `Your next message is sent as the output of ${call.name} (${call.call_id}).`;
  } else {
    hint.textContent = state.busy ? 'Responding… (Steer adds to the running response)' : '';
  }
}

function functionCalls(output) {
  return (output || []).filter((item) => item && item.type === 'function_call' && item.call_id);
}

/** A response on the default lane ended: it is what the next create continues. */
function continueFrom(response) {
  state.latestResponseId = response.id || state.latestResponseId;
  state.pendingCalls = functionCalls(response.output);
}

function onHistory(event) {
  const conversation = event.conversation || {};
  state.readOnly = state.readOnly || Boolean(conversation.read_only);
  transcript.editable = !state.readOnly;
  transcript.renderHistory(event.responses);
  state.latestResponseId = null;
  state.pendingCalls = [];
  let inFlight = null;
  for (const record of event.responses || []) {
    if (record.stream_id) continue;
    if (record.status === 'completed' || record.status === 'incomplete') {
      state.latestResponseId = record.response_id;
      state.pendingCalls = functionCalls(record.output_items);
    }
    inFlight = (record.status === 'in_progress' || record.status === 'queued') ? record : null;
  }
  showStatus(conversation.status);
  state.ready = true;
  setBusy(Boolean(inFlight), inFlight && inFlight.response_id);
}

function onStatus(event) {
  showStatus(event.status);
  if (event.latest_response_id) state.latestResponseId = event.latest_response_id;
  if (event.upstream) {
    state.upstream = event.upstream;
    showConnection(socket.isOpen ? 'open' : 'connecting', {});
  }
  // A 'failed' status is followed by the error event of the request that failed: that event,
  // not this status, ends the turn, so the error shows on the turn it belongs to.
}

function onResponseEvent(event) {
  transcript.apply(event);
  announcer.event(event);
  if (event.stream_id) return;  // named lanes (other clients) never block this composer
  // The relay's switchboard.status events are authoritative; these keep the badge current between them.
  if (event.type === 'response.created' || event.type === 'response.queued') {
    setBusy(true, event.response && event.response.id);
    showStatus('streaming');
  } else if (event.type === 'response.completed' || event.type === 'response.incomplete') {
    continueFrom(event.response || {});
    setBusy(false);
    showStatus('idle');
  } else if (event.type === 'response.failed' || event.type === 'error') {
    setBusy(false);
    showStatus('failed');
  }
}

function onUpstreamClosed(event) {
  const code = event.code ? ` ${event.code}` : '';
  transcript.notice(`Upstream connection closed (${event.reason || 'unknown'}${code}). The next message reconnects.`,
    'warning');
  if (state.busy) {
    transcript.abandon('', 'interrupted');
    setBusy(false);
  }
}

function newInput(text) {
  if (state.pendingCalls.length && state.forkFrom === null) {
    return state.pendingCalls.map((call) => ({ type: 'function_call_output', call_id: call.call_id, output: text }));
  }
  return [{ type: 'message', role: 'user', content: [{ type: 'input_text', text }] }];
}

function send() {
  const text = input.value.trim();
  if (!text || sendButton.disabled) return;
  const items = newInput(text);
  const forking = state.forkFrom !== null;
  const continues = forking ? state.forkFrom : state.latestResponseId;
  const frame = { type: 'response.create', input: items };
  if (continues) frame.previous_response_id = continues;
  if (!socket.send(frame)) {
    hint.textContent = 'Not connected: your message was kept.';
    return;
  }
  const origin = forking ? 'fork' : (state.pendingCalls.length ? 'tool_output' : 'user');
  transcript.startLocalTurn(items, origin, continues || null);
  state.pendingCalls = [];
  state.forkFrom = null;
  input.value = '';
  setBusy(true, null);
}

function steer() {
  const text = input.value.trim();
  if (!text || !state.inFlightId) return;
  if (socket.send({ type: 'response.steer', previous_response_id: state.inFlightId, input: text })) {
    transcript.addSteer(text);
    input.value = '';
  }
}

composer.addEventListener('submit', (event) => {
  event.preventDefault();
  send();
});
input.addEventListener('keydown', (event) => {
  if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    send();
  }
});
steerButton.addEventListener('click', steer);
// Editing an earlier user message forks the conversation from that message's parent.
transcript.root.addEventListener('click', (event) => {
  const button = event.target.closest('button.edit');
  if (!button || state.readOnly) return;
  state.forkFrom = button.dataset.continues || '';
  input.value = button.dataset.text || '';
  input.focus();
  updateControls();
});
input.addEventListener('keydown', (event) => {
  if (event.key === 'Escape' && state.forkFrom !== null) {
    state.forkFrom = null;
    input.value = '';
    updateControls();
  }
});

/** The server titled the conversation (its first message): the heading and the window follow. */
function onTitled(event) {
  const heading = document.getElementById('conversation-title');
  if (!event.title || !heading) return;
  heading.textContent = event.title;
  document.title = `${event.title} · Switchboard`;
}

focusShortcut(input);
socket
  .on('switchboard.history', onHistory)
  .on('switchboard.conversation', onTitled)
  .on('switchboard.status', onStatus)
  .on('switchboard.upstream_closed', onUpstreamClosed)
  .on('*', (event) => {
    if (event.type === 'error' || event.type.startsWith('response.')) onResponseEvent(event);
  });
// Conversation settings (static/js/settings.js): once the drawer saved them, the socket is told, so the next
// turn uses them; what any tab saved comes back as switchboard.settings for the drawer to show.
document.addEventListener('switchboard:settings-saved', () => socket.send({ type: 'switchboard.settings_changed' }));
socket.on('switchboard.settings', (event) => document.dispatchEvent(
  new CustomEvent('switchboard:settings', { detail: event.settings || {} })));
socket.connect();
