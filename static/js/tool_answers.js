// Answers to the model's function calls: one form per pending call, all sent in one response.create.
'use strict';

// Rules: each form shows the call's name, its call id and its arguments pretty-printed. An output
// declared as JSON is parsed before anything is sent, with the error beside its field. "Answer in
// plain text instead" hides the forms: the composer's text then answers every call.

import { el } from './turns.js';

export class ToolAnswers {
  /** `root`: the forms' container; `composer`: the message box, hidden while the forms answer. */
  constructor(root, composer, { onPlain = () => {} } = {}) {
    this.root = root;
    this.composer = composer;
    this.plain = false;
    root.addEventListener('click', (event) => {
      if (!event.target.closest('button[data-plain]')) return;
      this.plain = true;
      this.show([]);
      onPlain();
      composer.focus();
    });
  }

  /** The forms for `calls` (unchanged when they already show these calls). */
  show(calls) {
    const wanted = this.plain ? [] : calls;
    const shown = [...this.root.querySelectorAll('.tool-answer')].map((form) => form.dataset.callId).join(' ');
    if (shown === wanted.map((call) => call.call_id).join(' ')) return;
    const forms = wanted.map((call, index) => form(call, index));
    const plain = el('button', 'link', 'Answer in plain text instead');
    plain.type = 'button';
    plain.dataset.plain = 'true';
    this.root.replaceChildren(...forms, ...(forms.length ? [plain] : []));
    this.root.hidden = !forms.length;
    this.composer.hidden = forms.length > 0;  // the forms are the answer; plain text brings the box back
  }

  /** After a send: forms gone, the plain-text choice forgotten. */
  clear() {
    this.plain = false;
    this.show([]);
  }

  /** The function_call_output items of the forms, or null (errors shown, focus on the first) if one is bad. */
  outputs() {
    let valid = true;
    const outputs = [...this.root.querySelectorAll('.tool-answer')].map((box) => {
      const field = box.querySelector('textarea');
      const error = box.querySelector('.field-error');
      const text = field.value;
      error.hidden = true;
      field.removeAttribute('aria-invalid');
      let problem = text.trim() ? '' : 'Write this call\'s output.';
      if (!problem && box.querySelector('.as-json').checked) {
        try { JSON.parse(text); } catch (exc) { problem = `Not valid JSON: ${exc.message}`; }
      }
      if (problem) {
        valid = false;
        error.textContent = problem;
        error.hidden = false;
        field.setAttribute('aria-invalid', 'true');
      }
      return { type: 'function_call_output', call_id: box.dataset.callId, output: text };
    });
    if (!valid) this.root.querySelector('[aria-invalid]')?.focus();
    return valid ? outputs : null;
  }
}

function form(call, index) {
  const box = el('section', 'tool-answer');
  box.dataset.callId = call.call_id;
  const title = el('h3', '', call.name || 'function');
  title.append(' ', el('code', '', call.call_id));
  let args = call.arguments || '';
  try { args = JSON.stringify(JSON.parse(args), null, 2); } catch (error) { /* shown as sent */ }
  const field = el('textarea');
  field.id = `tool-output-${index}`;
  field.rows = 2;
  const label = el('label', 'visually-hidden', `Output of ${call.name} (${call.call_id})`);
  label.htmlFor = field.id;
  const json = el('label', 'json');
  const check = el('input');
  check.type = 'checkbox';
  check.className = 'as-json';
  json.append(check, 'Output is JSON (checked before sending)');
  const error = el('p', 'field-error');
  error.hidden = true;
  error.id = `${field.id}-error`;
  field.setAttribute('aria-describedby', error.id);
  box.append(title, el('pre', '', args), label, field, json, error);
  return box;
}
