// The conversation page's status displays: the connection line, the conversation's status badge, the context meter.
'use strict';

// Why the server closed the socket for good (docs/protocol.md §1, §8).
const CLOSED_LABELS = {
  4401: 'Signed out: reload the page to sign in again',
  4403: 'You may no longer view this conversation',
  4404: 'Conversation not found',
};

export class PageStatus {
  constructor({ connection, badge, meter }) {
    this.connectionEl = connection;
    this.badge = badge;
    this.meterEl = meter;
    this.upstream = null;       // 'connected' | 'disconnected', from switchboard.status
    this.livePaused = false;    // switchboard.live: other processes' events paused (channel layer down)
    this.threshold = Number(meter?.dataset.threshold || 0) || null;
  }

  /** The socket's state ('connecting', 'open', 'reconnecting', 'closed'; socket.js) in words. */
  connection(name, detail = {}) {
    const labels = {
      connecting: 'Connecting…',
      open: (this.upstream ? `Connected · upstream ${this.upstream}` : 'Connected')
        + (this.livePaused ? ' · live view paused' : ''),
      reconnecting: `Disconnected; retrying in ${Math.ceil((detail.delay || 0) / 1000)} s`,
      closed: CLOSED_LABELS[detail.code] || 'Disconnected',
    };
    if (name !== 'open') this.livePaused = false;  // a new socket is told again
    this.connectionEl.dataset.state = name;
    this.connectionEl.textContent = labels[name];
    this.connectionEl.dataset.live = this.livePaused ? 'paused' : '';
    if (name === 'open') this.connectionEl.dataset.upstream = this.upstream || '';
  }

  /** The conversation's status badge: idle, streaming, failed. */
  status(status) {
    if (!this.badge || !status) return;
    this.badge.className = `status ${status}`;
    this.badge.textContent = status.charAt(0).toUpperCase() + status.slice(1);
  }

  /** The context meter: input tokens of the latest turn (null: none yet), against the compaction threshold.
   *  When that turn compacted the context it says so: the figure is what the context was, not what the next
   *  turn starts from (that is the compacted size, when known; else the gauge waits for the next turn). */
  meter({ tokens = null, compacted = null } = {}) {
    if (!this.meterEl) return;
    const gauge = this.meterEl.querySelector('meter');
    const label = this.meterEl.querySelector('.context-label');
    const threshold = this.threshold;
    const of = threshold ? ` of ${threshold}` : '';
    let shown = tokens;
    if (tokens === null) {
      label.textContent = 'Context: –';
    } else if (compacted && compacted.after != null) {
      shown = compacted.after;
      label.textContent = `Context: ${compacted.after} tokens${of} · compacted from ${compacted.before}`;
    } else if (compacted) {
      shown = null;
      label.textContent = `Context: compacted at ${tokens} tokens${threshold ? ` · threshold ${threshold}` : ''}`;
    } else {
      label.textContent = `Context: ${tokens} tokens${of}`;
    }
    this.meterEl.title = compacted
      ? 'The latest turn compacted the context: the next turn starts from the summary, so it sends fewer tokens.'
      : 'Input tokens of the latest turn';
    gauge.hidden = !threshold || shown === null;
    if (threshold) {
      gauge.max = threshold;
      gauge.high = threshold * 0.8;
      gauge.value = Math.min(shown || 0, threshold);
    }
  }
}
