// The console's toolkit: the JSON API client (session cookies, CSRF header), a small DOM
// builder that only ever sets text (never HTML, so nothing an API returns can run), and forms
// whose API errors land next to the field that caused them.

/** Who is signed in: `{user, csrf, permissions}`, or null. */
export const session = { current: null };

/** Called when an API answer says the session is gone (401). Set by app.js. */
export const hooks = { signedOut: () => {} };

const UNSAFE = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);

/**
 * Calls the gateway. Resolves to `{status, ok, body}` whatever the status (network failures
 * become status 0); unsafe methods carry the session's CSRF token.
 */
export async function api(method, path, body) {
  const headers = { accept: 'application/json' };
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (UNSAFE.has(method) && session.current?.csrf) headers['x-csrf-token'] = session.current.csrf;
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: 'same-origin',
      cache: 'no-store',
    });
  } catch (e) {
    return { status: 0, ok: false, body: { error: { message: 'The registry cannot be reached', data: String(e) } } };
  }
  let parsed = null;
  const text = await response.text();
  if (text) {
    try { parsed = JSON.parse(text); } catch { parsed = { raw: text }; }
  }
  const answer = { status: response.status, ok: response.ok, body: parsed };
  if (response.status === 401 && session.current && path !== '/profile/signin') {
    session.current = null;
    hooks.signedOut(answer);
  }
  return answer;
}

/** `h('p', {class: 'x'}, 'text', child)`: an element with attributes and text or children. */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === false || value === null || value === undefined) continue;
    if (name.startsWith('on') && typeof value === 'function') {
      el.addEventListener(name.slice(2), value);
    } else if (value === true) {
      el.setAttribute(name, '');
    } else {
      el.setAttribute(name, String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replaces the content of `el`. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** A date-time from the API, shown in the browser's time zone as `YYYY-MM-DD HH:MM`. */
export function when(iso) {
  if (!iso) return '—';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  const p = (n) => String(n).padStart(2, '0');
  const shown = `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}`;
  return h('time', { datetime: d.toISOString() }, shown);
}

/** Whether the signed-in user holds `permission` (names from `GET /profile`). */
export function can(permission) {
  return Boolean(session.current?.permissions?.includes(permission));
}

/** A notice paragraph: kind is '', 'error', 'ok' or 'warning'. */
export function notice(kind, ...text) {
  return h('p', { class: `notice ${kind}`.trim(), role: kind === 'error' ? 'alert' : 'status' }, ...text);
}

/** What the API said went wrong, in one line. */
export function problem(answer) {
  const error = answer.body?.error;
  if (answer.status === 0) return 'The registry cannot be reached. Check the network and try again.';
  if (!error) return `Unexpected answer (HTTP ${answer.status}).`;
  const data = Array.isArray(error.data) ? error.data.join('; ') : error.data;
  if (answer.status === 403) return `You do not have access to this (${data || 'forbidden'}).`;
  if (answer.status === 429) return 'Too many attempts. Wait a minute and try again.';
  return data && typeof data === 'string' ? `${error.message}: ${data}` : error.message || `HTTP ${answer.status}`;
}

/** The notice for a page whose data the API refused. 403 gets its own id for the tests. */
export function refusal(answer) {
  const el = notice('error', problem(answer));
  if (answer.status === 403) el.id = 'forbidden';
  return el;
}

let formCount = 0;

/**
 * A labelled form. `fields`: `{name, label, type?, options?, required?, hint?, value?,
 * autocomplete?}`; `options` makes a select (`[value, text]` pairs). `submit(values, form)`
 * returns an API answer or nothing; an error answer is shown next to its fields (see
 * `showErrors`), `errorMap` turns non-field error codes into `[field, message]`.
 */
export function form({ id, fields, submitLabel, submit, errorMap = {}, extra = [] }) {
  const key = id || `form${++formCount}`;
  const formError = h('p', { class: 'notice error form-error', role: 'alert', id: `${key}-error` });
  formError.hidden = true;
  const el = h('form', { id: key });
  const controls = {};
  const rows = fields.map((f) => (Array.isArray(f) ? h('div', { class: 'row' }, f.map(field)) : field(f)));
  function field(f) {
    const inputId = `${key}-${f.name}`;
    const errorId = `${inputId}-error`;
    const hintId = f.hint ? `${inputId}-hint` : null;
    const describedBy = [hintId, errorId].filter(Boolean).join(' ');
    const common = {
      id: inputId, name: f.name, required: Boolean(f.required), 'aria-describedby': describedBy,
      autocomplete: f.autocomplete || 'off',
    };
    let control;
    if (f.options) {
      control = h('select', common, f.options.map(([value, text]) => h('option', { value, selected: value === f.value }, text)));
    } else {
      control = h('input', { ...common, type: f.type || 'text', value: f.value ?? '', placeholder: f.placeholder, readonly: f.readonly });
    }
    controls[f.name] = control;
    return h('div', { class: 'field' },
      h('label', { for: inputId }, f.label),
      f.hint ? h('span', { class: 'hint', id: hintId }, f.hint) : null,
      control,
      h('span', { class: 'field-error', id: errorId, 'data-field': f.name }));
  }
  const button = h('button', { type: 'submit' }, submitLabel);
  append(el, [formError, rows, h('div', { class: 'actions' }, button, extra)]);
  el.addEventListener('submit', async (event) => {
    event.preventDefault();
    clearErrors(el);
    const values = {};
    for (const [name, control] of Object.entries(controls)) values[name] = control.value;
    button.disabled = true;
    try {
      const answer = await submit(values, el);
      if (answer && !answer.ok) showErrors(el, answer, errorMap);
    } finally {
      button.disabled = false;
    }
  });
  el.controls = controls;
  return el;
}

/** Clears the errors a previous submission left on `formEl`. */
export function clearErrors(formEl) {
  for (const span of formEl.querySelectorAll('.field-error')) span.textContent = '';
  for (const input of formEl.querySelectorAll('[aria-invalid]')) input.removeAttribute('aria-invalid');
  const top = formEl.querySelector('.form-error');
  top.textContent = '';
  top.hidden = true;
}

/**
 * Puts an API error next to its fields. Validation errors come as `data: ["/name: must be
 * …", …]`: each goes beside the field its path names (`/admin/email` → `admin_email`, a form
 * may prefix names). Coded errors (`data: "invalid_credentials"`) go where `errorMap` says;
 * the rest above the form.
 */
export function showErrors(formEl, answer, errorMap = {}) {
  const data = answer.body?.error?.data;
  const leftovers = [];
  const put = (name, message) => {
    const span = formEl.querySelector(`.field-error[data-field="${CSS.escape(name)}"]`);
    if (!span) return false;
    span.textContent = span.textContent ? `${span.textContent} ${message}` : message;
    span.parentElement.querySelector('input, select')?.setAttribute('aria-invalid', 'true');
    return true;
  };
  if (Array.isArray(data)) {
    for (const item of data) {
      const match = /^\/?([A-Za-z0-9_/]*):\s*(.*)$/.exec(String(item));
      const path = match ? match[1].replace(/\//g, '_') : '';
      const prefixed = formEl.dataset.prefix ? `${formEl.dataset.prefix}${path}` : path;
      if (!(match && (put(prefixed, match[2]) || put(path, match[2])))) leftovers.push(String(item));
    }
  } else if (typeof data === 'string' && errorMap[data]) {
    const [name, message] = errorMap[data];
    if (!put(name, message)) leftovers.push(message);
  } else {
    leftovers.push(problem(answer));
  }
  if (leftovers.length) {
    const top = formEl.querySelector('.form-error');
    top.textContent = leftovers.join(' ');
    top.hidden = false;
  }
  formEl.querySelector('[aria-invalid="true"]')?.focus();
}

/** A table of `rows`: `columns` are `[heading, row => cell]`; `empty` when there are none. */
export function table(id, columns, rows, empty) {
  if (!rows.length) return h('p', { class: 'empty', id: `${id}-empty` }, empty);
  return h('div', { class: 'table-wrap' },
    h('table', { id },
      h('thead', {}, h('tr', {}, columns.map(([heading]) => h('th', { scope: 'col' }, heading)))),
      h('tbody', {}, rows.map((row) => h('tr', {}, columns.map(([heading, cell]) => {
        const value = cell(row);
        return h('td', { class: heading === '' ? 'actions' : null }, value);
      }))))));
}

/**
 * A secret shown once, with a copy button and a warning that it cannot be shown again.
 * `items` are `[label, value, id]`.
 */
export function shownOnce(title, warning, items, onDone) {
  const box = h('section', { class: 'panel', id: 'shown-once', 'aria-live': 'polite' }, h('h2', {}, title),
    notice('warning', h('strong', {}, 'Shown once. '), warning));
  for (const [label, value, id] of items) {
    const input = h('input', { id, type: 'text', readonly: true, value, 'aria-label': label, spellcheck: 'false' });
    const status = h('span', { class: 'hint', role: 'status', id: `${id}-copied` });
    const copy = h('button', { type: 'button', class: 'secondary', id: `${id}-copy` }, 'Copy');
    copy.addEventListener('click', async () => {
      input.select();
      try {
        await navigator.clipboard.writeText(value);
        status.textContent = 'Copied to the clipboard.';
      } catch {
        // Without clipboard access (an insecure context), the text stays selected for Ctrl+C.
        status.textContent = document.execCommand?.('copy') ? 'Copied to the clipboard.' : 'Selected: press Ctrl+C to copy.';
      }
    });
    append(box, [h('label', { for: id }, label), h('div', { class: 'secret' }, input, copy), status]);
  }
  const done = h('button', { type: 'button', id: 'shown-once-done' }, 'I have stored it');
  done.addEventListener('click', () => { box.remove(); onDone?.(); });
  append(box, [h('p', {}, done)]);
  return box;
}
