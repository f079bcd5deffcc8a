// Assistant text as Markdown: markdown-it renders, DOMPurify sanitises, the DOM gets the result.
'use strict';

// Rules: raw HTML in model text is off (markdown-it `html: false` turns it into text) and whatever
// markdown-it emits still passes DOMPurify, which allows only http(s) and mailto links and no
// `style` (the page's CSP forbids inline style anyway). Fenced code becomes <pre><code> with a
// Copy button. A streaming message is re-rendered at most once per animation frame, never once per
// delta. User text never comes here: it stays plain text.

import markdownit from '../vendor/markdown-it-15.0.3/markdown-it.esm.min.mjs';
import DOMPurify from '../vendor/dompurify-3.5.0/purify.es.mjs';

const md = markdownit({ html: false, linkify: true, typographer: false, breaks: false });
const SAFE_URL = /^(?:https?:|mailto:|#)/i;
const SANITIZE = {
  USE_PROFILES: { html: true },
  FORBID_TAGS: ['style', 'form', 'input', 'button', 'textarea', 'select', 'img'],
  FORBID_ATTR: ['style', 'class', 'id'],
  ALLOWED_URI_REGEXP: SAFE_URL,
};

// Links open outside the page and leak nothing about it.
DOMPurify.addHook('afterSanitizeAttributes', (node) => {
  if (node.tagName === 'A') {
    node.setAttribute('rel', 'noopener noreferrer nofollow');
    node.setAttribute('target', '_blank');
  }
});

/** Sanitised HTML for `text` (a document fragment, so no string of markup is ever assigned). */
export function renderMarkdown(text) {
  return DOMPurify.sanitize(md.render(String(text ?? '')), { ...SANITIZE, RETURN_DOM_FRAGMENT: true });
}

/** Copy `text` to the clipboard, telling the user on `button` how it went. */
export async function copyText(button, text) {
  const label = button.textContent;
  const named = button.getAttribute('aria-label');
  let said = 'Copied';
  try {
    await navigator.clipboard.writeText(text);
  } catch (error) {
    said = 'Copy failed';  // no clipboard here (an insecure origin, or permission refused)
  }
  button.textContent = said;
  if (named) button.setAttribute('aria-label', said);
  setTimeout(() => {
    button.textContent = label;
    if (named) button.setAttribute('aria-label', named);
  }, 1500);
}

function addCodeCopyButtons(root) {
  for (const pre of root.querySelectorAll('pre')) {
    const code = pre.querySelector('code');
    if (!code) continue;
    const wrap = document.createElement('div');
    wrap.className = 'code-block';
    const button = document.createElement('button');
    button.type = 'button';
    button.className = 'copy-code secondary';
    button.textContent = 'Copy';
    button.setAttribute('aria-label', 'Copy code');
    button.addEventListener('click', () => copyText(button, code.textContent));
    pre.replaceWith(wrap);
    wrap.append(button, pre);
  }
}

/** A block of Markdown in `element`, fed whole (`set`) or by deltas (`append`). */
export class MarkdownBlock {
  constructor(element, text = '') {
    this.el = element;
    this.el.classList.add('markdown');
    this.text = '';
    this.frame = 0;
    this.set(text);
  }

  set(text) {
    this.text = String(text ?? '');
    this.flush();
  }

  append(delta) {
    this.text += delta;
    if (!this.frame) this.frame = requestAnimationFrame(() => this.flush());
  }

  flush() {
    if (this.frame) cancelAnimationFrame(this.frame);
    this.frame = 0;
    const fragment = renderMarkdown(this.text);
    addCodeCopyButtons(fragment);
    this.el.replaceChildren(fragment);
  }
}
