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

/** Sidebar order. `permission` names come from `GET /profile`. */
export const PAGES = [
  { path: 'tokens', title: 'Tokens', permission: 'applications.list', nav: true, render: tokens },
  { path: 'credentials', title: 'API credentials', permission: 'credentials', nav: true, render: credentials },
  { path: 'users', title: 'Users', permission: 'users.manage', nav: true, when: (u) => u.operator_id != null, render: users },
  { path: 'journeys', title: 'Journeys', permission: 'journeys.read', nav: true, render: journeys },
  { path: 'blacklist', title: 'Blacklist', permission: 'blacklist', nav: true, render: blacklist },
  { path: 'audit', title: 'Audit log', permission: 'blacklist', nav: true, render: audit },
  { path: 'operators', title: 'Operators', permission: 'operators.admin', nav: true, render: operators },
];
