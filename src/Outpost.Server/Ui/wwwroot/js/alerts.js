// Alerts (firing and pending first, with their rule, target and since) and the event stream.
import { h, fill, link, badge, table, section, age, time } from './dom.js';
import { get, every, OUTPOST } from './api.js';
import { eventTail } from './tail.js';

const ORDER = { Firing: 0, Pending: 1, Resolved: 2 };

/** node/NAME and app/NAME lead to that page. */
function target(text) {
  const [kind, name] = (text ?? '').split('/', 2);
  return name && kind === 'node' ? link(['nodes', name], text) : name && kind === 'app' ? link(['apps', name], text) : text;
}

/** {type: nodeOffline, nodeSelector: {site: x}, threshold: 0.1, ...} as one line. */
function condition(c) {
  if (!c) return '–';
  const { type, ...rest } = c;
  const more = Object.entries(rest).map(([k, v]) => `${k}: ${typeof v === 'object' ? Object.entries(v ?? {}).map(([a, b]) => `${a}=${b}`).join(',') : v}`);
  return more.length ? `${type} (${more.join('; ')})` : type;
}

export function alertsView(main, _params, ctx) {
  const { signal } = ctx;
  const error = h('p', { class: 'error', role: 'alert', hidden: true });
  const active = h('div', { id: 'alerts' }, h('p', { class: 'muted' }, 'Loading…'));
  const rules = h('div', { id: 'alert-rules' });
  fill(main, h('div', { class: 'page-head' }, h('h1', null, 'Alerts')), error,
    section('Alerts', active), section('Rules', rules));
  every(5000, async () => {
    try {
      const [alerts, ruleList] = await Promise.all([get(`${OUTPOST}/alerts`, { signal }), get(`${OUTPOST}/alertrules`, { signal })]);
      const items = alerts.items.slice().sort((a, b) => (ORDER[a.state] ?? 3) - (ORDER[b.state] ?? 3) || (a.since < b.since ? 1 : -1));
      const firing = items.filter(a => a.state === 'Firing').length;
      const pending = items.filter(a => a.state === 'Pending').length;
      fill(active,
        h('p', { class: 'state-line' }, badge(firing ? 'Firing' : pending ? 'Pending' : 'Resolved'), `${firing} firing, ${pending} pending`),
        table(['State', 'Severity', 'Rule', 'Target', 'Since', 'Value', 'Message'], items.map(a => [
          badge(a.state), a.severity, a.rule, target(a.target), a.since ? h('span', { title: time(a.since) }, age(a.since) + ' ago') : '–',
          a.value === null || a.value === undefined ? '–' : String(a.value), a.message ?? '',
        ]), { class: 'grid' }));
      fill(rules, table(['Rule', 'Condition', 'Severity', 'For'], ruleList.items.map(r => [
        r.metadata.name, condition(r.spec?.condition), r.spec?.severity ?? 'warning', r.spec?.for ?? '0s',
      ]), { class: 'grid' }));
      error.hidden = true;
    } catch (e) {
      if (!signal.aborted) { fill(error, e.message); error.hidden = false; }
    }
  }, signal);
}

export function eventsView(main, _params, ctx) {
  const { signal } = ctx;
  fill(main, h('div', { class: 'page-head' }, h('h1', null, 'Events')),
    section('Every object\'s events, newest at the bottom', eventTail(null, signal, { keep: 1000 })));
}
