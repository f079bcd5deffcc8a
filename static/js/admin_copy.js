// Admin copy buttons: <button class="sb-copy" data-copy-text="…"> copies the whole (cut short) id.
'use strict';

document.addEventListener('click', async (event) => {
  const button = event.target.closest('button.sb-copy[data-copy-text]');
  if (!button) return;
  event.preventDefault();
  const label = button.textContent;
  try {
    await navigator.clipboard.writeText(button.dataset.copyText);
    button.textContent = 'copied';
  } catch (error) {
    // No clipboard (an insecure origin, or permission refused): select the id for Ctrl+C instead.
    const code = button.parentElement.querySelector('code');
    if (code) window.getSelection().selectAllChildren(code);
    button.textContent = 'Ctrl+C';
  }
  setTimeout(() => { button.textContent = label; }, 1500);
});
