// switchboard.history as turns: what each recorded response is on the page (no DOM here).
'use strict';

// Rules (docs/protocol.md §1): a turn is keyed `r<record pk>`; a resent attempt keeps its place
// under `supersedes` (the tree folds it) and the turn that superseded it is shown as first sent, with
// the reason its first attempt failed and the origin it was sent with (an edit stays an edit: turns.js
// replayKind); a steer the upstream refused started nothing and is no turn.

const ENDED = new Set(['completed', 'incomplete', 'failed', 'cancelled', 'interrupted']);
const ENDED_BADLY = new Set(['failed', 'cancelled', 'interrupted']);

function moment(iso) {
  const value = iso ? Date.parse(iso) : NaN;
  return Number.isNaN(value) ? 0 : value;
}

/** [{fields, inputs, outputs, steer, inFlight}] for the transcript, and the standalone compactions by turn key. */
export function turnsFromHistory(history) {
  const records = history.responses || [];
  const superseded = new Set(records.map((r) => r.supersedes).filter((pk) => pk !== null && pk !== undefined));
  const byRecord = new Map(records.map((r) => [r.record, r]));
  const firstAttempt = (record) => {
    let at = record;
    for (let hops = 0; at.supersedes != null && byRecord.has(at.supersedes) && hops < records.length; hops++) {
      at = byRecord.get(at.supersedes);
    }
    return at;
  };
  // The origin a replayed record was sent with (the records say `recovery_replay`): its first attempt's,
  // else what recordedOrigin says of it among the children its parent had before it.
  const sentAs = (record, first) => {
    if (record.origin !== 'recovery_replay') return record.origin || 'user';
    if (first.origin && first.origin !== 'recovery_replay') return first.origin;
    const parent = byRecord.get(first.parent);
    const earlier = records.filter((other) => other.parent === first.parent && other.record < first.record);
    return recordedOrigin(first.input_items || [], parent ? { lane: parent.stream_id || '' } : null, earlier,
      first.stream_id || '');
  };
  const turns = [];
  for (const record of records) {
    if (record.origin === 'steer' && !record.response_id && ENDED.has(record.status)) continue;
    const first = firstAttempt(record);
    turns.push({
      fields: {
        key: `r${record.record}`, record: record.record, responseId: record.response_id || null,
        previousResponseId: record.previous_response_id || null,
        parent: record.parent != null ? `r${record.parent}` : null,
        supersedes: record.supersedes != null ? `r${record.supersedes}` : null,
        lane: record.stream_id || '', origin: sentAs(record, first), status: record.status || 'completed',
        usage: record.usage, error: record.error, incompleteReason: record.incomplete_reason,
        sentAt: first.accepted_at || first.sent_at, ttftMs: record.ttft_ms, model: record.model || '',
        recovered: record.supersedes != null || record.origin === 'recovery_replay',
        recoveredReason: first === record ? null : first.error?.code || null,
        activity: moment(record.completed_at || record.sent_at),
      },
      inputs: record.input_items || [],
      outputs: record.output_items || [],
      steer: record.origin === 'steer',
      inFlight: !superseded.has(record.record) && (record.status === 'in_progress' || record.status === 'queued'),
    });
  }
  const standalone = new Map();
  for (const compaction of history.compactions || []) {
    if (compaction.kind === 'standalone' && compaction.record != null) standalone.set(`r${compaction.record}`, compaction);
  }
  return { turns, standalone };
}

/** The origin the records will give a turn sent now on `lane` (recording/input.py `request_origin`),
 *  so its badge reads the same live and after a reload: tool outputs are `tool_output`; a message is a `fork`
 *  when the turn it continues (`parent`) is on another lane or already has a child (`siblings`) that did not
 *  end badly. An edit of a first message continues nothing: it is no fork in the records either. */
export function recordedOrigin(items, parent, siblings, lane = '') {
  const outputs = new Set(['function_call_output', 'custom_tool_call_output']);
  if (items.some((item) => outputs.has(item?.type))) return 'tool_output';
  if (!parent) return 'user';
  return (parent.lane || '') !== lane || siblings.some((turn) => turn && !ENDED_BADLY.has(turn.status)) ? 'fork' : 'user';
}
