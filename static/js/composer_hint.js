// The composer's hint: what Enter, Send and Esc do now, in words (conversation.js decides the state).
'use strict';

// Steering is not offered when the conversation compacts automatically (PROTOCOL.md §2.2): the upstream
// refuses to steer a response that carries context_management, so Enter holds the message instead.
const NO_STEER = 'Automatic compaction is on (Settings), so replies cannot be steered: Enter sends your message '
  + 'when this one ends.';

/** The hint for `now`: {readOnly, fork, busy, held, elsewhere, started, steerable, calls, plain}; null: leave
 *  whatever the hint says (a sticky answer: a stop, a failure, a compaction). */
export function composerHint(now) {
  if (now.readOnly) return 'Read-only: you are viewing someone else\'s conversation.';
  if (now.fork) return 'Editing an earlier message: Send forks the conversation from before it (Esc cancels).';
  if (now.busy && now.held) {
    return 'Your message is sent when the reply ends (automatic compaction is on, so it cannot steer the reply). '
      + 'Esc stops the reply.';
  }
  if (now.busy && now.elsewhere) {  // sent by another tab or client
    if (!now.started) return 'A message sent elsewhere is on its way…';
    return `Replying to a message sent elsewhere… ${now.steerable ? 'Enter steers it; Esc stops it.' : `Esc stops it. ${NO_STEER}`}`;
  }
  if (now.busy) {
    if (!now.started) return 'Sending…';
    return `Responding… ${now.steerable ? 'Enter steers the reply with what you type; Esc stops it.' : `Esc stops it. ${NO_STEER}`}`;
  }
  if (now.calls) {
    return now.plain ? 'Your message is sent as the output of every pending call.'
      : 'Answer each function call above; Send sends all the outputs together.';
  }
  return null;
}
