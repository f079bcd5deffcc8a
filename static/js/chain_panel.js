// The chain panel: the conversation's whole tree of turns, beside the one branch the transcript shows.
'use strict';

// Rules: nodes are drawn depth-first; a branch is indented only where the chain forks, so a long
// agent loop stays one flat column. Each node shows its status colour, tokens and time to first
// token, and marks forks, edits, recoveries, compactions and errors. Clicking a node shows its branch in
// the transcript and scrolls to it. The panel redraws at most once per animation frame, and only
// while it is open.

import { partsText, replayKind, STATUS_LABELS } from './turns.js';

const MAX_DEPTH = 8;
const REMEMBER = 'switchboard.chain-panel';
// A node's status in words ("waiting", not "Sending": the page's Send button keeps its name to itself).
const NODE_STATUS = { ...STATUS_LABELS, sending: 'Waiting' };

function label(turn) {
  const message = turn.inputs.find((item) => typeof item === 'string' || item?.type === 'message' || item?.role);
  if (message) {
    const text = typeof message === 'string' ? message : partsText(message.content);
    if (text.trim()) return text.trim().split('\n')[0].slice(0, 60);
  }
  if (turn.inputs.some((item) => item?.type === 'function_call_output')) return 'tool output';
  if (turn.origin === 'steer') return 'steered';
  if (turn.origin === 'warmup') return 'warm-up';
  return turn.responseId ? 'response' : '(not sent)';
}

export class ChainPanel {
  constructor({ panel, list, toggle, transcript }) {
    this.panel = panel;
    this.list = list;
    this.toggle = toggle;
    this.transcript = transcript;
    this.frame = 0;
    toggle.addEventListener('click', () => this.setOpen(this.panel.hidden));
    panel.querySelector('[data-close]')?.addEventListener('click', () => this.setOpen(false));
    panel.addEventListener('keydown', (event) => {
      if (event.key === 'Escape') { event.stopPropagation(); this.setOpen(false); }
    });
    list.addEventListener('click', (event) => {
      const node = event.target.closest('button[data-key]');
      if (!node) return;
      this.transcript.select(node.dataset.key);
      if (window.matchMedia('(max-width: 900px)').matches) this.setOpen(false);
    });
    // Closed at first; a wide window remembers that its user keeps it open.
    this.setOpen(window.matchMedia('(min-width: 1200px)').matches && localStorage.getItem(REMEMBER) === 'open', false);
  }

  setOpen(open, focus = true) {
    if (window.matchMedia('(min-width: 1200px)').matches) localStorage.setItem(REMEMBER, open ? 'open' : 'closed');
    this.panel.hidden = !open;
    this.toggle.setAttribute('aria-expanded', String(open));
    document.body.classList.toggle('chain-open', open);
    if (open) {
      this.draw();
      if (focus) this.list.querySelector('button[aria-current]')?.focus();
    } else if (focus) {
      this.toggle.focus();
    }
  }

  /** Something changed in the transcript: redraw on the next frame (if open). */
  update() {
    if (this.panel.hidden || this.frame) return;
    this.frame = requestAnimationFrame(() => { this.frame = 0; this.draw(); });
  }

  draw() {
    const { tree, turns, path } = this.transcript;
    const shown = new Set(path);
    const current = path.length ? path[path.length - 1] : null;
    const items = [];
    const roots = tree.children(null);
    const stack = [...tree.deadEnds(null), ...roots].sort((a, b) => tree.nodes.get(b).order - tree.nodes.get(a).order)
      .map((key) => [key, 0, roots.length > 1 && roots.includes(key)]);
    while (stack.length) {
      const [key, depth, branch] = stack.pop();
      const turn = turns.get(key);
      if (!turn) continue;
      const attempt = turns.get(tree.standing(key)) || turn;
      const children = tree.children(key);
      const forks = children.length > 1;
      items.push(this.node(attempt, key, depth, { branch, forks, shown: shown.has(key), current: key === current }));
      for (const child of children.slice().reverse()) stack.push([child, Math.min(MAX_DEPTH, depth + (forks ? 1 : 0)), forks]);
      // Failed attempts made from here: drawn after it, at its depth (they are no branch).
      for (const failed of tree.deadEnds(key).slice().reverse()) stack.push([failed, depth, false]);
    }
    if (!items.length) {
      const empty = document.createElement('li');
      empty.className = 'empty';
      empty.textContent = 'No turns yet.';
      items.push(empty);
    }
    this.list.replaceChildren(...items);
  }

  node(turn, key, depth, { branch, forks, shown, current }) {
    const li = document.createElement('li');
    li.className = `node depth-${depth}${shown ? ' on-path' : ''}${branch ? ' branch' : ''}`;
    const button = document.createElement('button');
    button.type = 'button';
    button.dataset.key = key;
    button.className = `status-dot ${turn.status}`;
    if (current) button.setAttribute('aria-current', 'true');
    const title = document.createElement('span');
    title.className = 'node-label';
    title.textContent = label(turn);
    const facts = document.createElement('span');
    facts.className = 'node-facts';
    const parts = [NODE_STATUS[turn.status] || turn.status];
    if (turn.usage?.total_tokens != null) parts.push(`${turn.usage.total_tokens} tok`);
    if (turn.ttftMs != null) parts.push(`${turn.ttftMs} ms`);
    facts.textContent = parts.join(' · ');
    button.append(title, facts);
    const marks = [];
    if (forks) marks.push(['fork', 'forks here']);
    // As the turn's badge reads (turns.js replayKind): an edit replayed from the records is an edit.
    const replay = replayKind(turn);
    if (replay === 'edit' || (!replay && turn.origin === 'fork')) marks.push(['edited', 'edited']);
    else if (replay) marks.push(['recovered', replay === 'retried' ? 'retried' : 'recovered']);
    if (turn.outputs.some((item) => item?.type === 'compaction') || this.transcript.standalone.has(key)) {
      marks.push(['compaction', 'compacted']);
    }
    if (turn.error || turn.status === 'failed') marks.push(['error', 'error']);
    for (const [kind, text] of marks) {
      const mark = document.createElement('span');
      mark.className = `mark ${kind}`;
      mark.textContent = text;
      button.append(mark);
    }
    li.append(button);
    return li;
  }
}
