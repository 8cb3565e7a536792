// The fleet: every node with its state, site, labels, usage and last heartbeat. The list is a
// Table from GET /api/v1/nodes (what kubectl prints, wide columns included), then a watch from
// its resourceVersion: a node's state change arrives as one line, no reload, no polling. Usage
// and heartbeats move all the time, so they are re-read every 30 s rather than watched.
// Only the rows in view are in the DOM: 10,000 nodes filter and scroll like 10.
import { h, fill, link, badge, percent, age, labelChips } from './dom.js';
import { get, watch, keepWatching, every, rowsOf, TABLE } from './api.js';

const ROW = 40; // px: .vrow's height in app.css
const STATES = ['Ready', 'NotReady', 'Offline'];
const STATE_ORDER = { Offline: 0, NotReady: 1, Ready: 2 };
const SORTS = {
  name: ['Name', (a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0)],
  state: ['State', (a, b) => (STATE_ORDER[a.state] ?? 3) - (STATE_ORDER[b.state] ?? 3)],
  heartbeat: ['Last heartbeat', (a, b) => (b.beat || 0) - (a.beat || 0)],
  cpu: ['CPU', (a, b) => (b.cpu ?? -1) - (a.cpu ?? -1)],
  memory: ['Memory', (a, b) => (b.memory ?? -1) - (a.memory ?? -1)],
  disk: ['Disk', (a, b) => (b.disk ?? -1) - (a.disk ?? -1)],
};

function num(cell) {
  return typeof cell === 'number' ? cell : null;
}

function record(row) {
  const labels = row.metadata.labels ?? {};
  const name = row.Name;
  const site = labels.site ?? '';
  return {
    name,
    state: row.Status || 'Offline',
    site,
    labels,
    cpu: num(row.CPU),
    memory: num(row.Memory),
    disk: num(row.Disk),
    beat: Date.parse(row['Last-Heartbeat']) || 0,
    version: row.Version ?? '',
    // What free text is matched against: the name and every label as key=value.
    text: (name + ' ' + Object.entries(labels).map(([k, v]) => k + '=' + v).join(' ')).toLowerCase(),
  };
}

/**
 * "edge site=north tier!=gpu": key=value and key!=value match labels (keys exactly, as
 * Kubernetes does; values in any case); other words match the name or labels, in any case.
 */
export function parseFilter(text) {
  const terms = [];
  for (const word of text.trim().split(/\s+/).filter(Boolean)) {
    const ne = word.indexOf('!=');
    const eq = word.indexOf('=');
    if (ne > 0) {
      const [key, value] = [word.slice(0, ne), word.slice(ne + 2).toLowerCase()];
      terms.push(n => (n.labels[key] ?? '').toLowerCase() !== value);
    } else if (eq > 0) {
      const [key, value] = [word.slice(0, eq), word.slice(eq + 1).toLowerCase()];
      terms.push(n => key in n.labels && n.labels[key].toLowerCase() === value);
    } else {
      const lower = word.toLowerCase();
      terms.push(n => n.text.includes(lower));
    }
  }
  return n => terms.every(t => t(n));
}

export function fleetView(main, _params, ctx) {
  const { signal } = ctx;
  const nodes = new Map();
  const want = { states: new Set(), site: '', sort: 'name', desc: false, match: () => true };
  let sorted = [];
  let shown = [];
  let dirty = true;
  let painted = false;
  let frame = 0;
  let scrollFrame = 0;
  let said = '';

  const counts = h('div', { class: 'counts', role: 'group', 'aria-label': 'Filter by state' });
  const filter = h('input', { id: 'node-filter', type: 'search', placeholder: 'Filter: name, label=value, key!=value', 'aria-label': 'Filter nodes', autocomplete: 'off', spellcheck: 'false' });
  const site = h('select', { id: 'node-site', 'aria-label': 'Site' });
  const sort = h('select', { id: 'node-sort', 'aria-label': 'Sort by' }, Object.entries(SORTS).map(([k, [label]]) => h('option', { value: k }, label)));
  const direction = h('button', { type: 'button', class: 'icon', 'aria-label': 'Reverse order', title: 'Reverse order' }, '⇅');
  const summary = h('p', { class: 'muted', id: 'node-summary', 'aria-live': 'polite' }, 'Loading nodes…');
  const error = h('p', { class: 'error', role: 'alert', hidden: true });
  const spacer = h('div', { class: 'vspace' });
  const rows = h('div', { class: 'vrows', role: 'list', 'aria-label': 'Nodes' });
  const scroller = h('div', { class: 'vscroll', id: 'node-list', tabindex: '-1' }, spacer, rows);
  const header = h('div', { class: 'vrow vhead', 'aria-hidden': 'true' },
    ['Name', 'State', 'Site', 'Labels', 'CPU', 'Memory', 'Disk', 'Heartbeat', 'Version'].map((x, i) => h('span', { class: 'c' + i }, x)));

  fill(main,
    h('div', { class: 'page-head' }, h('h1', null, 'Fleet'), counts),
    h('div', { class: 'toolbar' }, filter, site, sort, direction),
    summary, error,
    h('div', { class: 'card flush' }, header, scroller));

  const show = message => { fill(error, message); error.hidden = !message; };

  function refilter() {
    if (dirty) {
      const compare = SORTS[want.sort][1];
      sorted = [...nodes.values()].sort((a, b) => compare(a, b) || SORTS.name[1](a, b));
      if (want.desc) sorted.reverse();
      dirty = false;
    }
    shown = sorted.filter(n => (want.states.size === 0 || want.states.has(n.state)) && (!want.site || n.site === want.site) && want.match(n));
  }

  // The count buttons are made once (a click keeps its focus); each update sets their numbers.
  const countOf = {};
  counts.append(...STATES.map(state => {
    countOf[state] = h('span', { class: 'n' }, '0');
    const button = h('button', {
      type: 'button',
      class: 'count ' + ({ Ready: 'ok', NotReady: 'warn', Offline: 'bad' })[state],
      'aria-pressed': 'false',
      'data-state': state,
      onclick: () => {
        want.states.has(state) ? want.states.delete(state) : want.states.add(state);
        button.setAttribute('aria-pressed', String(want.states.has(state)));
        scroller.scrollTop = 0;
        update();
      },
    }, countOf[state], ' ', state);
    return button;
  }));

  function renderCounts() {
    const by = { Ready: 0, NotReady: 0, Offline: 0 };
    for (const n of nodes.values()) by[n.state] = (by[n.state] ?? 0) + 1;
    for (const state of STATES) countOf[state].textContent = String(by[state]);
  }

  function renderSites() {
    const sites = [...new Set([...nodes.values()].map(n => n.site).filter(Boolean))].sort();
    const chosen = site.value;
    fill(site, h('option', { value: '' }, 'All sites'), sites.map(s => h('option', { value: s }, s)));
    site.value = sites.includes(chosen) ? chosen : '';
    want.site = site.value;
  }

  function row(n, index) {
    return h('div', { class: 'vrow', role: 'listitem', dataset: { node: n.name, state: n.state } },
      h('span', { class: 'c0' }, link(['nodes', n.name], n.name, { 'data-index': index })),
      h('span', { class: 'c1' }, badge(n.state)),
      h('span', { class: 'c2' }, n.site || '–'),
      h('span', { class: 'c3 chips' }, labelChips(Object.fromEntries(Object.entries(n.labels).filter(([k]) => k !== 'site')))),
      h('span', { class: 'c4 num' }, percent(n.cpu)),
      h('span', { class: 'c5 num' }, percent(n.memory)),
      h('span', { class: 'c6 num' }, percent(n.disk)),
      h('span', { class: 'c7 num', title: n.beat ? new Date(n.beat).toISOString() : '' }, n.beat ? age(n.beat) + ' ago' : '–'),
      h('span', { class: 'c8' }, n.version));
  }

  function renderRows() {
    spacer.style.height = shown.length * ROW + 'px';
    const first = Math.max(0, Math.floor(scroller.scrollTop / ROW) - 5);
    const last = Math.min(shown.length, Math.ceil((scroller.scrollTop + scroller.clientHeight) / ROW) + 5);
    rows.style.transform = `translateY(${first * ROW}px)`;
    const focused = document.activeElement?.closest?.('.vrow')?.dataset.node;
    fill(rows, shown.slice(first, last).map((n, i) => row(n, first + i)));
    if (focused) rows.querySelector(`[data-node="${CSS.escape(focused)}"] a`)?.focus({ preventScroll: true });
    const total = nodes.size;
    const text = total === 0 ? 'No nodes yet. Join one: outpost token create, then outpost agent --server URL --token TOKEN on the node.'
      : shown.length === total ? `${total} nodes` : `${shown.length} of ${total} nodes`;
    // A live region: written only when it says something new.
    if (text !== said) fill(summary, said = text);
  }

  function update() {
    refilter();
    renderCounts();
    renderRows();
    if (!painted && nodes.size > 0) {
      painted = true;
      performance.mark('outpost:fleet-painted');
    }
  }

  function schedule() {
    if (!frame) frame = requestAnimationFrame(() => { frame = 0; update(); });
  }

  async function list() {
    const table = await get('/api/v1/nodes', { accept: TABLE, signal });
    nodes.clear();
    for (const r of rowsOf(table)) nodes.set(r.Name, record(r));
    dirty = true;
    renderSites();
    show('');
    update();
    return table.metadata.resourceVersion;
  }

  let rv = null;
  const start = async () => {
    try {
      rv = await list();
    } catch (e) {
      if (!signal.aborted) show('Could not list nodes: ' + e.message);
    }

    keepWatching(
      () => watch('/api/v1/nodes?resourceVersion=' + encodeURIComponent(rv ?? '0'), event => {
        const changed = event.object?.rows ? rowsOf(event.object) : [];
        for (const r of changed) {
          if (event.type === 'DELETED') nodes.delete(r.Name);
          else {
            const before = nodes.get(r.Name);
            const next = record(r);
            nodes.set(r.Name, next);
            if (!before || before.site !== next.site) renderSites();
          }
        }
        dirty = true;
        schedule();
      }, { accept: TABLE, signal }),
      async () => { rv = await list(); },
      signal,
      e => show('The watch on nodes broke (' + e.message + '); reconnecting…'));
  };
  start();

  // Usage and heartbeats: re-read in one list, not watched (they change every few seconds on every node).
  let skipFirst = true;
  every(30000, async () => {
    if (skipFirst) { skipFirst = false; return; }
    try { await list(); } catch (e) { if (!signal.aborted) show('Could not refresh nodes: ' + e.message); }
  }, signal);
  // Ages ("12s ago") move on their own.
  const ages = setInterval(() => { if (!document.hidden) renderRows(); }, 5000);
  signal.addEventListener('abort', () => { clearInterval(ages); cancelAnimationFrame(frame); cancelAnimationFrame(scrollFrame); }, { once: true });

  filter.addEventListener('input', () => {
    // Each keystroke filters at once: the list is in memory and only the rows in view are drawn.
    want.match = parseFilter(filter.value);
    scroller.scrollTop = 0;
    update();
  });
  site.addEventListener('change', () => { want.site = site.value; scroller.scrollTop = 0; update(); });
  sort.addEventListener('change', () => { want.sort = sort.value; dirty = true; update(); });
  direction.addEventListener('click', () => { want.desc = !want.desc; dirty = true; update(); });
  scroller.addEventListener('scroll', () => {
    if (!scrollFrame) scrollFrame = requestAnimationFrame(() => { scrollFrame = 0; renderRows(); });
  }, { passive: true });
  window.addEventListener('resize', schedule, { signal });

  // Arrow keys walk the rows (scrolling as needed); "/" jumps to the filter.
  rows.addEventListener('keydown', event => {
    const index = Number(event.target.dataset?.index);
    if (!Number.isFinite(index) || (event.key !== 'ArrowDown' && event.key !== 'ArrowUp')) return;
    event.preventDefault();
    const next = Math.max(0, Math.min(shown.length - 1, index + (event.key === 'ArrowDown' ? 1 : -1)));
    const top = next * ROW;
    if (top < scroller.scrollTop) scroller.scrollTop = top;
    else if (top + ROW > scroller.scrollTop + scroller.clientHeight) scroller.scrollTop = top + ROW - scroller.clientHeight;
    renderRows();
    rows.querySelector(`a[data-index="${next}"]`)?.focus();
  });
  document.addEventListener('keydown', event => {
    if (event.key === '/' && !/^(INPUT|SELECT|TEXTAREA)$/.test(document.activeElement?.tagName ?? '')) {
      event.preventDefault();
      filter.focus();
    }
  }, { signal });
}
