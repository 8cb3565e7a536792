// Live tails over the API's cursors: logs (?after=), events (?continue=) and topic records.
// Each keeps the newest `keep` lines and asks for more every couple of seconds while shown.
import { h, fill, time } from './dom.js';
import { get, every, OUTPOST } from './api.js';

function tailBox(label) {
  const list = h('ol', { class: 'tail', 'aria-label': label, 'aria-live': 'off', tabindex: '0' });
  const status = h('p', { class: 'muted small' });
  return { list, status, element: h('div', { class: 'tailbox' }, list, status) };
}

function keepNewest(list, keep) {
  while (list.childElementCount > keep) list.firstElementChild.remove();
}

function stickToBottom(list, add) {
  const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 24;
  add();
  if (atBottom) list.scrollTop = list.scrollHeight;
}

/** Log lines of a node or an app (query: {node} or {app}), as `outpost logs -f` follows them. */
export function logTail(query, signal, { keep = 500 } = {}) {
  const box = tailBox('Log lines');
  const params = new URLSearchParams(query);
  let cursor = null;
  const line = l => h('li', { class: 'log ' + (l.level || 'info') },
    h('time', { datetime: l.time, title: l.time }, new Date(l.time).toLocaleTimeString()), ' ',
    h('span', { class: 'who' }, query.node ? (l.app || 'agent') : l.node), ' ',
    h('span', { class: 'msg' }, l.message));
  every(2000, async () => {
    try {
      const p = new URLSearchParams(params);
      if (cursor === null) p.set('limit', '200'); else p.set('after', cursor);
      const page = await get(`${OUTPOST}/logs?${p}`, { signal });
      cursor = page.metadata?.continue ?? cursor;
      if (page.items.length) stickToBottom(box.list, () => { box.list.append(...page.items.map(line)); keepNewest(box.list, keep); });
      fill(box.status, box.list.childElementCount ? `Following; ${box.list.childElementCount} lines shown` : 'No log lines yet; following.');
    } catch (e) {
      if (!signal.aborted) fill(box.status, 'Could not read logs: ' + e.message);
    }
  }, signal);
  return box.element;
}

function eventId(e) {
  const name = e.metadata?.name ?? '';
  return name.slice(name.lastIndexOf('.') + 1);
}

/** Events, all or of one object (name), newest at the bottom. */
export function eventTail(name, signal, { keep = 300, onEvents } = {}) {
  const box = tailBox('Events');
  let cursor = '';
  let caughtUp = false;
  const line = e => h('li', { class: 'event ' + (e.type === 'Warning' ? 'warn' : 'info') },
    h('time', { datetime: e.lastTimestamp, title: time(e.lastTimestamp) }, new Date(e.lastTimestamp).toLocaleTimeString()), ' ',
    h('span', { class: 'reason' }, e.reason), ' ',
    h('span', { class: 'who' }, `${e.involvedObject?.kind ?? ''}/${e.involvedObject?.name ?? ''}`), ' ',
    h('span', { class: 'msg' }, e.message));
  every(2000, async () => {
    try {
      // Events come oldest first in pages of 1000: read to the end, then follow from there.
      for (;;) {
        const p = new URLSearchParams();
        if (name) p.set('fieldSelector', 'involvedObject.name=' + name);
        if (cursor) p.set('continue', cursor);
        const page = await get(`/api/v1/events?${p}`, { signal });
        if (page.items.length) {
          cursor = eventId(page.items[page.items.length - 1]);
          onEvents?.(page.items);
          stickToBottom(box.list, () => { box.list.append(...page.items.slice(-keep).map(line)); keepNewest(box.list, keep); });
        }
        if (!page.metadata?.continue) break;
      }
      caughtUp = true;
      fill(box.status, box.list.childElementCount ? `Following; ${box.list.childElementCount} events shown` : 'No events yet; following.');
    } catch (e) {
      if (!signal.aborted) fill(box.status, (caughtUp ? 'Could not follow events: ' : 'Could not read events: ') + e.message);
    }
  }, signal);
  return box.element;
}

/** A topic's records, read from the start to the newest, then followed (`outpost data read -f`). */
export function recordTail(topic, signal, { keep = 300 } = {}) {
  const box = tailBox('Records');
  let cursor = '0';
  const line = r => h('li', { class: 'record' },
    h('time', { datetime: r.createdAt, title: r.createdAt }, new Date(r.createdAt).toLocaleTimeString()), ' ',
    h('span', { class: 'who' }, `${r.node}#${r.sequence}`), ' ',
    h('span', { class: 'msg' }, r.text ?? `(${r.payload.length * 3 / 4 | 0} bytes of binary)`));
  every(2000, async () => {
    try {
      for (;;) {
        const page = await get(`${OUTPOST}/topics/${encodeURIComponent(topic)}/records?after=${cursor}&limit=5000`, { signal });
        cursor = page.metadata?.continue ?? cursor;
        if (page.items.length) stickToBottom(box.list, () => { box.list.append(...page.items.slice(-keep).map(line)); keepNewest(box.list, keep); });
        if (page.items.length < 5000) break;
      }
      fill(box.status, box.list.childElementCount ? `Following; the newest ${box.list.childElementCount} records shown` : 'No records yet; following.');
    } catch (e) {
      if (!signal.aborted) fill(box.status, 'Could not read records: ' + e.message);
    }
  }, signal);
  return box.element;
}
