// A reconnecting JSON WebSocket: backoff on abnormal closes, one handler table per event type.
'use strict';

// Closes the server means: reconnecting would only be refused again (auth, policy, not found).
const FINAL_CLOSE_CODES = new Set([1008, 4401, 4403, 4404]);
const BASE_DELAY_MS = 500;
const MAX_DELAY_MS = 15000;

/** The socket URL for a same-origin path: ws: under http:, wss: under https:. */
export function socketUrl(path) {
  const scheme = window.location.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${scheme}//${window.location.host}${path}`;
}

/**
 * Delay before reconnect attempt `attempt` (1-based): exponential, capped, with jitter
 * so that many tabs dropped by one server restart do not come back in lockstep.
 */
export function backoffDelay(attempt) {
  const ceiling = Math.min(BASE_DELAY_MS * 2 ** (attempt - 1), MAX_DELAY_MS);
  return Math.round(ceiling * (0.75 + Math.random() * 0.25));
}

/**
 * States reported to `onState`: 'connecting', 'open', 'reconnecting' (with the delay),
 * 'closed' (final: the server refused us, or close() was called).
 * Callers register handlers with on(type, fn); on('*', fn) sees every event.
 */
export class ReconnectingSocket {
  constructor(url, { onState = () => {} } = {}) {
    this.url = url;
    this.onState = onState;
    this.handlers = new Map();
    this.attempt = 0;
    this.ws = null;
    this.timer = null;
    this.stopped = false;
  }

  on(type, handler) {
    if (!this.handlers.has(type)) this.handlers.set(type, []);
    this.handlers.get(type).push(handler);
    return this;
  }

  connect() {
    this.stopped = false;
    this.onState('connecting', {});
    const ws = new WebSocket(this.url);
    this.ws = ws;
    ws.addEventListener('open', () => {
      this.attempt = 0;
      this.onState('open', {});
    });
    ws.addEventListener('message', (message) => this.dispatch(message.data));
    ws.addEventListener('close', (close) => this.closed(ws, close));
  }

  /** Sends one JSON frame; false when the socket is not open (the caller keeps its data). */
  send(frame) {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return false;
    this.ws.send(JSON.stringify(frame));
    return true;
  }

  get isOpen() {
    return Boolean(this.ws) && this.ws.readyState === WebSocket.OPEN;
  }

  close() {
    this.stopped = true;
    clearTimeout(this.timer);
    if (this.ws) this.ws.close(1000);
  }

  dispatch(data) {
    let event;
    try {
      event = JSON.parse(data);
    } catch (error) {
      console.warn('switchboard: ignoring a frame that is not JSON', error);
      return;
    }
    if (!event || typeof event.type !== 'string') return;
    for (const handler of [...(this.handlers.get(event.type) || []), ...(this.handlers.get('*') || [])]) {
      try {
        handler(event);
      } catch (error) {
        console.error(`switchboard: handler for ${event.type} failed`, error);
      }
    }
  }

  closed(ws, close) {
    if (ws !== this.ws) return;  // an old socket closing late
    if (this.stopped || FINAL_CLOSE_CODES.has(close.code)) {
      this.onState('closed', { code: close.code, reason: close.reason });
      return;
    }
    this.attempt += 1;
    const delay = backoffDelay(this.attempt);
    this.onState('reconnecting', { code: close.code, delay, attempt: this.attempt });
    this.timer = setTimeout(() => this.connect(), delay);
  }
}
