// The console's pages. Each page names the permission (CONTRACT §4, as `GET /profile` lists
// them) that puts it in the sidebar; its data comes from the same JSON API the staff command
// line uses, so the gateway decides access, and a page opened without it shows the 403.

import { api, can, fill, form, h, notice, problem, refusal, session, shownOnce, table, when } from './lib.js';

const confirmRevoke = (what) => window.confirm(`${what}\n\nThis cannot be undone.`);

/** Renders a page section: title, intro, then the parts (re-rendered by `reload`). */
function section(container, title, intro) {
  const top = h('div', { id: 'top' });
  const body = h('div', { id: 'body' });
  fill(container, h('h1', {}, title), intro ? h('p', { class: 'hint' }, intro) : null, top, body);
  return { top, body };
}

/** A credential's last use: when, from which client network, with which user agent. */
function lastUsed(last) {
  if (!last) return h('span', { class: 'hint' }, 'never');
  return h('span', { class: 'last-used', title: last.user_agent || 'no user agent' },
    when(last.at), ' from ', h('code', {}, last.network));
}

// ---------------------------------------------------------------------------- tokens

async function tokens(container) {
  const { top, body } = section(container, 'Application tokens',
    'Your servers send an application token as "Authorization: Bearer <token>" on the journeys and CEE API. Tokens never expire; revoke one you no longer use or that may have leaked.');
  const reload = async () => {
    const answer = await api('GET', '/applications');
    if (!answer.ok) return fill(body, refusal(answer));
    const manage = can('applications.manage');
    fill(body, h('h2', {}, 'Live tokens'), table('tokens', [
      ['Name', (a) => a.name],
      ['Application id', (a) => h('code', {}, a.uuid)],
      ['Created', (a) => when(a.created_at)],
      ['Last used', (a) => lastUsed(a.last_used)],
      ['', (a) => (manage ? h('button', {
        type: 'button', class: 'danger', 'data-revoke': a.uuid, 'aria-label': `Revoke ${a.name}`,
        onclick: async (event) => {
          if (!confirmRevoke(`Revoke the token "${a.name}"? Servers using it will be refused at once.`)) return;
          event.target.disabled = true;
          const answer = await api('DELETE', `/applications/${encodeURIComponent(a.uuid)}`);
          if (!answer.ok) {
            event.target.disabled = false;
            return top.prepend(notice('error', problem(answer)));
          }
          top.prepend(notice('ok', `Token "${a.name}" revoked.`));
          await reload();
        },
      }, 'Revoke') : null)],
    ], answer.body, 'No live application token.'));
  };
  if (can('applications.manage')) {
    const create = form({
      id: 'new-token',
      fields: [{ name: 'name', label: 'Application name', required: true, hint: 'What uses the token, e.g. "production backend".' }],
      submitLabel: 'Create token',
      submit: async ({ name }) => {
        const answer = await api('POST', '/applications', { name });
        if (!answer.ok) return answer;
        create.reset();
        const { application, token } = answer.body;
        top.querySelector('#shown-once')?.remove();
        top.prepend(shownOnce(`Token for "${application.name}"`,
          'Copy this token now and keep it in your server\'s secret store: the registry keeps only its id and cannot show it again. If it is lost, create a new one and revoke this one.',
          [['Application token', token, 'token-value']]));
        await reload();
        return answer;
      },
    });
    top.append(h('section', { class: 'panel' }, h('h2', {}, 'New token'), create));
  }
  await reload();
}

// ---------------------------------------------------------------------------- credentials

async function credentials(container) {
  const own = session.current.user.operator_id;
  const registry = own == null;
  const { top, body } = section(container, 'API credentials',
    'An API credential (access key and secret key) is exchanged for short-lived access tokens: POST /api/v1/auth/token/ {"apiKey"}. Revoking it refuses every token minted from it.');
  const filter = { operator: '' };
  const reload = async () => {
    // Operator admins name their own operator, as the reference's guard requires.
    const operator = registry ? filter.operator : String(own);
    const q = operator ? `?operator_id=${encodeURIComponent(operator)}` : '';
    const answer = await api('GET', `/v3/auth/credentials${q}`);
    if (!answer.ok) return fill(body, refusal(answer));
    fill(body, h('h2', {}, 'Credentials'), table('credentials', [
      ['Access key', (c) => h('code', {}, c.token_id)],
      ['Operator', (c) => c.operator_id],
      ['Created', (c) => when(c.created_at)],
      ['Last used', (c) => lastUsed(c.last_used)],
      ['', (c) => h('button', {
        type: 'button', class: 'danger', 'data-revoke': c.token_id, 'aria-label': `Revoke ${c.token_id}`,
        onclick: async (event) => {
          if (!confirmRevoke(`Revoke the credential ${c.token_id}? Its access and refresh tokens stop working.`)) return;
          event.target.disabled = true;
          const path = `/v3/auth/credentials?operator_id=${c.operator_id}&token_id=${encodeURIComponent(c.token_id)}`;
          const answer = await api('DELETE', path);
          if (!answer.ok) {
            event.target.disabled = false;
            return top.prepend(notice('error', problem(answer)));
          }
          top.prepend(notice('ok', `Credential ${c.token_id} revoked.`));
          await reload();
        },
      }, 'Revoke')],
    ], answer.body, 'No live credential.'));
  };
  const fields = registry
    ? [{ name: 'operator_id', label: 'Operator id', type: 'number', required: true, hint: 'Registry admins create credentials for a named operator.' }]
    : [];
  const create = form({
    id: 'new-credential',
    fields,
    submitLabel: 'Create credential',
    submit: async ({ operator_id: operatorId }) => {
      const request = { operator_id: registry ? Number(operatorId) || operatorId : own };
      const answer = await api('POST', '/v3/auth/credentials', request);
      if (!answer.ok) return answer;
      const { access_key: accessKey, secret_key: secretKey, api_key: apiKey } = answer.body;
      top.querySelector('#shown-once')?.remove();
      top.prepend(shownOnce('New API credential',
        'Copy the secret key (or the API key, which holds both) now: only its hash is stored, so it cannot be shown again.',
        [['Access key', accessKey, 'access-key-value'], ['Secret key', secretKey, 'secret-key-value'], ['API key', apiKey, 'api-key-value']]));
      if (registry) filter.operator = String(operatorId);
      await reload();
      return answer;
    },
  });
  top.append(h('section', { class: 'panel' }, h('h2', {}, 'New credential'), create));
  await reload();
}

// ---------------------------------------------------------------------------- users

const OPERATOR_ROLES = [['operator.user', 'operator.user (reads journeys, lists tokens)'],
  ['operator.admin', 'operator.admin (manages tokens, credentials, users)']];

/** Fields of a new person; `whose` qualifies the labels ("Admin's email"). */
function userFields(prefix = '', whose = '') {
  const label = (text) => (whose ? `${whose} ${text.toLowerCase()}` : text);
  return [
    [{ name: `${prefix}first_name`, label: label('First name'), required: true },
      { name: `${prefix}last_name`, label: label('Last name'), required: true }],
    { name: `${prefix}email`, label: label('Email'), type: 'email', required: true },
    { name: `${prefix}password`, label: label('Initial password'), type: 'password', required: true, hint: '12 to 128 characters; give it to the person by a separate channel.', autocomplete: 'new-password' },
  ];
}

async function users(container) {
  const me = session.current.user;
  const operatorId = me.operator_id;
  const { top, body } = section(container, 'Users', 'The people of your operator who may sign in.');
  const reload = async () => {
    const answer = await api('GET', `/admin/operators/${operatorId}/users`);
    if (!answer.ok) return fill(body, refusal(answer));
    fill(body, h('h2', {}, 'Users'), table('users', [
      ['Name', (u) => `${u.first_name} ${u.last_name}`],
      ['Email', (u) => u.email],
      ['Role', (u) => u.role],
      ['', (u) => (u.id === me.id ? h('span', { class: 'hint' }, 'you') : h('button', {
        type: 'button', class: 'danger', 'data-deactivate': u.email, 'aria-label': `Deactivate ${u.email}`,
        onclick: async (event) => {
          if (!confirmRevoke(`Deactivate ${u.email}? They can no longer sign in and their sessions end.`)) return;
          event.target.disabled = true;
          const answer = await api('DELETE', `/admin/operators/${operatorId}/users/${encodeURIComponent(u.id)}`);
          if (!answer.ok) {
            event.target.disabled = false;
            return top.prepend(notice('error', problem(answer)));
          }
          await reload();
        },
      }, 'Deactivate'))],
    ], answer.body, 'No user.'));
  };
  const create = form({
    id: 'new-user',
    fields: [...userFields(), { name: 'role', label: 'Role', options: OPERATOR_ROLES, value: 'operator.user' }],
    submitLabel: 'Add user',
    errorMap: { 'email already registered': ['email', 'This email already has an account.'] },
    submit: async (values) => {
      const answer = await api('POST', `/admin/operators/${operatorId}/users`, values);
      if (!answer.ok) return answer;
      create.reset();
      top.prepend(notice('ok', `${answer.body.email} can now sign in.`));
      await reload();
      return answer;
    },
  });
  top.append(h('section', { class: 'panel' }, h('h2', {}, 'Add a user'), create));
  await reload();
}

// ---------------------------------------------------------------------------- journeys

const STATUSES = ['pending', 'ok', 'acquisition_error', 'validation_error', 'normalization_error',
  'terms_violation_error', 'fraud_error', 'anomaly_error', 'canceled', 'unknown'];

/** `YYYY-MM-DD` of a local date. */
function day(d) {
  const p = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}`;
}

async function journeys(container, { rest, query }) {
  if (rest.length && rest[0]) return journey(container, rest[0], query.get('operator_id'));
  const registry = session.current.user.operator_id == null;
  const { top, body } = section(container, 'Journeys',
    'Journeys your servers sent, by status and period (start date, newest first; the last 90 days).');
  const today = new Date();
  const weekAgo = new Date(today.getTime() - 6 * 86400e3);
  const fields = [
    [{ name: 'status', label: 'Status', options: STATUSES.map((s) => [s, s]), value: query.get('status') || 'pending' },
      { name: 'start', label: 'From', type: 'date', value: query.get('start') || day(weekAgo), required: true },
      { name: 'end', label: 'To (included)', type: 'date', value: query.get('end') || day(today), required: true }],
  ];
  if (registry) fields[0].push({ name: 'operator_id', label: 'Operator id', type: 'number', value: query.get('operator_id') || '', hint: 'Empty: every operator.' });
  const search = async (values) => {
    const params = new URLSearchParams({ status: values.status, limit: '200' });
    const start = new Date(`${values.start}T00:00:00`);
    const end = new Date(`${values.end}T00:00:00`);
    if (!Number.isNaN(start.getTime())) params.set('start', start.toISOString());
    if (!Number.isNaN(end.getTime())) params.set('end', new Date(end.getTime() + 86400e3).toISOString());
    if (values.operator_id) params.set('operator_id', values.operator_id);
    const answer = await api('GET', `/v3/journeys?${params}`);
    if (!answer.ok) {
      fill(body);
      if (answer.status === 403) fill(body, refusal(answer));
      return answer;
    }
    fill(body, h('h2', {}, `${answer.body.length} ${values.status} journey(s)`), table('journeys', [
      ['Journey', (j) => h('a', { href: `#/journeys/${encodeURIComponent(j.operator_journey_id)}?operator_id=${j.operator_id}` }, j.operator_journey_id)],
      ['Status', (j) => h('span', { class: 'status' }, j.status)],
      ['Start', (j) => when(j.start)],
      ['Received', (j) => when(j.created_at)],
      ...(registry ? [['Operator', (j) => j.operator_id]] : []),
    ], answer.body, 'No journey with this status in this period.'));
    return answer;
  };
  const filters = form({ id: 'journey-filter', fields, submitLabel: 'Show', submit: search });
  top.append(h('section', { class: 'panel' }, filters));
  filters.requestSubmit();
}

async function journey(container, id, operatorId) {
  const q = operatorId ? `?operator_id=${encodeURIComponent(operatorId)}` : '';
  const back = h('p', {}, h('a', { href: '#/journeys' }, '← All journeys'));
  fill(container, back, h('h1', {}, 'Journey ', h('code', {}, id)));
  const answer = await api('GET', `/v3/journeys/${encodeURIComponent(id)}${q}`);
  if (!answer.ok) return container.append(answer.status === 404 ? notice('error', 'No such journey.') : refusal(answer));
  const j = answer.body;
  // Terms labels are strings; fraud and anomaly labels are {label, metas?} objects.
  const label = (l) => {
    if (typeof l === 'string') return l;
    const metas = l.metas || {};
    const about = [];
    if (metas.conflicting_journey_id) about.push(`with journey ${metas.conflicting_journey_id}`);
    if (typeof metas.temporal_overlap_duration_ratio === 'number') {
      about.push(`${Math.round(metas.temporal_overlap_duration_ratio * 100)} % overlap`);
    }
    return about.length ? `${l.label} (${about.join(', ')})` : String(l.label);
  };
  const labels = (id2, list, none) => (list && list.length
    ? h('ul', { class: 'labels', id: id2 }, list.map((l) => h('li', {}, label(l))))
    : h('span', { class: 'hint', id: id2 }, none));
  container.append(h('section', { class: 'panel' }, h('dl', { class: 'facts', id: 'journey' },
    h('dt', {}, 'Status'), h('dd', { class: 'status', id: 'journey-status' }, j.status),
    h('dt', {}, 'Operator journey id'), h('dd', {}, j.operator_journey_id),
    h('dt', {}, 'Registry id'), h('dd', {}, h('code', {}, j.journey_id)),
    h('dt', {}, 'Received'), h('dd', {}, when(j.created_at)),
    h('dt', {}, 'Terms violations'), h('dd', {}, labels('terms-labels', j.terms_violation_details, 'none')),
    h('dt', {}, 'Fraud checks'), h('dd', {}, labels('fraud-labels', j.fraud_error_labels, 'none')),
    h('dt', {}, 'Anomaly checks'), h('dd', {}, labels('anomaly-labels', j.anomaly_error_details, 'none')))));
}

// ---------------------------------------------------------------------------- blacklist

const KINDS = [
  ['credential', 'credential (an API access key)'], ['application', 'application (its id)'],
  ['token', 'token (the raw token)'], ['jti', 'jti (one token\'s id)'], ['user', 'user (a person\'s id)'],
  ['operator', 'operator (its numeric id)']];

async function blacklist(container) {
  const { top, body } = section(container, 'Blacklist',
    'A blacklisted credential is refused by every gateway within a second, until the entry is lifted or expires.');
  const reload = async () => {
    const answer = await api('GET', '/admin/blacklist');
    if (!answer.ok) {
      top.replaceChildren();
      return fill(body, refusal(answer));
    }
    fill(body, h('h2', {}, 'Active entries'), table('blacklist', [
      ['Kind', (e) => e.kind],
      ['Value', (e) => h('code', {}, e.value)],
      ['Reason', (e) => e.reason],
      ['By', (e) => h('code', {}, e.created_by)],
      ['Since', (e) => when(e.created_at)],
      ['Until', (e) => (e.expires_at ? when(e.expires_at) : 'until lifted')],
      ['', (e) => h('button', {
        type: 'button', class: 'secondary', 'data-lift': e.value, 'aria-label': `Lift ${e.kind} ${e.value}`,
        onclick: async (event) => {
          if (!window.confirm(`Lift the ${e.kind} entry ${e.value}? It will be accepted again.`)) return;
          event.target.disabled = true;
          const answer = await api('DELETE', `/admin/blacklist/${encodeURIComponent(e.id)}`);
          if (!answer.ok) {
            event.target.disabled = false;
            return top.prepend(notice('error', problem(answer)));
          }
          top.prepend(notice('ok', `Entry ${e.kind} ${e.value} lifted.`));
          await reload();
        },
      }, 'Lift')],
    ], answer.body, 'The blacklist is empty.'));
  };
  const add = form({
    id: 'new-entry',
    fields: [
      [{ name: 'kind', label: 'Kind', options: KINDS, value: 'credential' },
        { name: 'value', label: 'Value', required: true, hint: 'The access key, id or token to refuse.' }],
      { name: 'reason', label: 'Reason', required: true, hint: 'Why: it is kept in the audit log.' },
      { name: 'expires_at', label: 'Expires (optional)', type: 'datetime-local', hint: 'Empty: until lifted.' },
    ],
    submitLabel: 'Blacklist',
    submit: async (values) => {
      const entry = { kind: values.kind, value: values.value, reason: values.reason };
      if (values.expires_at) {
        const at = new Date(values.expires_at);
        entry.expires_at = Number.isNaN(at.getTime()) ? values.expires_at : at.toISOString();
      }
      const answer = await api('POST', '/admin/blacklist', entry);
      if (!answer.ok) return answer;
      add.reset();
      top.querySelector('.notice.ok')?.remove();
      top.prepend(notice('ok', `Blacklisted ${answer.body.kind} ${answer.body.value}.`));
      await reload();
      return answer;
    },
  });
  top.append(h('section', { class: 'panel' }, h('h2', {}, 'Add an entry'), add));
  await reload();
}

// ---------------------------------------------------------------------------- audit

async function audit(container) {
  const { top, body } = section(container, 'Audit log',
    'Every admin action, newest first (append-only).');
  const answer = await api('GET', '/admin/audit?limit=500');
  if (!answer.ok) return fill(body, refusal(answer));
  const rows = answer.body;
  const show = (needle) => {
    const n = needle.trim().toLowerCase();
    const kept = n ? rows.filter((r) => [r.actor, r.role, r.action, r.target, r.detail].join(' ').toLowerCase().includes(n)) : rows;
    fill(body, table('audit', [
      ['When', (r) => when(r.at)],
      ['Action', (r) => r.action],
      ['Target', (r) => h('code', {}, r.target || '—')],
      ['By', (r) => [h('code', {}, r.actor), r.role ? ` (${r.role})` : '']],
      ['Detail', (r) => h('code', {}, r.detail)],
    ], kept, 'Nothing matches.'));
  };
  const search = h('input', { id: 'audit-filter', type: 'search', placeholder: 'action, target, actor…' });
  search.addEventListener('input', () => show(search.value));
  top.append(h('div', { class: 'field' }, h('label', { for: 'audit-filter' }, 'Filter'), search));
  show('');
}

// ---------------------------------------------------------------------------- operators

async function operators(container) {
  const { top, body } = section(container, 'Operators',
    'Carpool operators and their first admin, who then manages the operator\'s tokens, credentials and users.');
  const reload = async () => {
    const answer = await api('GET', '/admin/operators');
    if (!answer.ok) {
      top.replaceChildren();
      return fill(body, refusal(answer));
    }
    fill(body, h('h2', {}, 'Operators'), table('operators', [
      ['Id', (o) => o.id], ['Name', (o) => o.name], ['SIRET', (o) => h('code', {}, o.siret)],
      ['Created', (o) => when(o.created_at)],
    ], answer.body, 'No operator yet.'));
  };
  // The operator is created first; if its admin is refused, the next submission only
  // creates the admin (the operator stays, and the form says so).
  let pending = null;
  const create = form({
    id: 'new-operator',
    fields: [
      [{ name: 'name', label: 'Operator name', required: true },
        { name: 'siret', label: 'SIRET', required: true, hint: '14 digits.' }],
      ...userFields('admin_', 'Admin\'s'),
    ],
    submitLabel: 'Create operator and admin',
    errorMap: { 'siret already registered': ['siret', 'An operator with this SIRET exists.'],
      'email already registered': ['admin_email', 'This email already has an account.'] },
    submit: async (values) => {
      if (!pending || pending.siret !== values.siret) {
        const answer = await api('POST', '/admin/operators', { name: values.name, siret: values.siret });
        if (!answer.ok) return answer;
        pending = answer.body;
        await reload();
      }
      const admin = {
        email: values.admin_email, password: values.admin_password, role: 'operator.admin',
        first_name: values.admin_first_name, last_name: values.admin_last_name,
      };
      const answer = await api('POST', `/admin/operators/${pending.id}/users`, admin);
      if (!answer.ok) {
        top.querySelector('#pending-operator')?.remove();
        const note = notice('warning', `Operator "${pending.name}" (id ${pending.id}) is created; fix its admin below and submit again.`);
        note.id = 'pending-operator';
        top.prepend(note);
        return answer;
      }
      top.querySelector('#pending-operator')?.remove();
      top.prepend(notice('ok', `Operator "${pending.name}" (id ${pending.id}) created; ${answer.body.email} can sign in as its admin.`));
      pending = null;
      create.reset();
      return answer;
    },
  });
  create.dataset.prefix = 'admin_';
  top.append(h('section', { class: 'panel' }, h('h2', {}, 'New operator'), create));
  await reload();
}

// ---------------------------------------------------------------------------- activity

const SVG = 'http://www.w3.org/2000/svg';

/** An SVG element (the charts are drawn by the page: no outside asset). */
function svg(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs)) el.setAttribute(name, String(value));
  for (const child of children) el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  return el;
}

/** Outcome groups of the charts, drawn bottom up. */
const OUTCOME_GROUPS = [
  ['ok', 'answered 2xx/3xx', '#2e7d32'],
  ['input', 'refused input (4xx, 429)', '#f9a825'],
  ['credential', 'refused credential (401, 403, revoked)', '#e65100'],
  ['server', 'server errors, aborted', '#b71c1c'],
];

function outcomeGroup(outcome) {
  if (outcome === '2xx' || outcome === '3xx') return 'ok';
  if (['5xx', 'aborted', 'upstream_unavailable', 'upstream_timeout'].includes(outcome)) return 'server';
  if (/^4\d\d(:|$)|^4xx$/.test(outcome) && outcome !== '401' && outcome !== '403') return 'input';
  if (['rate_limited', 'payload_too_large', 'headers_too_large', 'unsupported_api_version', 'route_not_found'].includes(outcome)) return 'input';
  return 'credential';
}

/**
 * Requests per `step` seconds over `[from, to)`, stacked by outcome group. `buckets` are the
 * API's (`{bucket, span, outcome, requests}`); an hour bucket in a minute chart is drawn in
 * its first minute.
 */
function usageChart(id, title, buckets, from, to, step) {
  const bins = new Map();
  for (const b of buckets) {
    const at = b.bucket - (b.bucket % step);
    if (at < from || at >= to) continue;
    const bin = bins.get(at) || { ok: 0, input: 0, credential: 0, server: 0 };
    bin[outcomeGroup(b.outcome)] += b.requests;
    bins.set(at, bin);
  }
  const width = 720; const height = 160; const left = 44; const bottom = 20;
  const slots = Math.max(1, Math.round((to - from) / step));
  const barWidth = (width - left) / slots;
  const max = Math.max(1, ...[...bins.values()].map((b) => b.ok + b.input + b.credential + b.server));
  const y = (n) => ((height - bottom) * n) / max;
  const chart = svg('svg', { id, class: 'chart', viewBox: `0 0 ${width} ${height}`, role: 'img', 'aria-label': title });
  chart.append(svg('title', {}, title));
  chart.append(svg('line', { x1: left, y1: height - bottom, x2: width, y2: height - bottom, class: 'axis' }));
  chart.append(svg('text', { x: left - 4, y: 10, 'text-anchor': 'end', class: 'tick' }, String(max)));
  chart.append(svg('text', { x: left - 4, y: height - bottom, 'text-anchor': 'end', class: 'tick' }, '0'));
  const stamp = (t) => new Date(t * 1000).toISOString().slice(5, 16).replace('T', ' ');
  chart.append(svg('text', { x: left, y: height - 4, class: 'tick' }, stamp(from)));
  chart.append(svg('text', { x: width, y: height - 4, 'text-anchor': 'end', class: 'tick' }, stamp(to)));
  for (const [at, bin] of [...bins.entries()].sort((a, b) => a[0] - b[0])) {
    const x = left + ((at - from) / step) * barWidth;
    let base = height - bottom;
    const group = svg('g', { class: 'bar', 'data-at': at });
    group.append(svg('title', {}, `${stamp(at)} UTC: ${OUTCOME_GROUPS.map(([k, label]) => `${bin[k]} ${label}`).join(', ')}`));
    for (const [key, , color] of OUTCOME_GROUPS) {
      if (!bin[key]) continue;
      const hgt = Math.max(1, y(bin[key]));
      base -= hgt;
      group.append(svg('rect', { x: x.toFixed(2), y: base.toFixed(2), width: Math.max(2, barWidth - 0.5).toFixed(2), height: hgt.toFixed(2), fill: color, 'data-group': key }));
    }
    chart.append(group);
  }
  // Colours by class: the console's policy allows no inline style.
  const legend = h('ul', { class: 'legend' }, OUTCOME_GROUPS.map(([key, label]) => h('li', {},
    h('span', { class: `swatch ${key}` }), label)));
  return h('figure', { class: 'usage' }, h('figcaption', {}, title), chart, legend);
}

const SUBJECTS = [['application', 'application token'], ['api_credential', 'API credential'], ['user', 'person']];

/** One credential: its charts (24 h per minute, 7 days per hour), last use, networks, and
 * the blacklist with a reason. */
async function inspect(panel, subject, id, signal, reloadSignals) {
  fill(panel, h('h2', {}, 'Credential ', h('code', {}, id)), notice('', 'Loading…'));
  const path = `/admin/usage/${encodeURIComponent(subject)}/${encodeURIComponent(id)}?hours=168`;
  const answer = await api('GET', path);
  if (!answer.ok) return fill(panel, refusal(answer));
  const { buckets, networks, last_used: last } = answer.body;
  const now = Math.floor(Date.now() / 1000);
  const minute = now - (now % 60) + 60;
  const hour = now - (now % 3600) + 3600;
  const kind = SUBJECTS.find(([k]) => k === subject)?.[1] || subject;
  const parts = [
    h('h2', {}, `${kind} `, h('code', {}, id)),
    h('p', {}, 'Last used: ', lastUsed(last), last?.user_agent ? [' with ', h('code', {}, last.user_agent)] : null),
    usageChart('chart-24h', 'Requests per minute, last 24 hours', buckets, minute - 86400, minute, 60),
    usageChart('chart-7d', 'Requests per hour, last 7 days', buckets, hour - 7 * 86400, hour, 3600),
    h('h3', {}, 'Client networks (7 days)'),
    table('networks', [
      ['Network', (n) => h('code', {}, n.network)],
      ['Requests', (n) => n.requests],
      ['First seen', (n) => when(n.first_hour)],
      ['Last seen', (n) => when(n.last_hour)],
    ], networks, 'No request recorded.'),
  ];
  const reasonHint = signal ? `Kept with the entry, after the signal (${signal.rule}).` : 'Kept with the entry and in the audit log.';
  const blacklistForm = form({
    id: 'activity-blacklist',
    fields: [{ name: 'reason', label: 'Reason', required: true, hint: reasonHint }],
    submitLabel: 'Blacklist this credential',
    submit: async ({ reason }) => {
      const kinds = { application: 'application', api_credential: 'credential', user: 'user' };
      const result = signal
        ? await api('POST', `/admin/signals/${encodeURIComponent(signal.id)}/blacklist`, { reason })
        : await api('POST', '/admin/blacklist', { kind: kinds[subject], value: id, reason });
      if (!result.ok) return result;
      panel.prepend(notice('ok', `Blacklisted: every gateway refuses ${id} within a second.`));
      blacklistForm.remove();
      await reloadSignals();
      return result;
    },
  });
  if (subject !== 'operator') parts.push(h('section', { class: 'panel' }, h('h3', {}, 'Blacklist'), blacklistForm));
  fill(panel, ...parts);
}

/** The evidence of a signal, as `key: value` pairs. */
function evidence(e) {
  return h('ul', { class: 'evidence' }, Object.entries(e || {}).map(([k, v]) => h('li', {},
    h('span', { class: 'hint' }, `${k.replaceAll('_', ' ')}: `), typeof v === 'object' && v !== null ? JSON.stringify(v) : String(v))));
}

async function activity(container) {
  const { top, body } = section(container, 'Activity',
    'Signals raised by the rules over every credential\'s use (docs/security.md, "Signals"), and what one credential did. Blacklisting is refused by every gateway within a second.');
  const state = { value: 'open' };
  const list = h('div', { id: 'signals-list' });
  const panel = h('section', { class: 'panel', id: 'activity-credential' }, h('p', { class: 'hint' }, 'Inspect a signal or look up a credential to see its use.'));
  const reload = async () => {
    const answer = await api('GET', `/admin/signals?state=${state.value}`);
    if (!answer.ok) {
      top.replaceChildren();
      return fill(body, refusal(answer));
    }
    const act = (signal, action, label, note) => h('button', {
      type: 'button', class: 'secondary', [`data-${action}`]: signal.id,
      'aria-label': `${label} signal ${signal.rule} about ${signal.credential}`,
      onclick: async (event) => {
        let request = {};
        if (note) {
          const text = window.prompt(`Why dismiss this ${signal.rule} signal? (kept in the audit log)`, '');
          if (!text) return;
          request = { note: text };
        }
        event.target.disabled = true;
        const result = await api('POST', `/admin/signals/${encodeURIComponent(signal.id)}/${action}`, request);
        if (!result.ok) {
          event.target.disabled = false;
          return top.prepend(notice('error', problem(result)));
        }
        top.prepend(notice('ok', `Signal ${signal.rule} about ${signal.credential}: ${result.body.state}.`));
        await reload();
      },
    }, label);
    const active = (s) => s.state === 'open' || s.state === 'acknowledged';
    fill(list, table('signals', [
      ['Rule', (s) => h('strong', {}, s.rule.replaceAll('_', ' '))],
      ['Credential', (s) => [SUBJECTS.find(([k]) => k === s.subject)?.[1] || s.subject, ' ', h('code', {}, s.credential)]],
      ['Operator', (s) => s.operator_id ?? '—'],
      ['Evidence', (s) => evidence(s.evidence)],
      ['First seen', (s) => when(s.first_seen)],
      ['Last seen', (s) => when(s.last_seen)],
      ['State', (s) => s.state],
      ['', (s) => [
        s.subject !== 'operator' ? h('button', {
          type: 'button', 'data-inspect': s.credential, 'aria-label': `Inspect ${s.credential}`,
          onclick: () => inspect(panel, s.subject, s.credential, active(s) ? s : null, reload),
        }, 'Inspect') : null,
        s.state === 'open' ? act(s, 'acknowledge', 'Acknowledge') : null,
        active(s) ? act(s, 'dismiss', 'Dismiss', true) : null,
      ]],
    ], answer.body, `No ${state.value} signal.`));
  };
  const filter = h('select', { id: 'signals-state', 'aria-label': 'Signals in state',
    onchange: async (event) => { state.value = event.target.value; await reload(); } },
  ['open', 'acknowledged', 'dismissed', 'blacklisted'].map((v) => h('option', { value: v }, v)));
  const lookup = form({
    id: 'lookup',
    fields: [[{ name: 'subject', label: 'Kind', options: SUBJECTS, value: 'application' },
      { name: 'id', label: 'Id', required: true, hint: 'Application id, access key or user id.' }]],
    submitLabel: 'Show its use',
    submit: async ({ subject, id }) => { await inspect(panel, subject, id.trim(), null, reload); },
  });
  fill(body, h('h2', {}, 'Signals'), h('p', { class: 'filter' }, h('label', { for: 'signals-state' }, 'In state '), filter), list, h('h2', {}, 'A credential'), lookup, panel);
  await reload();
}

/** Sidebar order. `permission` names come from `GET /profile`. */
export const PAGES = [
  { path: 'tokens', title: 'Tokens', permission: 'applications.list', nav: true, render: tokens },
  { path: 'credentials', title: 'API credentials', permission: 'credentials', nav: true, render: credentials },
  { path: 'users', title: 'Users', permission: 'users.manage', nav: true, when: (u) => u.operator_id != null, render: users },
  { path: 'journeys', title: 'Journeys', permission: 'journeys.read', nav: true, render: journeys },
  { path: 'blacklist', title: 'Blacklist', permission: 'blacklist', nav: true, render: blacklist },
  { path: 'audit', title: 'Audit log', permission: 'blacklist', nav: true, render: audit },
  { path: 'activity', title: 'Activity', permission: 'blacklist', nav: true, render: activity },
  { path: 'operators', title: 'Operators', permission: 'operators.admin', nav: true, render: operators },
];
