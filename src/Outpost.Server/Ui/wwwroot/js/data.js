// Data: topics (record counts and a live tail), buckets (entries and the conflict log), and the
// mesh's services with their endpoints.
import { h, fill, link, badge, table, section, facts, bytes, age, time } from './dom.js';
import { get, every, OUTPOST } from './api.js';
import { recordTail } from './tail.js';

function failure(signal, error) {
  return e => { if (!signal.aborted) { fill(error, e.message); error.hidden = false; } };
}

export function dataView(main, _params, ctx) {
  const { signal } = ctx;
  const error = h('p', { class: 'error', role: 'alert', hidden: true });
  const topics = h('div', { id: 'topics' }, h('p', { class: 'muted' }, 'Loading…'));
  const buckets = h('div', { id: 'buckets' });
  fill(main, h('div', { class: 'page-head' }, h('h1', null, 'Data')), error,
    section('Topics: what nodes publish, collected in the cloud', topics),
    section('Buckets: key-value data synced between the cloud and nodes', buckets));
  const load = async () => {
    const [t, b] = await Promise.all([get(`${OUTPOST}/topics`, { signal }), get(`${OUTPOST}/buckets`, { signal })]);
    fill(topics, table(['Topic', 'Records', 'Size', 'Nodes', 'Last record'], t.items.map(x => [
      link(['data', 'topics', x.metadata.name], x.metadata.name), String(x.status?.records ?? 0), bytes(x.status?.bytes),
      String(x.status?.nodes ?? 0), x.status?.lastIngestTime ? age(x.status.lastIngestTime) + ' ago' : '–',
    ]), { class: 'grid' }));
    fill(buckets, table(['Bucket', 'Direction', 'Conflict policy'], b.items.map(x => [
      link(['data', 'buckets', x.metadata.name], x.metadata.name), x.spec?.direction ?? 'edge-local', x.spec?.conflictPolicy ?? 'lww',
    ]), { class: 'grid' }));
    error.hidden = true;
  };
  every(5000, () => load().catch(failure(signal, error)), signal);
}

export function topicView(main, [name], ctx) {
  const { signal } = ctx;
  const info = h('div', null, h('p', { class: 'muted' }, 'Loading…'));
  const error = h('p', { class: 'error', role: 'alert', hidden: true });
  fill(main, h('div', { class: 'page-head' }, h('h1', null, link(['data'], 'Data'), ' / topic ', name)), error,
    h('div', { class: 'card' }, info),
    section('Records, live', recordTail(name, signal)));
  every(5000, async () => {
    try {
      const t = await get(`${OUTPOST}/topics/${encodeURIComponent(name)}`, { signal });
      fill(info, facts([
        ['Records', String(t.status?.records ?? 0)], ['Size', bytes(t.status?.bytes)], ['Nodes publishing', String(t.status?.nodes ?? 0)],
        ['Last record', t.status?.lastIngestTime ? time(t.status.lastIngestTime) : '–'],
      ]));
    } catch (e) { failure(signal, error)(e); }
  }, signal);
}

export function bucketView(main, [name], ctx) {
  const { signal } = ctx;
  const error = h('p', { class: 'error', role: 'alert', hidden: true });
  const entries = h('div', null, h('p', { class: 'muted' }, 'Loading…'));
  const conflicts = h('div');
  fill(main, h('div', { class: 'page-head' }, h('h1', null, link(['data'], 'Data'), ' / bucket ', name)), error,
    section('Entries', entries), section('Conflict log', conflicts));
  const base = `${OUTPOST}/buckets/${encodeURIComponent(name)}`;
  const value = v => v.deleted ? h('em', null, 'deleted') : v.text ?? `(${bytes(atob(v.value ?? '').length)} binary)`;
  every(5000, async () => {
    try {
      const [e, c] = await Promise.all([get(`${base}/entries?limit=1000`, { signal }), get(`${base}/conflicts?limit=1000`, { signal })]);
      fill(entries, table(['Key', 'Node', 'Value', 'Revision', 'Updated', 'Written by'], e.items.map(x => [
        x.key, x.node ?? '–', value(x), String(x.revision), x.updateTime ? age(x.updateTime) + ' ago' : '–', x.origin ?? '–',
      ]), { class: 'grid' }), e.metadata?.continue ? h('p', { class: 'muted' }, 'The first 1000 keys; outpost kv list reads them all.') : null);
      fill(conflicts, table(['When', 'Key', 'Node', 'Kept', 'Lost'], c.items.slice().reverse().map(x => [
        time(x.time), x.key, x.node ?? '–', h('span', null, value(x.winner), h('span', { class: 'muted' }, ` (${x.winner.origin})`)),
        h('span', null, value(x.loser), h('span', { class: 'muted' }, ` (${x.loser.origin})`)),
      ]), { class: 'grid' }));
      error.hidden = true;
    } catch (err) { failure(signal, error)(err); }
  }, signal);
}

export function servicesView(main, _params, ctx) {
  const { signal } = ctx;
  const error = h('p', { class: 'error', role: 'alert', hidden: true });
  const body = h('div', null, h('p', { class: 'muted' }, 'Loading…'));
  fill(main, h('div', { class: 'page-head' }, h('h1', null, 'Mesh services')), error, body);
  every(3000, async () => {
    try {
      const list = await get(`${OUTPOST}/networkservices`, { signal });
      fill(body, list.items.length === 0
        ? h('div', { class: 'card' }, h('p', { class: 'muted' }, 'No services: an app joins the mesh with spec.expose: {service: NAME}.'))
        : list.items.map(svc => section(svc.metadata.name,
          facts([
            ['Address', `${svc.spec.address}:${svc.spec.port} (${svc.metadata.name}.mesh)`],
            ['Apps', (svc.spec.apps ?? []).join(', ')],
            ['Ingress', svc.spec.ingress?.path],
            ['Healthy endpoints', `${svc.status.healthyEndpoints} of ${svc.status.endpoints.length}`],
          ]),
          table(['Node', 'Site', 'App', 'Revision', 'Health', 'Node state', 'Connected'], svc.status.endpoints.map(e => [
            link(['nodes', e.node], e.node), e.site || '–', link(['apps', e.app], e.app), String(e.revision ?? '–'),
            badge(e.healthy ? 'healthy' : 'unhealthy'), badge(e.nodeState), e.connected ? 'yes' : 'no',
          ]), { class: 'grid' }))));
      error.hidden = true;
    } catch (e) { failure(signal, error)(e); }
  }, signal);
}
