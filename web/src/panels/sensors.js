// The sensors panel: every sensor with its freshness, parking garages (occupancy now and a
// history chart), road segments green→orange→red by traffic level, shared vehicles. Values update
// live from server-sent events (/api/feeds/stream) without reloading. Replayed and simulated
// sources carry a REPLAYED / SIMULATED badge in the list, the legend and the status bar.
import { addLayer, setGeoJson, setLayerVisible } from '../map.js';
import { formatAge } from '../status.js';
import { registerPanel } from './registry.js';
import './sensors.css';

export const LEVEL_COLORS = { free: '#2f9e44', busy: '#f08c00', jammed: '#e03131' };
export const FRESH_COLOR = '#2f9e44';
export const STALE_COLOR = '#868e96';
const ORIGIN_LABEL = { simulated: 'SIMULATED', replayed: 'REPLAYED', real: 'REAL' };
const STATUS_KIND = { simulated: 'simulated', replayed: 'replay', real: 'real' };
const REFRESH_MIN_MS = 1500;

const fmt0 = new Intl.NumberFormat('en', { maximumFractionDigits: 0 });
const fmt1 = new Intl.NumberFormat('en', { maximumFractionDigits: 1 });

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'testid') e.dataset.testid = v;
    else if (k === 'class') e.className = v;
    else e.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c ?? '')));
  return e;
}

function originBadge(origin) {
  return el('span', { class: `sensors-origin sensors-origin-${origin}`, testid: `badge-${origin}` }, ORIGIN_LABEL[origin] || origin);
}

function value(v) {
  if (v === null || v === undefined) return '—';
  if (typeof v === 'number') return Math.abs(v) >= 100 ? fmt0.format(v) : fmt1.format(v);
  return String(v);
}

/** A small SVG line chart of [[isoTime, value], ...] with the capacity as a dashed line. */
export function historyChart(history, { capacity, width = 300, height = 110 } = {}) {
  const ns = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(ns, 'svg');
  svg.setAttribute('viewBox', `0 0 ${width} ${height}`);
  svg.setAttribute('width', width);
  svg.setAttribute('height', height);
  svg.setAttribute('class', 'sensors-chart-svg');
  const pad = { l: 34, r: 6, t: 6, b: 18 };
  const pts = (history || []).filter((p) => p[1] !== null).map(([t, v]) => [new Date(t).getTime(), v]);
  const add = (tag, attrs, text) => {
    const e = document.createElementNS(ns, tag);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    svg.appendChild(e);
    return e;
  };
  if (pts.length === 0) {
    add('text', { x: width / 2, y: height / 2, 'text-anchor': 'middle', class: 'sensors-chart-empty' }, 'no history yet');
    return svg;
  }
  const t0 = pts[0][0];
  const t1 = Math.max(pts[pts.length - 1][0], t0 + 1);
  const vmax = Math.max(capacity || 0, ...pts.map((p) => p[1])) * 1.05 || 1;
  const x = (t) => pad.l + ((t - t0) / (t1 - t0)) * (width - pad.l - pad.r);
  const y = (v) => height - pad.b - (v / vmax) * (height - pad.t - pad.b);
  add('line', { x1: pad.l, y1: y(0), x2: width - pad.r, y2: y(0), class: 'sensors-chart-axis' });
  add('text', { x: pad.l - 4, y: y(0), 'text-anchor': 'end', class: 'sensors-chart-label' }, '0');
  if (capacity) {
    add('line', { x1: pad.l, y1: y(capacity), x2: width - pad.r, y2: y(capacity), class: 'sensors-chart-capacity' });
    add('text', { x: pad.l - 4, y: y(capacity) + 4, 'text-anchor': 'end', class: 'sensors-chart-label' }, fmt0.format(capacity));
  }
  const d = pts.map((p, i) => `${i ? 'L' : 'M'}${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`).join(' ');
  add('path', { d, class: 'sensors-chart-line' });
  const fmtT = (t) => new Date(t).toLocaleTimeString('en-GB', { hour: '2-digit', minute: '2-digit' });
  add('text', { x: pad.l, y: height - 4, class: 'sensors-chart-label' }, fmtT(t0));
  add('text', { x: width - pad.r, y: height - 4, 'text-anchor': 'end', class: 'sensors-chart-label' }, fmtT(t1));
  return svg;
}

function addSensorLayers(map) {
  for (const id of ['feeds-traffic', 'feeds-parking', 'feeds-vehicles', 'feeds-sensors']) setGeoJson(map, id);
  addLayer(map, {
    id: 'feeds-traffic',
    type: 'line',
    source: 'feeds-traffic',
    layout: { 'line-cap': 'round' },
    paint: {
      'line-color': ['match', ['get', 'level'], 'free', LEVEL_COLORS.free, 'busy', LEVEL_COLORS.busy, 'jammed', LEVEL_COLORS.jammed, STALE_COLOR],
      'line-width': 6,
      'line-opacity': ['case', ['get', 'stale'], 0.4, 0.9],
    },
  });
  addLayer(map, {
    id: 'feeds-vehicles',
    type: 'circle',
    source: 'feeds-vehicles',
    paint: { 'circle-radius': 3.5, 'circle-color': '#7048e8', 'circle-stroke-color': '#ffffff', 'circle-stroke-width': 1 },
  });
  addLayer(map, {
    id: 'feeds-sensors',
    type: 'circle',
    source: 'feeds-sensors',
    paint: {
      'circle-radius': 5,
      'circle-color': ['case', ['get', 'stale'], STALE_COLOR, FRESH_COLOR],
      'circle-stroke-color': ['match', ['get', 'origin'], 'simulated', '#e67700', 'replayed', '#1c7ed6', '#1f2933'],
      'circle-stroke-width': 2,
    },
  });
  addLayer(map, {
    id: 'feeds-parking',
    type: 'circle',
    source: 'feeds-parking',
    paint: {
      'circle-radius': 11,
      'circle-color': ['interpolate', ['linear'], ['coalesce', ['get', 'ratio'], 0], 0, '#2f9e44', 0.7, '#f08c00', 0.95, '#e03131'],
      'circle-stroke-color': ['case', ['get', 'stale'], STALE_COLOR, '#ffffff'],
      'circle-stroke-width': 3,
    },
  });
}

registerPanel({
  id: 'sensors',
  title: 'Sensors',
  order: 10,
  async mount(container, ctx) {
    const { api, map, status } = ctx;
    addSensorLayers(map);

    const live = el('span', { class: 'sensors-live', testid: 'sensors-live', 'data-events': '0' }, 'connecting to the live stream…');
    const summary = el('p', { class: 'muted small', testid: 'sensors-summary' });
    const parkingBox = el('div', { testid: 'sensors-parking' });
    const chartBox = el('div', { class: 'sensors-chart', testid: 'sensors-chart', hidden: true });
    const trafficBox = el('div', { testid: 'sensors-traffic' });
    const list = el('ul', { class: 'sensors-list', testid: 'sensors-list' });
    const legend = el(
      'ul',
      { class: 'legend', testid: 'sensors-legend' },
      el('li', {}, el('span', { class: 'swatch swatch-dot', style: `background:${FRESH_COLOR}` }), 'sensor, fresh'),
      el('li', {}, el('span', { class: 'swatch swatch-dot', style: `background:${STALE_COLOR}` }), 'sensor, stale (no value for 2× its interval)'),
      el('li', {}, el('span', { class: 'swatch swatch-line', style: `background:${LEVEL_COLORS.free}` }), 'road: free (speed ≥ 70 % of free flow)'),
      el('li', {}, el('span', { class: 'swatch swatch-line', style: `background:${LEVEL_COLORS.busy}` }), 'road: busy (40–70 %)'),
      el('li', {}, el('span', { class: 'swatch swatch-line', style: `background:${LEVEL_COLORS.jammed}` }), 'road: jammed (< 40 %)'),
      el('li', {}, el('span', { class: 'swatch swatch-dot', style: 'background:#7048e8' }), 'shared vehicle, available'),
      el('li', {}, el('span', { class: 'swatch swatch-dot swatch-big', style: 'background:#f08c00' }), 'parking garage (colour: occupancy)'),
      el('li', {}, originBadge('replayed'), ' real Auckland counts replayed onto this city'),
      el('li', {}, originBadge('simulated'), ' generated by the demo, not measured'),
    );
    const toggles = el('div', { class: 'toggles' });
    for (const [label, id] of [['Sensors', 'feeds-sensors'], ['Parking', 'feeds-parking'], ['Road traffic', 'feeds-traffic'], ['Shared vehicles', 'feeds-vehicles']]) {
      const cb = el('input', { type: 'checkbox', testid: `toggle-${id}` });
      cb.checked = true;
      cb.addEventListener('change', () => setLayerVisible(map, id, cb.checked));
      toggles.append(el('label', { class: 'toggle' }, cb, ` ${label}`));
    }
    container.append(
      el('h2', {}, 'Sensors'),
      el('p', { class: 'muted small' }, 'Live feeds: counting cameras, parking, road traffic, shared vehicles, weather.'),
      live,
      summary,
      el('h3', {}, 'Legend'),
      legend,
      el('h3', {}, 'Layers'),
      toggles,
      el('h3', {}, 'Parking'),
      parkingBox,
      chartBox,
      el('h3', {}, 'Road traffic'),
      trafficBox,
      el('h3', {}, 'All sensors'),
      list,
    );

    let parking = [];
    let selectedGarage = null;

    function showChart(thingId) {
      const g = parking.find((p) => p.thing_id === thingId);
      if (!g) return;
      selectedGarage = thingId;
      chartBox.hidden = false;
      chartBox.textContent = '';
      chartBox.append(
        el('div', { class: 'sensors-chart-title' }, el('strong', { testid: 'sensors-chart-name' }, g.name), ' ', originBadge(g.origin)),
        el('div', { class: 'muted small' }, `occupied ${value(g.occupied)} of ${fmt0.format(g.capacity)} · free ${value(g.free)} · ${formatAge(g.age_s)}`),
        historyChart(g.history, { capacity: g.capacity }),
      );
    }

    function renderParking(data) {
      parking = data.garages;
      parkingBox.textContent = '';
      if (!parking.length) parkingBox.append(el('p', { class: 'muted small' }, 'no parking sources'));
      for (const g of parking) {
        const ratio = g.occupancy_ratio ?? 0;
        const bar = el('span', { class: 'sensors-bar' }, el('span', { class: 'sensors-bar-fill', style: `width:${Math.min(100, ratio * 100).toFixed(0)}%` }));
        const row = el(
          'button',
          { type: 'button', class: `sensors-garage${g.stale ? ' stale' : ''}${g.over_capacity ? ' over' : ''}`, testid: `sensors-garage-${g.thing_id}` },
          el('span', { class: 'sensors-garage-name' }, g.name, ' ', originBadge(g.origin)),
          bar,
          el('span', { class: 'sensors-garage-value', testid: 'sensors-garage-value' }, `${value(g.occupied)} / ${fmt0.format(g.capacity)} · ${formatAge(g.age_s)}`),
        );
        row.addEventListener('click', () => showChart(g.thing_id));
        parkingBox.append(row);
      }
      setGeoJson(map, 'feeds-parking', {
        type: 'FeatureCollection',
        features: parking.filter((g) => g.lon !== null).map((g) => ({
          type: 'Feature',
          id: g.thing_id,
          geometry: { type: 'Point', coordinates: [g.lon, g.lat] },
          properties: { thing_id: g.thing_id, name: g.name, ratio: g.occupancy_ratio, stale: !!g.stale, origin: g.origin },
        })),
      });
      if (selectedGarage !== null) showChart(selectedGarage);
      badge('parking', 'Parking', parking);
    }

    function renderTraffic(fc) {
      setGeoJson(map, 'feeds-traffic', fc);
      const counts = { free: 0, busy: 0, jammed: 0 };
      for (const f of fc.features) if (f.properties.level) counts[f.properties.level] += 1;
      trafficBox.textContent = '';
      trafficBox.append(
        el(
          'p',
          { class: 'small', testid: 'sensors-traffic-summary' },
          `${fc.features.length} segments: `,
          el('span', { style: `color:${LEVEL_COLORS.free}` }, `${counts.free} free`), ' · ',
          el('span', { style: `color:${LEVEL_COLORS.busy}` }, `${counts.busy} busy`), ' · ',
          el('span', { style: `color:${LEVEL_COLORS.jammed}` }, `${counts.jammed} jammed`),
        ),
      );
      badge('traffic', 'Road traffic', fc.features.map((f) => f.properties));
    }

    function renderVehicles(fc) {
      setGeoJson(map, 'feeds-vehicles', fc);
      badge('vehicles', 'Shared vehicles', fc.systems || []);
    }

    function staleAfter(items) {
      const intervals = items
        .flatMap((i) => [i.expected_interval_s, ...(i.datastreams || []).map((d) => d.expected_interval_s)])
        .filter((x) => typeof x === 'number' && x > 0);
      return intervals.length ? 2 * Math.max(...intervals) : 600;
    }

    function badge(id, label, items) {
      if (!items.length) return;
      const origins = new Set(items.map((i) => i.origin));
      const origin = origins.has('simulated') ? 'simulated' : origins.has('replayed') ? 'replayed' : 'real';
      const ages = items.map((i) => i.age_s).filter((a) => a !== null && a !== undefined);
      const age = ages.length ? Math.min(...ages) : null;
      status.set(`sensors-${id}`, {
        label,
        kind: STATUS_KIND[origin],
        updatedAt: age === null ? undefined : new Date(Date.now() - age * 1000),
        // stale after twice the longest expected reporting interval (hourly counters: 2 h)
        staleAfterS: staleAfter(items),
        detail: origin === 'simulated' ? 'simulated by the demo' : origin === 'replayed' ? 'real Auckland counts, replayed' : 'live feed',
      });
    }

    function renderSensors(data) {
      const things = data.things;
      summary.textContent = `${things.length} sensors: ` + Object.entries(data.origins).map(([o, n]) => `${n} ${o}`).join(', ');
      list.textContent = '';
      for (const t of things) {
        const ds = t.datastreams.filter((d) => d.stream !== 'positions').slice(0, 3);
        const vals = ds.map((d) => `${d.observed_property}: ${value(d.value)}${d.unit && !d.unit.startsWith('{') ? ' ' + d.unit : ''}`).join(' · ');
        list.append(
          el(
            'li',
            { class: `sensors-item${t.stale ? ' stale' : ''}`, testid: `sensors-item-${t.thing_id}`, 'data-origin': t.origin },
            el('span', { class: `sensors-dot ${t.stale ? 'stale' : 'fresh'}` }),
            el('span', { class: 'sensors-item-name' }, t.name),
            ' ',
            originBadge(t.origin),
            t.flags.filter((f) => f === 'impossible' || f === 'suppressed').map((f) => el('span', { class: `sensors-flag ${f}` }, f))[0] || '',
            el('div', { class: 'muted small sensors-item-values' }, vals || 'no data yet', ' · ', formatAge(t.age_s)),
          ),
        );
      }
      setGeoJson(map, 'feeds-sensors', {
        type: 'FeatureCollection',
        features: things.filter((t) => t.lon !== null && t.feed !== 'parking' && t.feed !== 'traffic').map((t) => ({
          type: 'Feature',
          id: t.thing_id,
          geometry: { type: 'Point', coordinates: [t.lon, t.lat] },
          properties: { thing_id: t.thing_id, name: t.name, stale: !!t.stale, origin: t.origin },
        })),
      });
      const cams = things.filter((t) => t.feed === 'camera');
      badge('cameras', 'Counting cameras', cams);
      badge('weather', 'Weather', things.filter((t) => t.feed === 'weather'));
    }

    let refreshing = false;
    let again = false;
    let lastRefresh = 0;
    async function refresh() {
      if (refreshing) {
        again = true;
        return;
      }
      refreshing = true;
      try {
        const [sensors, park, traffic, vehicles] = await Promise.all([
          api.get('/api/feeds/sensors'),
          api.get('/api/feeds/parking'),
          api.get('/api/feeds/traffic'),
          api.get('/api/feeds/vehicles'),
        ]);
        renderSensors(sensors);
        renderParking(park);
        renderTraffic(traffic);
        renderVehicles(vehicles);
        lastRefresh = Date.now();
      } finally {
        refreshing = false;
      }
      if (again) {
        again = false;
        scheduleRefresh();
      }
    }
    let timer = null;
    function scheduleRefresh() {
      if (timer) return;
      const wait = Math.max(0, REFRESH_MIN_MS - (Date.now() - lastRefresh));
      timer = setTimeout(() => {
        timer = null;
        refresh().catch((err) => console.warn('sensors refresh failed', err));
      }, wait);
    }

    map.on('click', 'feeds-parking', (e) => {
      const f = e.features && e.features[0];
      if (f) {
        ctx.panels?.show('sensors');
        showChart(f.properties.thing_id);
      }
    });

    await refresh();

    // ---- live updates
    let events = 0;
    let observations = 0;
    const source = new EventSource(api.urlWithToken('/api/feeds/stream'));
    source.addEventListener('open', () => {
      if (!events) live.textContent = 'live: connected, waiting for data…';
      live.classList.add('on');
    });
    source.addEventListener('observations', (msg) => {
      const ev = JSON.parse(msg.data);
      events += 1;
      observations += ev.count;
      live.dataset.events = String(events);
      live.textContent = `live: ${fmt0.format(observations)} new observations · last ${new Date(ev.time).toLocaleTimeString('en-GB')}`;
      scheduleRefresh();
    });
    source.addEventListener('error', () => {
      live.classList.remove('on');
      live.textContent = 'live stream interrupted; reconnecting…';
    });
    setInterval(scheduleRefresh, 30_000); // ages move on even without new data
    return {
      onShow() {
        scheduleRefresh();
      },
    };
  },
});
