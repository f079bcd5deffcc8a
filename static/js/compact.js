// Compact now: a standalone compaction of the conversation's context (docs/protocol.md §7).
'use strict';

import { explain } from './errors.js';

function csrfToken() {
  const row = document.cookie.split('; ').find((cookie) => cookie.startsWith('csrftoken='));
  return decodeURIComponent(row?.split('=')[1] || '');
}

/** Posts to the button's URL; on success the divider goes after the turn it compacted. Returns what the
 *  composer's hint says: the figures, or why it failed. */
export async function compactNow(button, transcript) {
  try {
    const response = await fetch(button.dataset.url, {
      method: 'POST', headers: { 'X-CSRFToken': csrfToken() }, credentials: 'same-origin',
    });
    const body = await response.json();
    if (!response.ok) throw body.error || { code: `http_${response.status}` };
    const key = transcript.keyOf(body.base_response_id);
    if (key) {
      transcript.standalone.set(key, body);
      transcript.render();
    }
    return `Compacted: ${body.items_replaced} items replaced. The next message starts from the summary.`;
  } catch (error) {
    const words = explain(error);
    return `Compaction failed: ${words.summary} (${words.detail})`;
  }
}
