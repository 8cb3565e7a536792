// Apps: the list (revision, ready x/y, rollout phase, strategy) and an app's page with its live
// rollout (steps, which node runs which revision, the gates, why it rolled back), its
// revision history, its traffic per revision and its logs. Pause, resume and undo are drawn
// for admins only: a viewer's page has no button that would change anything.
import { h, fill, link, badge, facts, table, section, percent, seconds, age, time } from './dom.js';
import { get, post, watch, keepWatching, every, sleep, OUTPOST } from './api.js';
import { chart } from './chart.js';
import { logTail, eventTail } from './tail.js';

const APPS = `${OUTPOST}/applications`;

function kindOf(app) {
  return app.spec?.image ? 'container' : app.spec?.module?.kind ?? '–';
}

function ready(app) {
  const s = app.status ?? {};
  return s.targetedNodes === undefined ? '–' : `${s.readyNodes ?? 0}/${s.targetedNodes}`;
}

export function appsView(main, _params, ctx) {
  const { signal } = ctx;
  const apps = new Map();
  const error = h('p', { class: 'error', role: 'alert', hidden: true });
  const body = h('div', { class: 'card flush' }, h('p', { class: 'muted pad' }, 'Loading…'));
  fill(main, h('div', { class: 'page-head' }, h('h1', null, 'Apps')), error, body);

  const render = () => fill(body, table(['App', 'Type', 'Revision', 'Ready', 'Rollout', 'Strategy', 'Route'],
    [...apps.values()].sort((a, b) => (a.metadata.name < b.metadata.name ? -1 : 1)).map(app => {
      const rollout = app.status?.rollout ?? {};
      return [
        link(['apps', app.metadata.name], app.metadata.name),
        kindOf(app),
        String(app.metadata.generation ?? '–'),
        ready(app),
        rollout.phase ? badge(rollout.phase) : '–',
        rollout.strategy ?? app.spec?.rollout?.strategy ?? 'allAtOnce',
        app.spec?.triggers?.http?.route ?? '–',
      ];
    }), { class: 'grid', id: 'app-list' }));

  const list = async () => {
    const result = await get(APPS, { signal });
    apps.clear();
    for (const app of result.items) apps.set(app.metadata.name, app);
    render();
    error.hidden = true;
    return result.metadata.resourceVersion;
  };
  // The watch starts with every app (ADDED), so nothing that changed since the list is missed.
  list().catch(e => { fill(error, e.message); error.hidden = false; }).then(() => keepWatching(
    () => watch(APPS, event => {
      if (event.type === 'DELETED') apps.delete(event.object.metadata.name);
      else apps.set(event.object.metadata.name, event.object);
      render();
    }, { signal }),
    list, signal,
    e => { fill(error, 'The watch on apps broke (' + e.message + '); reconnecting…'); error.hidden = false; }));
}

function planStep(step, index, status) {
  // status.step is the step in progress, from 0.
  const current = status && index === status.step && !['Succeeded', 'RolledBack', 'Failed'].includes(status.phase);
  const done = status && (index < status.step || status.phase === 'Succeeded');
  return h('li', { class: done ? 'done' : current ? 'current' : 'todo', 'aria-current': current ? 'step' : null },
    `Step ${step.step}: ${step.nodes} node${step.nodes === 1 ? '' : 's'}`, step.pause ? `, then pause ${step.pause}` : '');
}

export function appView(main, [name], ctx) {
  const { signal, admin } = ctx;
  const error = h('p', { class: 'error', role: 'alert', hidden: true });
  const note = h('p', { class: 'note', role: 'status', hidden: true });
  const summary = h('div', { class: 'card' }, h('p', { class: 'muted' }, 'Loading…'));
  const actions = h('div', { class: 'actions', id: 'rollout-actions' });
  const rolloutBox = h('div', { id: 'rollout' });
  const history = h('div', { id: 'revisions' });
  const traffic = h('div', { class: 'charts' });
  const trafficTable = h('div');
  fill(main,
    h('div', { class: 'page-head' }, h('h1', null, link(['apps'], 'Apps'), ' / ', name), actions),
    error, note, summary,
    section('Rollout', rolloutBox),
    section('Traffic over the last hour, per revision', traffic, trafficTable),
    section('Revisions', history),
    h('div', { class: 'two' },
      section('Events', eventTail(name, signal)),
      section('Logs', logTail({ app: name }, signal))));

  const fail = e => { if (!signal.aborted) { fill(error, e.message); error.hidden = false; } };
  let generation = null;
  let rollout = null;
  let earlier = false;
  let phase = null;
  let confirming = false;

  function renderSummary(app) {
    const st = app.status ?? {};
    fill(summary, facts([
      ['Revision', String(app.metadata.generation)],
      ['Ready', ready(app)],
      ['Type', kindOf(app) + (app.spec?.module?.world ? ` (${app.spec.module.world})` : '')],
      ['Route', app.spec?.triggers?.http?.route],
      ['Image or module', app.spec?.image ?? app.spec?.module?.digest],
      ['Placement', app.spec?.placement?.nodeSelector ? Object.entries(app.spec.placement.nodeSelector).map(([k, v]) => `${k}=${v}`).join(', ') : 'every node'],
      st.notPlaced?.length ? ['Not placed', st.notPlaced.map(n => `${n.node}: ${n.reason}`).join('; ')] : null,
    ]));
  }

  function renderActions() {
    // Not while the admin is answering "undo?": the rollout is re-read every second.
    if (!admin || confirming) { if (!admin) fill(actions); return; }
    const status = rollout?.status;
    const live = status && !['Succeeded', 'RolledBack', 'Failed'].includes(status.phase);
    const act = (label, path, done) => h('button', { type: 'button', dataset: { action: label.toLowerCase() }, onclick: async event => {
      event.currentTarget.disabled = true;
      try {
        await post(`${APPS}/${encodeURIComponent(name)}/${path}`);
        fill(note, done); note.hidden = false; error.hidden = true;
        await refreshRollout();
      } catch (e) { fail(e); } finally { renderActions(); }
    } }, label);
    const buttons = [];
    if (live && !status.paused) buttons.push(act('Pause', 'rollout/pause', 'Rollout paused: no node moves until it is resumed.'));
    if (status?.paused) buttons.push(act('Resume', 'rollout/resume', 'Rollout resumed.'));
    // Undo asks once more before it sends every node back to the previous revision.
    const undo = h('button', { type: 'button', class: 'danger', dataset: { action: 'undo' }, onclick: () => {
      confirming = true;
      fill(actions,
        h('span', { class: 'confirm' }, 'Send every node back to the previous revision?'),
        h('button', { type: 'button', class: 'danger', dataset: { action: 'confirm-undo' }, onclick: async event => {
          event.currentTarget.disabled = true;
          confirming = false;
          try {
            const result = await post(`${APPS}/${encodeURIComponent(name)}/rollback`, {});
            fill(note, `Undone: revision ${result.toRevision} again, as revision ${result.object?.metadata?.generation}, on every node at once.`);
            note.hidden = false; error.hidden = true;
            await refreshRollout();
          } catch (e) { fail(e); } finally { renderActions(); }
        } }, 'Yes, undo'),
        h('button', { type: 'button', onclick: () => { confirming = false; renderActions(); } }, 'Cancel'));
      actions.querySelector('[data-action="confirm-undo"]').focus();
    } }, 'Undo');
    // Undo needs an earlier revision to go back to.
    fill(actions, ...buttons, earlier ? undo : null);
  }

  function renderRollout(r) {
    const status = r.status;
    if (!status) { fill(rolloutBox, h('p', { class: 'muted' }, 'No rollout yet.')); return; }
    const byRevision = {};
    for (const n of r.nodes) byRevision[n.revision ?? '–'] = (byRevision[n.revision ?? '–'] ?? 0) + 1;
    const gates = r.spec;
    fill(rolloutBox,
      h('div', { class: 'state-line' }, h('span', { id: 'rollout-phase' }, badge(status.paused && status.phase === 'Progressing' ? 'Paused' : status.phase)),
        h('span', null, `revision ${status.revision}${status.stableRevision ? ` from ${status.stableRevision}` : ''} · ${status.strategy}`
          + (['Succeeded', 'RolledBack', 'Failed'].includes(status.phase) ? '' : ` · step ${Math.min(status.step + 1, status.steps)} of ${status.steps}`)),
        h('span', { class: 'muted' }, ` started ${age(status.startedAt)} ago`)),
      status.message ? h('p', { class: ['RolledBack', 'Failed'].includes(status.phase) ? 'why bad' : 'why', id: 'rollout-message' }, status.message) : null,
      h('ol', { class: 'steps', id: 'rollout-steps' }, (gates.plan ?? []).map((step, i) => planStep(step, i, status))),
      facts([
        ['Gates', `5xx share over ${gates.errorRate.window} above ${percent(gates.errorRate.threshold)} (at least ${gates.errorRate.minRequests} requests); every step within ${gates.progressDeadline}`],
        ['On failure', gates.autoRollback ? 'roll back every node to the stable revision' : 'halt where it is'],
        ['Nodes by revision', Object.entries(byRevision).map(([rev, count]) => `revision ${rev}: ${count}`).join(' · ') || 'no nodes'],
      ]),
      table(['Node', 'Node state', 'Should run', 'Runs', 'App state', 'Message'], r.nodes.map(n => [
        link(['nodes', n.name], n.name), badge(n.state), String(n.desiredRevision ?? '–'),
        n.failedRevision ? `${n.revision ?? '–'} (revision ${n.failedRevision} failed)` : String(n.revision ?? '–'),
        badge(n.appState), n.message ?? '',
      ]), { class: 'grid', id: 'rollout-nodes' }));
  }

  async function refreshRollout() {
    rollout = await get(`${APPS}/${encodeURIComponent(name)}/rollout`, { signal });
    renderRollout(rollout);
    renderActions();
    error.hidden = true;
    // The current revision's outcome moves with the rollout's phase, without a new generation.
    if (rollout.metadata.generation !== generation || rollout.status?.phase !== phase) {
      generation = rollout.metadata.generation;
      phase = rollout.status?.phase;
      const revisions = await get(`${APPS}/${encodeURIComponent(name)}/revisions`, { signal });
      earlier = revisions.items.some(rev => !rev.current);
      renderActions();
      fill(history, table(['Revision', 'Created', 'Outcome', 'Module or image'], revisions.items.slice().reverse().map(rev => [
        rev.current ? h('strong', null, `${rev.revision} (current)`) : String(rev.revision),
        time(rev.creationTimestamp), rev.outcome ? badge(rev.outcome) : '–', rev.spec?.image ?? rev.digest ?? '–',
      ]), { class: 'grid' }));
    }
  }

  const loadApp = async () => renderSummary(await get(`${APPS}/${encodeURIComponent(name)}`, { signal }));
  loadApp().catch(fail);
  // The app's writes (a new revision, an undo) come by watch; nodes moving between revisions do
  // not write the app, so the rollout is re-read every second while it is live.
  keepWatching(() => watch(`${APPS}?fieldSelector=${encodeURIComponent('metadata.name=' + name)}`, event => {
    if (event.type !== 'DELETED') renderSummary(event.object);
    refreshRollout().catch(fail);
  }, { signal }), loadApp, signal);
  (async () => {
    while (!signal.aborted) {
      try { await refreshRollout(); } catch (e) { fail(e); }
      const live = rollout?.status && !['Succeeded', 'RolledBack', 'Failed'].includes(rollout.status.phase);
      await sleep(live ? 1000 : 5000, signal);
    }
  })();

  every(30000, () => traffic30().catch(e => { if (!signal.aborted) fill(trafficTable, h('p', { class: 'muted' }, 'Could not read traffic: ' + e.message)); }), signal);
  async function traffic30() {
    const metrics = await get(`${OUTPOST}/metrics/apps?app=${encodeURIComponent(name)}&series=true&window=1h`, { signal });
    const series = field => metrics.items.map(item => ({
      name: `revision ${item.revision}`,
      points: (item.minutes ?? []).filter(m => m[field] !== null && m[field] !== undefined).map(m => [Date.parse(m.minute), m[field]]),
    }));
    fill(traffic,
      chart({ title: 'Requests per second', series: series('requestsPerSecond'), format: v => v.toFixed(v < 1 ? 3 : v < 10 ? 1 : 0) }),
      chart({ title: '5xx share', series: series('errorRatio'), format: percent, max: 1 }),
      chart({ title: 'Latency p50', series: series('latencyP50Seconds'), format: seconds }),
      chart({ title: 'Latency p99', series: series('latencyP99Seconds'), format: seconds }));
    fill(trafficTable, table(['Revision', 'Nodes', 'Requests', 'req/s', '5xx', 'p50', 'p99'], metrics.items.map(item => [
        String(item.revision), String(item.nodes), String(item.requests), String(item.requestsPerSecond),
        percent(item.errorRatio), seconds(item.latencyP50Seconds), seconds(item.latencyP99Seconds),
      ]), { class: 'grid' }));
  }
}
