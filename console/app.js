// The console shell: who is signed in (`GET /profile`), the sidebar the role may use, the
// hash router (`#/tokens`, `#/journeys/<id>`) and the sign-in page. Pages are in pages.js.

import { api, fill, form, h, hooks, notice, session } from './lib.js';
import { PAGES } from './pages.js';

const main = document.getElementById('main');
const nav = document.getElementById('nav');
const sidebar = document.getElementById('sidebar');
const toggle = document.getElementById('menu-toggle');

/** Asks who is signed in; fills `session.current` or clears it. */
async function loadProfile() {
  const answer = await api('GET', '/profile');
  if (!answer.ok) {
    session.current = null;
    return answer;
  }
  const { user, csrf_token: csrf, permissions } = answer.body;
  session.current = { user, csrf, permissions: permissions || [] };
  return answer;
}

/** The pages this session may open, in sidebar order. */
function allowedPages() {
  return PAGES.filter((page) => page.nav && session.current?.permissions.includes(page.permission)
    && (!page.when || page.when(session.current.user)));
}

function renderChrome() {
  const signedIn = Boolean(session.current);
  document.getElementById('who').hidden = !signedIn;
  sidebar.hidden = !signedIn;
  toggle.hidden = !signedIn;
  if (!signedIn) {
    nav.replaceChildren();
    return;
  }
  const { user } = session.current;
  document.getElementById('who-name').textContent = `${user.first_name} ${user.last_name} <${user.email}>`;
  document.getElementById('who-role').textContent = user.role;
  fill(nav, allowedPages().map((page) => h('li', {},
    h('a', { href: `#/${page.path}`, id: `nav-${page.path}`, 'data-page': page.path }, page.title))));
}

/** `#/journeys/abc?operator_id=3` → `{path: 'journeys', rest: ['abc'], query}`. */
function parseHash() {
  const raw = location.hash.replace(/^#\/?/, '');
  const [pathPart, queryPart = ''] = raw.split('?');
  const [path = '', ...rest] = pathPart.split('/').map(decodeURIComponent);
  return { path, rest, query: new URLSearchParams(queryPart) };
}

let rendering = 0;

async function route() {
  const ticket = ++rendering;
  sidebar.classList.remove('open');
  toggle.setAttribute('aria-expanded', 'false');
  if (!session.current) {
    renderChrome();
    showSignIn();
    return;
  }
  const { path, rest, query } = parseHash();
  const page = PAGES.find((p) => p.path === path);
  for (const link of nav.querySelectorAll('a')) {
    if (link.dataset.page === path) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  if (!page) {
    const first = allowedPages()[0];
    if (first) {
      location.replace(`#/${first.path}`);
    } else {
      fill(main, h('h1', {}, 'Console'), notice('', 'Your role has no page in this console.'));
    }
    return;
  }
  document.title = `${page.title} · Registry console`;
  const container = h('div', { id: `page-${page.path}`, 'data-page': page.path });
  fill(main, container);
  // Pages the role may not use are still reachable by address: their API answers 403, and
  // the page says so (pages render what the API returns, never decide access alone).
  await page.render(container, { rest, query, stale: () => ticket !== rendering });
  main.focus({ preventScroll: true });
}

function showSignIn(message) {
  document.title = 'Sign in · Registry console';
  const signIn = form({
    id: 'signin',
    fields: [
      { name: 'login', label: 'Email', type: 'email', required: true, autocomplete: 'username' },
      { name: 'password', label: 'Password', type: 'password', required: true, autocomplete: 'current-password' },
    ],
    submitLabel: 'Sign in',
    errorMap: {
      invalid_credentials: ['password', 'Wrong email or password.'],
      too_many_failed_sign_ins: ['password', 'Too many failed attempts: wait a minute and try again.'],
    },
    submit: async ({ login, password }) => {
      const answer = await api('POST', '/profile/signin', { login, password });
      if (!answer.ok) return answer;
      const profile = await loadProfile();
      if (!profile.ok) return profile;
      renderChrome();
      await route();
      return undefined;
    },
  });
  fill(main, h('section', { class: 'panel narrow', id: 'page-signin' },
    h('h1', {}, 'Sign in'),
    message ? notice('', message) : null,
    signIn,
    h('p', { class: 'hint' }, 'Integrating a server? The API is described in ',
      h('a', { href: '/openapi.json', id: 'api-description' }, 'OpenAPI'),
      ' (also as ', h('a', { href: '/openapi.yaml' }, 'YAML'), ').')));
  signIn.controls.login.focus();
}

async function signOut() {
  await api('POST', '/profile/signout');
  session.current = null;
  history.replaceState(null, '', '/console/');
  renderChrome();
  showSignIn('You are signed out.');
}

hooks.signedOut = () => {
  renderChrome();
  showSignIn('Your session has ended. Sign in again.');
};

toggle.addEventListener('click', () => {
  const open = sidebar.classList.toggle('open');
  toggle.setAttribute('aria-expanded', String(open));
});
document.getElementById('sign-out').addEventListener('click', signOut);
window.addEventListener('hashchange', route);

await loadProfile();
renderChrome();
await route();
