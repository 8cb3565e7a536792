// One node: its state and conditions, labels, host, usage over time, its apps with their
// revision and state, its events and a live tail of its logs.
import { h, fill, link, badge, facts, table, labelChips, section, percent, bytes, age, time } from './dom.js';
import { get, watch, keepWatching, every, OUTPOST } from './api.js';
import { chart } from './chart.js';
import { logTail, eventTail } from './tail.js';

export function nodeView(main, [name], ctx) {
  const { signal } = ctx;
  const head = h('div', { class: 'page-head' }, h('h1', null, link(['fleet'], 'Fleet'), ' / ', name));
  const error = h('p', { class: 'error', role: 'alert', hidden: true });
  const summary = h('div', { class: 'card', id: 'node-summary-card' }, h('p', { class: 'muted' }, 'Loading…'));
  const apps = h('div');
  const usage = h('div', { class: 'charts' });
  fill(main, head, error,
    summary,
    section('Apps on this node', apps),
    section('Usage over the last hour', usage),
    h('div', { class: 'two' },
      section('Events', eventTail(name, signal)),
      section('Logs', logTail({ node: name }, signal))));

  function render(node) {
    const st = node.status ?? {};
    const ready = (st.conditions ?? []).find(c => c.type === 'Ready');
    const u = st.usage ?? {};
    fill(summary,
      h('div', { class: 'state-line' }, badge(st.state), h('span', { id: 'node-state-text' }, ready?.message ?? '')),
      facts([
        ['Labels', h('span', { class: 'chips' }, labelChips(node.metadata?.labels))],
        ['Last heartbeat', st.lastHeartbeatTime ? `${age(st.lastHeartbeatTime)} ago (${time(st.lastHeartbeatTime)})` : 'never'],
        ['Agent', st.agentVersion],
        ['Gateway', st.gatewayUrl],
        ['Host', st.host ? `${st.host.hostname} · ${st.host.osImage} · ${st.host.architecture} · ${st.host.cpus} CPUs · ${bytes(st.host.memoryBytes)}` : null],
        ['Runtimes', (st.runtimes ?? []).join(', ') || null],
        ['CPU / memory / disk', `${percent(u.cpuRatio)} · ${bytes(u.memoryUsedBytes)} of ${bytes(u.memoryTotalBytes)} · ${bytes(u.diskUsedBytes)} of ${bytes(u.diskTotalBytes)}`],
        ['Outbox', st.outbox ? `${st.outbox.pendingRecords} records (${bytes(st.outbox.pendingBytes)}) waiting, ${st.outbox.droppedTotal} dropped` : null],
        ['Fleet revision applied', st.appliedRevision],
        ['Joined', node.metadata?.creationTimestamp ? time(node.metadata.creationTimestamp) : null],
      ]));
    fill(apps, table(['App', 'Revision', 'State', 'Message'],
      Object.entries(st.apps ?? {}).sort(([a], [b]) => (a < b ? -1 : 1)).map(([app, s]) => [
        link(['apps', app], app), String(s.generation ?? '–'), badge(s.state), s.message || '',
      ]), { class: 'grid', id: 'node-apps' }));
  }

  const load = async () => {
    try {
      render(await get('/api/v1/nodes/' + encodeURIComponent(name), { signal }));
      error.hidden = true;
    } catch (e) {
      if (!signal.aborted) { fill(error, e.message); error.hidden = false; }
    }
  };
  load().then(() => keepWatching(
    () => watch('/api/v1/nodes?fieldSelector=' + encodeURIComponent('metadata.name=' + name), event => {
      if (event.type === 'DELETED') { fill(error, `Node ${name} was deleted.`); error.hidden = false; }
      else render(event.object);
    }, { signal }),
    load, signal));

  every(30000, () => refresh().catch(e => { if (!signal.aborted) fill(usage, h('p', { class: 'muted' }, 'Could not read usage: ' + e.message)); }), signal);
  async function refresh() {
    await load(); // the heartbeat and usage, which the watch does not send on their own
    const metrics = await get(`${OUTPOST}/metrics/nodes?node=${encodeURIComponent(name)}&series=true&window=1h`, { signal });
    const item = metrics.items[0];
    const minutes = (item?.minutes ?? []).map(m => ({ t: Date.parse(m.minute), ...m }));
    if (item?.usage) minutes.push({ t: Date.now(), ...item.usage });
    const ratio = (used, total) => minutes.filter(m => m[total] > 0).map(m => [m.t, m[used] / m[total]]);
    fill(usage,
      chart({ title: 'CPU', series: [{ name: 'node', points: minutes.map(m => [m.t, m.cpuRatio ?? 0]) }, { name: 'agent', points: minutes.map(m => [m.t, m.agentCpuRatio ?? 0]) }], format: percent, max: 1 }),
      chart({ title: 'Memory', series: [{ name: 'node', points: ratio('memoryUsedBytes', 'memoryTotalBytes') }], format: percent, max: 1 }),
      chart({ title: 'Disk', series: [{ name: 'data dir\'s file system', points: ratio('diskUsedBytes', 'diskTotalBytes') }], format: percent, max: 1 }));
  }
}
