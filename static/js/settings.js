// Conversation settings: the New conversation dialog, the settings drawer, and the form's checks in the browser.
'use strict';

// Rules: the server (sessions_app/forms.py, protocol/tools.py) decides; these checks repeat its messages (the
// tools' checks live in tool_checks.js) so a mistake shows next to its field before anything is sent. The drawer
// posts with fetch and tells the page (`switchboard:settings-saved` on document; conversation.js tells the
// socket, docs/protocol.md §1); the dialog and the no-script pages post the form as it is. Text reaches the DOM
// through textContent only.

import { TOOL_EXAMPLES, toolsTextProblems } from './tool_checks.js';

const MIN_OUTPUT_TOKENS = 16;
const REASONING_MODELS = /^(o\d|gpt-5|codex)|reason/i;

function wholeNumberProblems(value, min, tooSmall, invalid) {
  if (!value.trim()) return [];
  if (!/^\s*-?\d+\s*$/.test(value)) return [invalid];
  return Number(value) < min ? [tooSmall] : [];
}

/** One settings form: its fields' errors, its model control, its checks and (in the drawer) its saving. */
class SettingsForm {
  constructor(form) {
    this.form = form;
    this.mode = form.dataset.settingsForm;
    this.status = form.querySelector('[data-form-status]');
    this.formErrors = form.querySelector('[data-form-errors]');
    const data = document.getElementById('settings-profiles');
    this.profiles = data ? JSON.parse(data.textContent) : {};
    this.timer = null;
    form.querySelector('[data-tool-examples]')?.removeAttribute('hidden');
    form.addEventListener('click', (event) => this.onClick(event));
    form.addEventListener('input', (event) => this.onInput(event));
    form.addEventListener('change', (event) => {
      if (event.target.name === 'upstream_profile') this.profileChanged();
    });
    form.addEventListener('submit', (event) => this.onSubmit(event));
  }

  field(name) {
    return this.form.elements.namedItem(name);
  }

  showErrors(name, messages) {
    const control = this.field(name);
    const box = this.form.querySelector(`[data-field="${name}"]`);
    if (!control || !box) return false;
    const list = box.querySelector('.field-errors');
    list.replaceChildren(...messages.map((message) => {
      const item = document.createElement('li');
      item.textContent = message;
      return item;
    }));
    list.hidden = messages.length === 0;
    box.classList.toggle('has-error', messages.length > 0);
    if (messages.length) control.setAttribute('aria-invalid', 'true');
    else control.removeAttribute('aria-invalid');
    return true;
  }

  /** What the browser can tell before posting: {field: [messages]}. */
  check() {
    const errors = {
      tools: toolsTextProblems(this.field('tools').value),
      max_output_tokens: wholeNumberProblems(this.field('max_output_tokens').value, MIN_OUTPUT_TOKENS,
        `At least ${MIN_OUTPUT_TOKENS} (the API refuses fewer), or empty for no limit.`,
        'A whole number of tokens, or empty for no limit.'),
      compact_threshold: wholeNumberProblems(this.field('compact_threshold').value, 1,
        'A positive number of tokens, or empty to turn compaction off.',
        'A whole number of tokens, or empty to turn compaction off.'),
    };
    for (const [name, messages] of Object.entries(errors)) this.showErrors(name, messages);
    return Object.values(errors).some((messages) => messages.length);
  }

  onInput(event) {
    const name = event.target.name;
    if (name === 'model') this.reasoningNote();
    if (!['tools', 'max_output_tokens', 'compact_threshold'].includes(name)) return;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.check(), 300);
  }

  onClick(event) {
    const example = event.target.closest('[data-tool-example]');
    if (!example) return;
    const tools = TOOL_EXAMPLES[example.dataset.toolExample];
    const box = this.field('tools');
    box.value = tools ? JSON.stringify(tools, null, 2) : '';
    this.check();
    box.focus();
  }

  /** Another profile: its allowed models as a list, or (any model) a text field with its default model. */
  profileChanged(model = null) {
    const profile = this.profiles[this.field('upstream_profile').value];
    const current = this.field('model');
    if (!profile || !current) return;
    const allowed = profile.allowed_models || [];
    const wanted = model ?? (allowed.length && allowed.includes(current.value) ? current.value : profile.default_model);
    let control;
    if (allowed.length) {
      control = document.createElement('select');
      for (const name of allowed) control.append(new Option(name, name));
      control.value = allowed.includes(wanted) ? wanted : allowed[0];
    } else {
      control = document.createElement('input');
      control.type = 'text';
      control.maxLength = 100;
      control.value = wanted || '';
    }
    for (const attribute of ['id', 'name', 'aria-describedby']) control.setAttribute(attribute, current.getAttribute(attribute));
    current.replaceWith(control);
    this.showErrors('model', []);
    this.reasoningNote();
  }

  reasoningNote() {
    const effort = this.field('reasoning_effort');
    const model = this.field('model');
    const box = this.form.querySelector('[data-field="reasoning_effort"]');
    if (!effort || !model || !box) return;
    let note = box.querySelector('.note');
    if (!note) {
      note = document.createElement('p');
      note.className = 'help note';
      note.id = `${effort.id}_note`;
      box.querySelector('.help').after(note);
      effort.setAttribute('aria-describedby', `${effort.getAttribute('aria-describedby')} ${note.id}`);
    }
    const value = model.value.trim();
    note.textContent = value && !REASONING_MODELS.test(value)
      ? `"${value}" may not take a reasoning effort: the upstream refuses it for models that do not reason.` : '';
    note.hidden = !note.textContent;
  }

  focusFirstError() {
    const box = this.form.querySelector('.field.has-error');
    const control = box && box.querySelector('input, select, textarea');
    if (control) control.focus();
  }

  onSubmit(event) {
    clearTimeout(this.timer);
    if (this.check()) {
      event.preventDefault();
      this.say('Not saved: fix the fields marked below.');
      this.focusFirstError();
      return;
    }
    if (this.mode === 'drawer') {
      event.preventDefault();
      this.save();
    }
  }

  say(text) {
    if (this.status) this.status.textContent = text;
  }

  async save() {
    this.say('Saving…');
    let response;
    let body = null;
    try {
      response = await fetch(this.form.action, {
        method: 'POST', body: new FormData(this.form), credentials: 'same-origin',
        headers: { Accept: 'application/json', 'X-CSRFToken': this.field('csrfmiddlewaretoken').value },
      });
      if ((response.headers.get('Content-Type') || '').includes('application/json')) body = await response.json();
    } catch (error) {
      this.say('Not saved: the server could not be reached. Try again.');
      return;
    }
    if (!body) {
      this.say(`Not saved (HTTP ${response.status}): reload the page and try again.`);
      return;
    }
    const errors = body.errors || {};
    for (const box of this.form.querySelectorAll('[data-field]')) {
      this.showErrors(box.dataset.field, errors[box.dataset.field] || []);
    }
    const general = [...(errors.__all__ || [])];
    for (const [name, messages] of Object.entries(errors)) {
      if (name !== '__all__' && !this.form.querySelector(`[data-field="${name}"]`)) general.push(...messages);
    }
    this.formErrors.replaceChildren(...general.map((message) => {
      const item = document.createElement('li');
      item.textContent = message;
      return item;
    }));
    this.formErrors.hidden = general.length === 0;
    if (!body.ok) {
      this.say('Not saved: fix the fields marked below.');
      this.focusFirstError();
      return;
    }
    this.fill(body.settings);
    this.say('Saved. Your next message uses these settings.');
    document.dispatchEvent(new CustomEvent('switchboard:settings-saved', { detail: body.settings }));
  }

  /** Show saved settings (this tab's, or another tab's from the socket). */
  fill(settings) {
    const set = (name, value) => {
      const control = this.field(name);
      if (!control) return;
      if (control.type === 'checkbox') control.checked = Boolean(value);
      else control.value = value ?? '';
    };
    set('title', settings.title);
    set('upstream_profile', settings.upstream_profile);
    this.profileChanged(settings.model);
    set('model', settings.model);
    set('reasoning_effort', settings.reasoning_effort);
    set('max_output_tokens', settings.max_output_tokens);
    set('instructions', settings.instructions);
    set('tools', settings.tools && settings.tools.length ? JSON.stringify(settings.tools, null, 2) : '');
    set('store', settings.store);
    set('recovery_enabled', settings.recovery_enabled);
    set('compact_threshold', settings.compact_threshold);
    this.reasoningNote();
    this.markSaved();
  }

  /** The values shown now become what Cancel returns to (form.reset() restores the defaults). */
  markSaved() {
    for (const control of this.form.elements) {
      if (control.type === 'checkbox') control.defaultChecked = control.checked;
      else if (control.tagName === 'SELECT') [...control.options].forEach((option) => { option.defaultSelected = option.selected; });
      else if (control.tagName === 'TEXTAREA' || control.tagName === 'INPUT') control.defaultValue = control.value;
    }
    this.savedModel = this.field('model')?.value ?? null;
  }

  /** Cancel (or Esc): back to the saved settings, no messages left. */
  discard() {
    clearTimeout(this.timer);
    this.form.reset();
    this.profileChanged(this.savedModel);
    for (const box of this.form.querySelectorAll('[data-field]')) this.showErrors(box.dataset.field, []);
    this.formErrors.hidden = true;
    this.say('');
  }
}

/** The conversation page's heading and model line follow the saved settings. */
function showOnPage(settings) {
  const heading = document.getElementById('conversation-title') || document.querySelector('.toolbar h1');
  // An emptied title reads as the server names an untitled conversation (Conversation.__str__).
  const id = document.getElementById('transcript')?.dataset.conversation;
  const title = settings.title || (id ? `Conversation ${id.slice(0, 8)}` : '');
  if (heading && title) {
    heading.textContent = title;
    document.title = `${title} · Switchboard`;
  }
  const model = document.getElementById('conversation-model');
  if (model) model.textContent = settings.model;
  const profile = document.getElementById('conversation-profile');
  if (profile) profile.textContent = settings.upstream_profile_name || 'no upstream';
}

/** A <dialog> opened by its [data-opens] button: focus moves in, Esc or Cancel closes, focus returns. */
function wireDialog(dialog, settingsForm) {
  const opener = document.querySelector(`[data-opens="${dialog.id}"]`);
  if (!opener) return;
  document.querySelectorAll('.no-script-only').forEach((link) => { link.hidden = true; });
  opener.hidden = false;
  opener.addEventListener('click', () => {
    dialog.showModal();
    opener.setAttribute('aria-expanded', 'true');
    const first = dialog.querySelector('form input:not([type=hidden]), form select, form textarea');
    if (first) first.focus();
  });
  dialog.addEventListener('click', (event) => {
    if (event.target.closest('[data-close]')) {
      dialog.close();
      return;
    }
    const box = dialog.getBoundingClientRect();
    const outside = event.clientX < box.left || event.clientX > box.right || event.clientY < box.top
      || event.clientY > box.bottom;
    if (event.target === dialog && outside && event.detail > 0) dialog.close();  // a click on the backdrop
  });
  dialog.addEventListener('close', () => {
    if (settingsForm) settingsForm.discard();
    opener.setAttribute('aria-expanded', 'false');
    opener.focus();
  });
}

const settingsForms = new Map();
for (const form of document.querySelectorAll('form[data-settings-form]')) {
  const settingsForm = new SettingsForm(form);
  settingsForms.set(form, settingsForm);
  settingsForm.reasoningNote();
  settingsForm.markSaved();
  if (settingsForm.mode === 'drawer') {
    document.addEventListener('switchboard:settings', (event) => {
      settingsForm.fill(event.detail);
      showOnPage(event.detail);
    });
    document.addEventListener('switchboard:settings-saved', (event) => showOnPage(event.detail));
  }
}
for (const dialog of document.querySelectorAll('dialog.settings-dialog')) {
  wireDialog(dialog, settingsForms.get(dialog.querySelector('form[data-settings-form]')));
}
