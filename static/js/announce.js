// Keyboard and screen-reader help for the conversation page: the "/" shortcut and the polite announcer.
'use strict';

const LIMIT = 300;  // characters of a finished message read out; the transcript holds the rest
const FIELDS = 'input, textarea, select, [contenteditable=""], [contenteditable="true"]';

/** "/" outside a field (and with no dialog open) moves focus to `target`, as on many sites;
 *  it is not a browser shortcut, and typing "/" in any field still types it. */
export function focusShortcut(target) {
  document.addEventListener('keydown', (event) => {
    if (event.key !== '/' || event.ctrlKey || event.metaKey || event.altKey || event.defaultPrevented) return;
    if (event.target instanceof Element && event.target.closest(FIELDS)) return;
    if (document.querySelector('dialog[open]') || target.disabled) return;
    event.preventDefault();
    target.focus();
  });
}

/** The text of a message's content parts (output_text, refusal). */
function contentText(content) {
  if (typeof content === 'string') return content;
  return (Array.isArray(content) ? content : [])
    .map((part) => (part && (part.text ?? part.refusal)) || '').join(' ');
}

function clip(text) {
  const flat = text.replace(/\s+/g, ' ').trim();
  return flat.length > LIMIT ? `${flat.slice(0, LIMIT)}…` : flat;
}

/** Says what finished through a polite live region: once per finished assistant message (its
 *  `response.output_item.done`), never per delta, and once per failure. */
export class Announcer {
  constructor(region) {
    this.region = region;
    this.pending = null;  // words waiting to be put in the region (they arrive together: one announcement)
  }

  say(text) {
    if (!this.region || !text) return;
    if (this.pending !== null) {
      this.pending = `${this.pending} ${text}`;
      return;
    }
    // Emptied first, so the same words twice in a row are still read again.
    this.pending = text;
    this.region.textContent = '';
    setTimeout(() => {
      this.region.textContent = this.pending;
      this.pending = null;
    }, 50);
  }

  /** A create sent elsewhere (another tab, the SDK; switchboard.request): its message is read out. */
  request(items) {
    const message = items.find((item) => item && (item.type === 'message' || (!item.type && item.role)));
    const text = message ? clip(contentText(message.content)) : '';
    if (text) this.say(`Message sent elsewhere: ${text}`);
    else if (items.length) this.say('Function outputs sent elsewhere.');
  }

  /** A relayed event: announces finished messages and failures, ignores everything else. */
  event(event) {
    if (event.type === 'response.output_item.done') {
      const item = event.item || {};
      if (item.type !== 'message' || (item.role && item.role !== 'assistant')) return;
      const text = clip(contentText(item.content));
      if (text) this.say(`Assistant replied: ${text}`);
    } else if (event.type === 'response.failed' || event.type === 'error') {
      const error = event.error || event.response?.error || {};
      this.say(`Response failed: ${error.message || error.code || 'unknown error'}`);
    }
  }
}
