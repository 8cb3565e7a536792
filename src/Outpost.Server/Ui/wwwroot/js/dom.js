// Building the page. Every string from the fleet (names, labels, log lines, app output) goes in
// as a text node or an attribute value, never as markup: nothing here parses HTML.

/** h('a', {href: '#/x', class: 'c'}, 'text', child): an element; strings become text nodes. */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs ?? {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith('on') && typeof value === 'function') el.addEventListener(key.slice(2), value);
    else if (key === 'dataset') Object.assign(el.dataset, value);
    else el.setAttribute(key, value === true ? '' : String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === undefined || child === null || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

const SVG = 'http://www.w3.org/2000/svg';

/** An SVG element, attributes set as values. */
export function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs ?? {})) {
    if (value !== undefined && value !== null) el.setAttribute(key, String(value));
  }
  append(el, children);
  return el;
}

/** Replaces what an element holds. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** A link into the dashboard: the route's parts are encoded, whatever they hold. */
export function link(parts, text, attrs) {
  return h('a', { href: '#/' + parts.map(encodeURIComponent).join('/'), ...attrs }, text);
}

export function badge(state) {
  const value = state || 'Unknown';
  return h('span', { class: 'badge ' + stateClass(value) }, value);
}

export function stateClass(state) {
  switch (state) {
    case 'Ready': case 'Succeeded': case 'True': case 'Normal': case 'Resolved': case 'healthy': return 'ok';
    case 'NotReady': case 'Progressing': case 'Paused': case 'Pending': case 'Warning': case 'Starting': return 'warn';
    case 'Offline': case 'Failed': case 'RolledBack': case 'Firing': case 'Error': case 'unhealthy': return 'bad';
    default: return 'neutral';
  }
}

export function percent(ratio) {
  return typeof ratio === 'number' && Number.isFinite(ratio) ? (ratio * 100).toFixed(ratio < 0.1 ? 1 : 0) + '%' : '–';
}

export function bytes(n) {
  if (typeof n !== 'number' || !Number.isFinite(n)) return '–';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i === 0 ? n : n.toFixed(n < 10 ? 1 : 0)) + ' ' + units[i];
}

/** "12s", "5m", "3h", "2d" since a time (ms since the epoch or an ISO string). */
export function age(when, now = Date.now()) {
  const t = typeof when === 'string' ? Date.parse(when) : when;
  if (!Number.isFinite(t)) return '–';
  const sec = Math.max(0, Math.round((now - t) / 1000));
  if (sec < 90) return sec + 's';
  if (sec < 90 * 60) return Math.round(sec / 60) + 'm';
  if (sec < 36 * 3600) return Math.round(sec / 3600) + 'h';
  return Math.round(sec / 86400) + 'd';
}

export function time(iso) {
  const t = Date.parse(iso);
  return Number.isFinite(t) ? new Date(t).toLocaleString() : '–';
}

export function seconds(value) {
  if (typeof value !== 'number') return '–';
  return value < 0.001 ? (value * 1e6).toFixed(0) + ' µs' : value < 1 ? (value * 1000).toFixed(1) + ' ms' : value.toFixed(2) + ' s';
}

/** A table: headers, then rows of cells (strings or nodes). */
export function table(headers, rows, attrs) {
  return h('table', attrs,
    h('thead', null, h('tr', null, headers.map(x => h('th', { scope: 'col' }, x)))),
    h('tbody', null, rows.length ? rows.map(r => h('tr', null, r.map(c => h('td', null, c))))
      : h('tr', null, h('td', { colspan: headers.length, class: 'muted' }, 'None'))));
}

/** Name/value pairs as a definition list. */
export function facts(pairs) {
  return h('dl', { class: 'facts' }, pairs.filter(p => p).map(([k, v]) => [h('dt', null, k), h('dd', null, v ?? '–')]));
}

export function labelChips(labels) {
  return Object.entries(labels ?? {}).map(([k, v]) => h('span', { class: 'chip' }, v === '' ? k : k + '=' + v));
}

export function section(title, ...children) {
  return h('section', { class: 'card' }, h('h2', null, title), children);
}
