// Dashboard: Rename opens the row's form in place, and "5 min ago" stays true while the page is open.
'use strict';

const MINUTE = 60;
const HOUR = 3600;
const DAY = 86400;

// The words of relative_time in sessions_app/templatetags/dashboard_tags.py: change both together.
// null from a week back, where the server wrote a date that does not go stale.
function relative(seconds) {
  if (seconds < MINUTE) return 'just now';
  if (seconds < HOUR) return `${Math.floor(seconds / MINUTE)} min ago`;
  if (seconds < DAY) return `${Math.floor(seconds / HOUR)} h ago`;
  if (seconds < 7 * DAY) {
    const days = Math.floor(seconds / DAY);
    return days === 1 ? '1 day ago' : `${days} days ago`;
  }
  return null;
}

const table = document.querySelector('table.conversations');
if (table) {
  // Measured against the server's clock, so a browser whose clock is off still says "just now".
  const renderedAt = Date.parse(table.dataset.renderedAt);
  const skew = Number.isNaN(renderedAt) ? 0 : renderedAt - Date.now();
  const refresh = () => {
    const now = Date.now() + skew;
    for (const time of table.querySelectorAll('time[datetime]')) {
      const at = Date.parse(time.dateTime);
      const words = Number.isNaN(at) ? null : relative((now - at) / 1000);
      if (words !== null && time.textContent !== words) time.textContent = words;
    }
  };
  setInterval(refresh, 30_000);
}

function closeRename(form, link) {
  form.hidden = true;
  form.reset();
  link.focus();
}

for (const link of document.querySelectorAll('a[data-rename]')) {
  const form = document.getElementById(link.dataset.rename);
  if (!form) continue;  // the link still opens the rename page
  const input = form.querySelector('input[name="title"]');
  link.setAttribute('aria-controls', form.id);
  link.setAttribute('aria-expanded', 'false');
  link.addEventListener('click', (event) => {
    event.preventDefault();
    form.hidden = !form.hidden;
    link.setAttribute('aria-expanded', String(!form.hidden));
    if (!form.hidden) {
      input.focus();
      input.select();
    }
  });
  form.querySelector('[data-rename-cancel]').addEventListener('click', () => {
    link.setAttribute('aria-expanded', 'false');
    closeRename(form, link);
  });
  input.addEventListener('keydown', (event) => {
    if (event.key === 'Escape') {
      link.setAttribute('aria-expanded', 'false');
      closeRename(form, link);
    }
  });
}
