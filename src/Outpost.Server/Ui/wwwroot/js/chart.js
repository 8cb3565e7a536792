// Line charts in SVG: one or more series of [time ms, value] over a shared time axis.
import { h, s } from './dom.js';

const COLORS = ['#0f766e', '#b45309', '#7c3aed', '#be123c', '#2563eb', '#4d7c0f'];

/**
 * chart({title, series: [{name, points: [[t, v]...]}], format, max}): a titled chart with a
 * legend; `format` prints values, `max` fixes the top (1 for ratios).
 */
export function chart({ title, series, format = v => String(v), max }) {
  const width = 560;
  const height = 160;
  const pad = { left: 48, right: 8, top: 8, bottom: 22 };
  const all = series.flatMap(x => x.points);
  const figure = h('figure', { class: 'chart' }, h('figcaption', null, title));
  if (all.length === 0) {
    figure.append(h('p', { class: 'muted' }, 'No samples in this window yet.'));
    return figure;
  }

  const t0 = Math.min(...all.map(p => p[0]));
  const t1 = Math.max(...all.map(p => p[0]), t0 + 60000);
  const top = max ?? (Math.max(...all.map(p => p[1]), 0) * 1.1 || 1);
  const x = t => pad.left + ((t - t0) / (t1 - t0)) * (width - pad.left - pad.right);
  const y = v => height - pad.bottom - (v / top) * (height - pad.top - pad.bottom);
  const svg = s('svg', { viewBox: `0 0 ${width} ${height}`, role: 'img', 'aria-label': title });
  for (const fraction of [0, 0.5, 1]) {
    const v = top * fraction;
    svg.append(
      s('line', { x1: pad.left, x2: width - pad.right, y1: y(v), y2: y(v), class: 'grid' }),
      s('text', { x: pad.left - 4, y: y(v) + 4, 'text-anchor': 'end', class: 'axis' }, format(v)));
  }
  svg.append(
    s('text', { x: pad.left, y: height - 6, class: 'axis' }, new Date(t0).toLocaleTimeString()),
    s('text', { x: width - pad.right, y: height - 6, 'text-anchor': 'end', class: 'axis' }, new Date(t1).toLocaleTimeString()));
  series.forEach((one, i) => {
    const color = COLORS[i % COLORS.length];
    const points = one.points.slice().sort((a, b) => a[0] - b[0]);
    if (points.length === 1) {
      svg.append(s('circle', { cx: x(points[0][0]), cy: y(points[0][1]), r: 3, fill: color }, s('title', null, `${one.name}: ${format(points[0][1])}`)));
    } else {
      svg.append(s('polyline', { points: points.map(p => `${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`).join(' '), fill: 'none', stroke: color, 'stroke-width': 2 },
        s('title', null, `${one.name}: last ${format(points[points.length - 1][1])}`)));
    }
  });
  figure.append(svg);
  if (series.length > 1 || series[0]?.name) {
    figure.append(h('ul', { class: 'legend' }, series.map((one, i) => {
      const last = one.points[one.points.length - 1];
      const swatch = h('span', { class: 'swatch' });
      swatch.style.background = COLORS[i % COLORS.length];
      return h('li', null, swatch, `${one.name}: ${last ? format(last[1]) : '–'}`);
    })));
  }
  return figure;
}
