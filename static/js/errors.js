// Errors in words: what happened and what to do next, with the code kept as detail.
'use strict';

// Codes come from the upstream (PROTOCOL.md §6), from the relay (sessions_app/relay/errors.py,
// relay/limits.py, relay/ownership.py) and from the live layer. An unknown code falls back to the
// message the server sent.

const KNOWN = {
  previous_response_not_found: ['The model no longer had the earlier turns.',
    'Retry: with recovery on, Switchboard rebuilds the context from its records.'],
  websocket_connection_limit_reached: ['The upstream connection reached its 60-minute limit.',
    'Retry: a new connection is opened.'],
  rate_limit_exceeded: ['The upstream kept rate limiting requests, even after Switchboard retried.',
    'Wait a minute, then Retry.'],
  server_error: ['The model service had an internal error.', 'Retry in a moment.'],
  invalid_value: ['The request had a value the model service refused.', 'Check the conversation settings.'],
  model_not_allowed: ['This model is not allowed on the conversation’s upstream profile.',
    'Pick another model in Settings.'],
  conversation_busy: ['Another response is still running on this conversation.', 'Wait for it, or stop it.'],
  conversation_not_found: ['This conversation no longer exists.', 'Go back to your conversations.'],
  conversation_mismatch: ['That response belongs to another of your conversations.',
    'Continue it from that conversation.'],
  no_upstream_profile: ['No upstream is available to you.', 'Ask an administrator to add an upstream profile.'],
  upstream_unavailable: ['The model service could not be reached.', 'Retry in a moment.'],
  upstream_rejected: ['The model service refused the connection.', 'An administrator should check the API key.'],
  upstream_protocol_error: ['The model service sent something Switchboard could not read.', 'Retry.'],
  upstream_timeout: ['The model service stopped answering.', 'Retry in a moment: what had streamed is kept.'],
  upstream_frame_too_large: ['The model service sent a message too large to relay.', 'Retry, or ask for less.'],
  upstream_disconnected: ['The connection to the model service dropped mid-response.',
    'Retry: what had streamed is kept.'],
  recording_failed: ['Switchboard could not save this message, so it was not sent.',
    'Retry when the database is back.'],
  recording_overflow: ['Switchboard fell behind saving this conversation.', 'Retry in a moment.'],
  internal_error: ['Something went wrong inside Switchboard.', 'Retry; if it keeps happening, tell an administrator.'],
  frame_too_large: ['The message is too large to send.', 'Shorten it.'],
  read_only: ['You are viewing someone else’s conversation.', 'Only its owner can send messages.'],
  responses_per_hour_exceeded: ['You reached your hourly response limit.', 'Wait, or ask an administrator.'],
  tokens_per_day_exceeded: ['You reached your daily token limit.', 'Wait, or ask an administrator.'],
  too_many_sockets: ['You have too many Switchboard tabs or clients open.', 'Close some, and this page reconnects.'],
  too_many_upstream_sockets: ['You have too many conversations streaming at once.', 'Wait for one to finish.'],
  item_not_found: ['The message refers to an item that is not yours or no longer exists.', 'Send it without it.'],
  response_not_found: ['The message refers to a response that is not yours or no longer exists.',
    'Send it without it.'],
  unsupported_reference: ['The message names something Switchboard cannot check is yours.', 'Send it without it.'],
  credentials_revoked: ['Your sign-in or token was revoked.', 'Sign in again.'],
  // Steering (PROTOCOL.md §2.2 response.steer.failed).
  steering_not_supported: ['This reply cannot be steered (automatic compaction is on).',
    'Send it as the next message when the reply ends.'],
  response_already_completed: ['The reply had already ended.', 'Send it as the next message.'],
  response_not_active: ['The reply was no longer running.', 'Send it as the next message.'],
  too_many_pending_steers: ['Too many steers were already waiting on this reply.', 'Wait for the reply to take them.'],
};

/** {summary, advice, detail} for an error object ({type, code, message, param}). */
export function explain(error) {
  const code = error?.code || error?.type || 'error';
  const message = error?.message || '';
  const known = KNOWN[code];
  return {
    code,
    summary: known ? known[0] : (message || 'Something went wrong.'),
    advice: known ? known[1] : 'Retry, or change the message.',
    detail: message ? `${code}: ${message}` : code,
  };
}
