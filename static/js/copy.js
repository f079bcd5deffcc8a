// Copy buttons: <button class="copy" data-copy="#element-id"> copies that element's text.
'use strict';

for (const button of document.querySelectorAll('button.copy[data-copy]')) {
  button.addEventListener('click', async () => {
    const source = document.querySelector(button.dataset.copy);
    if (!source) return;
    const label = button.textContent;
    try {
      await navigator.clipboard.writeText(source.textContent);
      button.textContent = 'Copied';
    } catch (error) {
      // No clipboard (an insecure origin, or permission refused): select the text for Ctrl+C instead.
      window.getSelection().selectAllChildren(source);
      button.textContent = 'Press Ctrl+C';
    }
    setTimeout(() => { button.textContent = label; }, 2000);
  });
}
