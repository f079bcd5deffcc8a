// A conversation as a tree of turns, and the one path from a root to a leaf the page shows.
'use strict';

// Rules (docs/protocol.md, "switchboard.history"): every record names its `parent` record (the
// response it continues; null for a root) and, when the relay resent it, the record it `supersedes`.
// A superseded attempt is not a turn: the attempt that superseded it takes its place. Siblings are
// the turns that continue the same parent (roots are siblings of each other): an edit, a retry or a
// fork. The default path follows, at each fork, the branch with the latest activity.
// A dead attempt (it failed, so the next message does not continue it) is no branch: it is shown in
// line with the path it was made from, in the order things happened.
// The index is rebuilt once after a change (O(n)), so agent chains of thousands of turns stay cheap.

const ROOT = null;

export class ConversationTree {
  constructor() {
    this.nodes = new Map();      // record key -> {key, responseId, parent, supersedes, activity, dead}
    this.byResponse = new Map(); // resp_… -> record key
    this.cache = null;
  }

  /** Add or update a turn: {key, responseId?, parent?, supersedes?, activity?, dead?}. */
  upsert(turn) {
    const node = this.nodes.get(turn.key)
      || { key: turn.key, parent: null, supersedes: null, activity: 0, order: this.nodes.size };
    for (const [name, value] of Object.entries(turn)) if (value !== undefined) node[name] = value;
    this.nodes.set(node.key, node);
    if (node.responseId) this.byResponse.set(node.responseId, node.key);
    this.cache = null;
    return node;
  }

  keyOf(responseId) {
    return this.byResponse.get(responseId) ?? null;
  }

  index() {
    if (this.cache) return this.cache;
    const supersededBy = new Map();
    for (const node of this.nodes.values()) {
      if (node.supersedes != null && this.nodes.has(node.supersedes)) supersededBy.set(node.supersedes, node.key);
    }
    const standing = (key) => {
      const seen = new Set();
      while (supersededBy.has(key) && !seen.has(key)) { seen.add(key); key = supersededBy.get(key); }
      return key;
    };
    const parentOf = new Map();
    const children = new Map([[ROOT, []]]);
    const dead = new Map();
    for (const node of this.nodes.values()) {  // Map order: the order turns were added (sent)
      if (supersededBy.has(node.key)) continue;
      const parent = node.parent != null && this.nodes.has(node.parent) ? standing(node.parent) : ROOT;
      parentOf.set(node.key, parent);
      const into = node.dead ? dead : children;
      if (!into.has(parent)) into.set(parent, []);
      into.get(parent).push(node.key);
    }
    // Latest activity under each turn: children always come after their parent in send order, so
    // one backwards pass folds every subtree into its root.
    const latest = new Map();
    const order = [...parentOf.keys()];
    for (const key of order) latest.set(key, this.nodes.get(key).activity || 0);
    for (let i = order.length - 1; i >= 0; i--) {
      const parent = parentOf.get(order[i]);
      if (parent !== ROOT) latest.set(parent, Math.max(latest.get(parent), latest.get(order[i])));
    }
    this.cache = { standing, parentOf, children, dead, latest };
    return this.cache;
  }

  /** The record that stands for `key` in the tree (the last attempt that superseded it). */
  standing(key) {
    return this.index().standing(key);
  }

  /** Turns (keys) that continue `key` (null: the roots), in the order they were sent. */
  children(key) {
    return this.index().children.get(key) || [];
  }

  /** Dead attempts made from `key` (null: the roots), in the order they were sent. */
  deadEnds(key) {
    return this.index().dead.get(key) || [];
  }

  /** What to show for `path`: its turns and the dead attempts made from them (or as roots), in the
   *  order they were sent. */
  display(path) {
    const shown = [...path, ...this.deadEnds(ROOT)];
    for (const key of path) shown.push(...this.deadEnds(key));
    return shown.sort((a, b) => this.nodes.get(a).order - this.nodes.get(b).order);
  }

  parent(key) {
    return this.index().parentOf.get(this.standing(key)) ?? ROOT;
  }

  /** The path (keys, root first) through `key`, continued down the latest branch below it. */
  path(key = null) {
    const { parentOf, children, latest } = this.index();
    const path = [];
    if (key !== null && this.nodes.has(key)) {
      let start = this.standing(key);
      if (this.nodes.get(start).dead) start = parentOf.get(start) ?? ROOT;
      for (let at = start; at !== ROOT && !path.includes(at); at = parentOf.get(at) ?? ROOT) {
        path.unshift(at);
      }
    }
    for (let tail = path.length ? path[path.length - 1] : ROOT; ;) {
      const next = children.get(tail) || [];
      if (!next.length) return path;
      tail = next.reduce((a, b) => (latest.get(b) >= latest.get(a) ? b : a));
      path.push(tail);
    }
  }

  /** Where `key` sits among its siblings: {index (0-based), count, siblings (keys)}. */
  position(key) {
    const standing = this.standing(key);
    const siblings = this.children(this.parent(standing));
    const index = siblings.indexOf(standing);
    return { index, count: index < 0 ? 0 : siblings.length, siblings };
  }
}
