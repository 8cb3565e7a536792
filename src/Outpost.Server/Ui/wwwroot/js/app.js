// The shell: sign-in, navigation and the routes (#/fleet, #/nodes/NAME, #/apps/NAME, ...).
// Each view mounts into <main> and gets an AbortSignal that ends its watches and timers when
// the user goes elsewhere.
import { h, fill } from './dom.js';
import { session, whoami, setUnauthorizedHandler } from './api.js';
import { fleetView } from './fleet.js';
import { nodeView } from './node.js';
import { appsView, appView } from './apps.js';
import { alertsView, eventsView } from './alerts.js';
import { dataView, topicView, bucketView, servicesView } from './data.js';

const ROLE = 'outpost.role';
const USER = 'outpost.user';

const routes = [
  [/^fleet$/, fleetView, 'fleet'],
  [/^nodes\/([^/]+)$/, nodeView, 'fleet'],
  [/^apps$/, appsView, 'apps'],
  [/^apps\/([^/]+)$/, appView, 'apps'],
  [/^alerts$/, alertsView, 'alerts'],
  [/^events$/, eventsView, 'events'],
  [/^data$/, dataView, 'data'],
  [/^data\/topics\/([^/]+)$/, topicView, 'data'],
  [/^data\/buckets\/([^/]+)$/, bucketView, 'data'],
  [/^services$/, servicesView, 'services'],
];

const main = document.getElementById('main');
let current = null;

function context() {
  const role = sessionStorage.getItem(ROLE) ?? 'viewer';
  return { role, admin: role === 'admin', user: sessionStorage.getItem(USER) ?? '' };
}

function signOut() {
  session.token = null;
  sessionStorage.removeItem(ROLE);
  sessionStorage.removeItem(USER);
  render();
}

function shell(ctx) {
  document.getElementById('nav').hidden = false;
  fill(document.getElementById('who'),
    h('span', { class: 'role', title: ctx.user }, ctx.admin ? 'admin' : 'viewer'),
    h('button', { type: 'button', class: 'link', onclick: signOut }, 'Sign out'));
}

function signIn() {
  document.getElementById('nav').hidden = true;
  fill(document.getElementById('who'));
  const error = h('p', { class: 'error', role: 'alert', hidden: true });
  const input = h('input', { id: 'token', name: 'token', type: 'password', autocomplete: 'off', required: true, spellcheck: 'false', 'aria-describedby': 'token-help' });
  const form = h('form', { class: 'signin card', onsubmit: async event => {
    event.preventDefault();
    error.hidden = true;
    try {
      const token = input.value.trim();
      const who = await whoami(token);
      session.token = token;
      sessionStorage.setItem(ROLE, who.role);
      sessionStorage.setItem(USER, who.username);
      // A new hash renders through hashchange; the same one renders here.
      if (!location.hash.startsWith('#/') || location.hash === '#/') location.hash = '#/fleet';
      else render();
    } catch (e) {
      fill(error, e.status === 401 ? 'That token is unknown, revoked or expired.' : e.message);
      error.hidden = false;
      input.focus();
    }
  } },
  h('h1', null, 'Sign in'),
  h('label', { for: 'token' }, 'API token'),
  input,
  h('p', { id: 'token-help', class: 'muted' }, 'An admin or viewer token: ', h('code', null, 'outpost token create --role viewer'),
    ', or the one in the server\'s config.yaml. It stays in this tab only.'),
  error,
  h('button', { type: 'submit', class: 'primary' }, 'Sign in'));
  fill(main, form);
  input.focus();
}

function render() {
  if (location.hash && !location.hash.startsWith('#/') && current) return;
  current?.abort();
  current = null;
  if (!session.token) {
    signIn();
    return;
  }

  const ctx = context();
  shell(ctx);
  const path = location.hash.replace(/^#\/?/, '') || 'fleet';
  const route = routes.find(([pattern]) => pattern.test(path));
  for (const a of document.querySelectorAll('#nav a')) {
    if (route && a.dataset.section === route[2]) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }

  fill(main);
  if (!route) {
    fill(main, h('section', { class: 'card' }, h('h1', null, 'Not found'), h('p', null, 'Nothing is at ', h('code', null, location.hash), '.')));
    return;
  }

  current = new AbortController();
  let params;
  try {
    params = route[0].exec(path).slice(1).map(p => decodeURIComponent(p));
  } catch {
    fill(main, h('section', { class: 'card' }, h('h1', null, 'Not found'), h('p', null, 'Nothing is at ', h('code', null, location.hash), '.')));
    return;
  }
  route[1](main, params, { ...ctx, signal: current.signal });
}

setUnauthorizedHandler(() => {
  if (session.token) signOut();
});
window.addEventListener('hashchange', () => {
  // Only "#/..." is a route: "#main" is the skip link, which moves focus and nothing else.
  if (location.hash && !location.hash.startsWith('#/')) return;
  render();
  main.focus({ preventScroll: true });
});
render();
