// The evacuation panel, two modes.
// Network: take the current incident zone (or draw a polygon), walk or drive, run; the streets
// are coloured by load, destinations and bottlenecks drawn, clearance times and the comparison
// with plain shortest paths listed; a bottleneck can be closed and the plan re-run.
// Venue: pick a square from the map (or load the example), place exits (two clicks = a door)
// and obstacles (click corners, then Finish), set the crowd, run as a job with a progress bar,
// play the agents back over the 3D city and see the density map and bottlenecks.
//
// Venue scenarios are in local metres with `origin: [lon, lat]` (docs/evacuation.md); this
// panel converts clicks with a local east/north approximation that matches the server's
// transverse Mercator frame to within centimetres over a venue.
import { addLayer, setGeoJson, setLayerVisible } from '../map.js';
import { registerPanel } from './registry.js';
import './evacuation.css';

const EMPTY = { type: 'FeatureCollection', features: [] };
const POLL_MS = 400;
const PLAY_MS = 100;
const fmt0 = new Intl.NumberFormat('en', { maximumFractionDigits: 0 });
const fmt1 = new Intl.NumberFormat('en', { maximumFractionDigits: 1 });

/** The example venue (examples/venue_square_stage.json), placed at the map's centre. */
const EXAMPLE_VENUE = {
  schema_version: 1,
  name: 'Square with a stage and two exits',
  walkable_area: { type: 'Polygon', coordinates: [[[0, 0], [50, 0], [50, 35], [0, 35], [0, 0]]] },
  obstacles: [
    { name: 'stage', kind: 'stage', geometry: { type: 'Polygon', coordinates: [[[17, 27], [33, 27], [33, 33], [17, 33], [17, 27]]] } },
    { name: 'front-of-stage barrier', kind: 'barrier', thickness_m: 0.3, geometry: { type: 'LineString', coordinates: [[15, 25], [35, 25]] } },
    { name: 'food stand', kind: 'stand', geometry: { type: 'Polygon', coordinates: [[[40, 8], [44, 8], [44, 12], [40, 12], [40, 8]]] } },
  ],
  exits: [
    { name: 'south gate', door: [[20, 0], [24, 0]] },
    { name: 'east gate', door: [[50, 15], [50, 18]] },
  ],
  agents: [
    {
      name: 'audience', count: 350,
      spawn: { type: 'Polygon', coordinates: [[[12, 14], [38, 14], [38, 24], [12, 24], [12, 14]]] },
      speed_m_per_s: { mean: 1.34, sd: 0.26, min: 0.6, max: 1.9 },
      premovement_s: { distribution: 'uniform', min: 0, max: 20 },
    },
  ],
  model: { name: 'CollisionFreeSpeedModel' },
  simulation: { dt_s: 0.01, max_time_s: 900, seeds: [1, 2], sample_interval_s: 0.5 },
  analysis: { grid_size_m: 1.0, bottleneck_density_p_per_m2: 2.0, bottleneck_min_duration_s: 10 },
};

// ---------------------------------------------------------------- small helpers
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

function field(label, input) {
  return el('label', { class: 'evac-field' }, el('span', {}, label), input);
}

function mmss(s) {
  if (s === null || s === undefined) return '—';
  const m = Math.floor(s / 60);
  return m ? `${m} min ${String(Math.round(s % 60)).padStart(2, '0')} s` : `${fmt1.format(s)} s`;
}

function errorText(err) {
  const d = err?.detail && typeof err.detail === 'object' && !Array.isArray(err.detail) ? err.detail : null;
  return d && d.field ? `${d.field}: ${d.message}` : err.message || String(err);
}

/** Local metres ↔ lon/lat around `origin` (x east, y north; WGS84 radii of curvature). */
export function localFrame([lon0, lat0]) {
  const a = 6378137;
  const e2 = 0.00669437999014;
  const phi = (lat0 * Math.PI) / 180;
  const w = 1 - e2 * Math.sin(phi) ** 2;
  const kx = ((a / Math.sqrt(w)) * Math.cos(phi) * Math.PI) / 180; // metres per degree east
  const ky = ((a * (1 - e2)) / (w * Math.sqrt(w)) * Math.PI) / 180; // metres per degree north
  return {
    toLocal: ([lon, lat]) => [round2((lon - lon0) * kx), round2((lat - lat0) * ky)],
    toLngLat: ([x, y]) => [lon0 + x / kx, lat0 + y / ky],
  };
}

function round2(v) {
  return Math.round(v * 100) / 100;
}

/** The rings of a scenario polygon: GeoJSON Polygon or a list of [x, y] vertices. */
function ringsOf(geom) {
  if (!geom) return [];
  if (Array.isArray(geom)) return [closeRing(geom)];
  if (geom.type === 'Polygon') return geom.coordinates;
  if (geom.type === 'MultiPolygon') return geom.coordinates.flat();
  return [];
}

function closeRing(pts) {
  if (!pts.length) return pts;
  const [a, b] = [pts[0], pts[pts.length - 1]];
  return a[0] === b[0] && a[1] === b[1] ? pts : [...pts, a];
}

/** Project `p` onto segment a–b (local metres); returns the point and the distance. */
function onSegment(p, a, b) {
  const dx = b[0] - a[0];
  const dy = b[1] - a[1];
  const len2 = dx * dx + dy * dy || 1e-12;
  const t = Math.max(0, Math.min(1, ((p[0] - a[0]) * dx + (p[1] - a[1]) * dy) / len2));
  const q = [a[0] + t * dx, a[1] + t * dy];
  return { q, t, d: Math.hypot(p[0] - q[0], p[1] - q[1]) };
}

/** Snap a door's two clicks onto the nearest edge of the walkable area's outer boundary. */
export function snapDoor(ring, p1, p2) {
  let best = null;
  for (let i = 0; i + 1 < ring.length; i += 1) {
    const s = onSegment(p1, ring[i], ring[i + 1]);
    if (!best || s.d < best.d) best = { ...s, a: ring[i], b: ring[i + 1] };
  }
  if (!best) return [p1, p2];
  const s2 = onSegment(p2, best.a, best.b);
  return [best.q.map(round2), s2.q.map(round2)];
}

// ---------------------------------------------------------------- map layers
const NETWORK_LAYERS = ['evac-area-fill', 'evac-area-line', 'evac-loads', 'evac-bottleneck-lines', 'evac-destinations'];
const VENUE_LAYERS = ['evac-venue-area', 'evac-venue-obstacles', 'evac-venue-exits', 'evac-density', 'evac-agents', 'evac-venue-bottlenecks'];

function addEvacuationLayers(map) {
  for (const s of ['evac-area', 'evac-loads', 'evac-bottlenecks', 'evac-destinations', 'evac-draft',
    'evac-venue', 'evac-density', 'evac-agents', 'evac-venue-bottlenecks']) setGeoJson(map, s);
  addLayer(map, { id: 'evac-area-fill', type: 'fill', source: 'evac-area', paint: { 'fill-color': '#e8590c', 'fill-opacity': 0.12 } }, 'buildings');
  addLayer(map, { id: 'evac-area-line', type: 'line', source: 'evac-area', paint: { 'line-color': '#e8590c', 'line-width': 2, 'line-dasharray': [3, 2] } });
  addLayer(map, { id: 'evac-density', type: 'fill', source: 'evac-density', paint: {
    'fill-color': ['interpolate', ['linear'], ['coalesce', ['get', 'density_max_p_per_m2'], 0],
      0, '#ffec99', 1, '#ffc078', 2, '#ff922b', 3.5, '#f03e3e', 5, '#862e9c'],
    'fill-opacity': 0.55,
  } });
  addLayer(map, { id: 'evac-venue-area', type: 'line', source: 'evac-venue', filter: ['==', ['get', 'kind'], 'walkable_area'], paint: { 'line-color': '#1c7ed6', 'line-width': 2 } });
  addLayer(map, { id: 'evac-venue-obstacles', type: 'fill', source: 'evac-venue', filter: ['==', ['get', 'kind'], 'obstacle'], paint: { 'fill-color': '#495057', 'fill-opacity': 0.8 } });
  addLayer(map, { id: 'evac-venue-exits', type: 'line', source: 'evac-venue', filter: ['==', ['get', 'kind'], 'exit'], paint: { 'line-color': ['case', ['get', 'closed'], '#868e96', '#2f9e44'], 'line-width': 6 } });
  addLayer(map, {
    id: 'evac-loads', type: 'line', source: 'evac-loads',
    layout: { 'line-cap': 'round', 'line-join': 'round' },
    paint: {
      'line-color': ['interpolate', ['linear'], ['get', 'load_ratio'], 0, '#2f9e44', 0.35, '#fab005', 0.7, '#f76707', 1, '#c92a2a'],
      'line-width': ['interpolate', ['linear'], ['get', 'load_ratio'], 0, 2, 1, 8],
    },
  });
  addLayer(map, { id: 'evac-bottleneck-lines', type: 'line', source: 'evac-bottlenecks', paint: { 'line-color': '#862e9c', 'line-width': 12, 'line-opacity': 0.45 } });
  addLayer(map, {
    id: 'evac-destinations', type: 'circle', source: 'evac-destinations',
    paint: {
      'circle-radius': ['interpolate', ['linear'], ['get', 'persons'], 0, 5, 2000, 14],
      'circle-color': '#2f9e44', 'circle-stroke-color': '#ffffff', 'circle-stroke-width': 2,
    },
  });
  addLayer(map, { id: 'evac-venue-bottlenecks', type: 'circle', source: 'evac-venue-bottlenecks', paint: { 'circle-radius': 12, 'circle-color': 'rgba(0,0,0,0)', 'circle-stroke-color': '#862e9c', 'circle-stroke-width': 3 } });
  addLayer(map, { id: 'evac-agents', type: 'circle', source: 'evac-agents', paint: { 'circle-radius': ['interpolate', ['linear'], ['zoom'], 15, 2, 19, 5], 'circle-color': '#1864ab', 'circle-stroke-color': '#ffffff', 'circle-stroke-width': 0.5, 'circle-pitch-alignment': 'map' } });
  addLayer(map, { id: 'evac-draft-line', type: 'line', source: 'evac-draft', paint: { 'line-color': '#e64980', 'line-width': 2, 'line-dasharray': [2, 1] } });
  addLayer(map, { id: 'evac-draft-points', type: 'circle', source: 'evac-draft', filter: ['==', ['geometry-type'], 'Point'], paint: { 'circle-radius': 4, 'circle-color': '#e64980' } });
}

// ---------------------------------------------------------------- the panel
registerPanel({
  id: 'evacuation',
  title: 'Evacuation',
  order: 40,
  async mount(container, ctx) {
    const { api, map, clicks, events, city, status } = ctx;
    addEvacuationLayers(map);

    // ---- drawing tool: collects clicked points until finished (shared by both modes)
    let tool = null; // {kind, points, max, done(points)}
    let releaseClicks = null;
    const hint = el('p', { class: 'evac-hint small', testid: 'evac-hint', hidden: true });
    const finishBtn = el('button', { type: 'button', testid: 'evac-draw-finish', hidden: true }, 'Finish');
    const cancelBtn = el('button', { type: 'button', testid: 'evac-draw-cancel', hidden: true }, 'Cancel');
    const toolBar = el('div', { class: 'evac-actions' }, finishBtn, cancelBtn);

    function drawDraft() {
      const pts = tool ? tool.points : [];
      const feats = pts.map((p) => ({ type: 'Feature', properties: {}, geometry: { type: 'Point', coordinates: p } }));
      if (pts.length > 1) feats.push({ type: 'Feature', properties: {}, geometry: { type: 'LineString', coordinates: tool.closed ? [...pts, pts[0]] : pts } });
      setGeoJson(map, 'evac-draft', { type: 'FeatureCollection', features: feats });
    }
    function startTool(kind, text, { max = Infinity, min = 3, closed = true, done }) {
      stopTool();
      tool = { kind, points: [], max, min, closed, done };
      hint.textContent = text;
      hint.hidden = false;
      finishBtn.hidden = max <= 2;
      cancelBtn.hidden = false;
      map.doubleClickZoom.disable();
      releaseClicks = clicks.push('evacuation', (e) => {
        if (!tool) return;
        const p = [Number(e.lngLat.lng.toFixed(7)), Number(e.lngLat.lat.toFixed(7))];
        const last = tool.points[tool.points.length - 1];
        if (last && Math.abs(last[0] - p[0]) < 1e-7 && Math.abs(last[1] - p[1]) < 1e-7) return;
        tool.points.push(p);
        drawDraft();
        if (tool.points.length >= tool.max) finishTool();
      }, { cursor: 'crosshair' });
    }
    function stopTool() {
      tool = null;
      if (releaseClicks) releaseClicks();
      releaseClicks = null;
      hint.hidden = true;
      finishBtn.hidden = true;
      cancelBtn.hidden = true;
      map.doubleClickZoom.enable();
      setGeoJson(map, 'evac-draft', EMPTY);
    }
    function finishTool() {
      if (!tool) return;
      const t = tool;
      if (t.points.length < t.min) {
        hint.textContent = `Click at least ${t.min} points (${t.points.length} so far).`;
        return;
      }
      stopTool();
      t.done(t.points);
    }
    finishBtn.addEventListener('click', finishTool);
    cancelBtn.addEventListener('click', stopTool);
    map.on('dblclick', () => {
      if (tool && tool.max > 2) finishTool();
    });

    // ---- mode switch
    const modeNetwork = el('button', { type: 'button', class: 'evac-mode', testid: 'evac-mode-network', 'aria-pressed': 'true' }, 'Network');
    const modeVenue = el('button', { type: 'button', class: 'evac-mode', testid: 'evac-mode-venue', 'aria-pressed': 'false' }, 'Venue');
    const netBox = el('div', { testid: 'evac-network' });
    const venueBox = el('div', { testid: 'evac-venue', hidden: true });
    function setMode(m) {
      stopTool();
      modeNetwork.setAttribute('aria-pressed', String(m === 'network'));
      modeVenue.setAttribute('aria-pressed', String(m === 'venue'));
      netBox.hidden = m !== 'network';
      venueBox.hidden = m !== 'venue';
      for (const id of NETWORK_LAYERS) setLayerVisible(map, id, m === 'network');
      for (const id of VENUE_LAYERS) setLayerVisible(map, id, m === 'venue');
    }
    modeNetwork.addEventListener('click', () => setMode('network'));
    modeVenue.addEventListener('click', () => setMode('venue'));

    container.append(
      el('h2', {}, 'Evacuation'),
      el('p', { class: 'muted small' }, 'Network: routes out of an area over the streets. Venue: a crowd leaving a square (JuPedSim).'),
      el('div', { class: 'evac-modes' }, modeNetwork, modeVenue),
      hint,
      toolBar,
      netBox,
      venueBox,
    );

    // ================================================================= network
    let area = null; // GeoJSON (Polygon / FeatureCollection), WGS84
    let lastIncident = null;
    let closedEdges = [];
    events.addEventListener('incident:result', (e) => {
      lastIncident = e.detail;
    });

    const areaText = el('span', { testid: 'evac-area-text' }, 'no area yet');
    const useIncident = el('button', { type: 'button', testid: 'evac-use-incident' }, 'Use incident zone');
    const draw = el('button', { type: 'button', testid: 'evac-draw' }, 'Draw area');
    const travel = el('select', { testid: 'evac-travel-mode' }, el('option', { value: 'walk' }, 'walk'), el('option', { value: 'drive' }, 'drive'));
    const at = el('input', { type: 'datetime-local', testid: 'evac-at' });
    const margin = el('input', { type: 'number', min: '0', step: '10', value: '100', testid: 'evac-margin' });
    const run = el('button', { type: 'button', class: 'evac-run', testid: 'evac-run' }, 'Evacuate');
    const spinner = el('span', { class: 'evac-spinner', testid: 'evac-spinner', hidden: true }, el('span', { class: 'spinner dark' }), 'routing…');
    const error = el('p', { class: 'error', testid: 'evac-error', hidden: true });
    const closedText = el('p', { class: 'small', testid: 'evac-closed', hidden: true });
    const results = el('div', { testid: 'evac-results', hidden: true });

    netBox.append(
      el('div', { class: 'evac-field' }, el('span', {}, 'Area'), areaText),
      el('div', { class: 'evac-actions' }, useIncident, draw),
      field('Travel', travel),
      field('Time (local; empty = now; 07–19 h = day occupants)', at),
      field('Safe distance outside the area (m)', margin),
      closedText,
      el('div', { class: 'evac-actions' }, run, spinner),
      error,
      results,
    );

    function setArea(geojson, label) {
      area = geojson;
      areaText.textContent = label;
      closedEdges = [];
      renderClosed();
      const fc = geojson.type === 'FeatureCollection' ? geojson
        : { type: 'FeatureCollection', features: [geojson.type === 'Feature' ? geojson : { type: 'Feature', properties: {}, geometry: geojson }] };
      setGeoJson(map, 'evac-area', fc);
    }
    function showError(box, err) {
      box.textContent = err ? errorText(err) : '';
      box.hidden = !err;
    }
    function renderClosed() {
      closedText.textContent = '';
      closedText.hidden = !closedEdges.length;
      if (!closedEdges.length) return;
      const reopen = el('button', { type: 'button', testid: 'evac-reopen' }, 'reopen all');
      reopen.addEventListener('click', () => {
        closedEdges = [];
        renderClosed();
      });
      closedText.append(`Closed streets: ${closedEdges.join(', ')} `, reopen);
    }

    useIncident.addEventListener('click', async () => {
      showError(error, null);
      let fc = lastIncident?.zones;
      if (!fc) {
        const src = map.getSource('incident-zones');
        if (src?.getData) fc = await src.getData();
      }
      const zones = (fc?.features || []).filter((f) => f.properties?.kind === 'zone');
      if (!zones.length) {
        showError(error, new Error('No incident zone yet: run the Incident panel first, or draw an area.'));
        return;
      }
      setArea({ type: 'FeatureCollection', features: zones }, `incident zone (${zones.length} level${zones.length > 1 ? 's' : ''})`);
    });
    draw.addEventListener('click', () => {
      startTool('area', 'Click the corners of the area; double-click or Finish to close it.', {
        done: (pts) => setArea({ type: 'Polygon', coordinates: [[...pts, pts[0]]] }, `drawn polygon (${pts.length} corners)`),
      });
    });

    async function runNetwork() {
      showError(error, null);
      if (!area) {
        showError(error, new Error('area: use the incident zone or draw an area first'));
        return;
      }
      const body = { area, mode: travel.value, margin_m: Number(margin.value || 100), closed_edges: closedEdges, city: city?.name };
      if (at.value) body.at = at.value; // local wall-clock time
      run.disabled = true;
      spinner.hidden = false;
      try {
        const res = await api.post('/api/evacuation/network', body);
        drawNetwork(res);
      } catch (err) {
        if (err.status !== 401) showError(error, err);
      } finally {
        run.disabled = false;
        spinner.hidden = true;
      }
    }
    run.addEventListener('click', runNetwork);

    function drawNetwork(res) {
      setGeoJson(map, 'evac-loads', res.edge_loads_geojson);
      setGeoJson(map, 'evac-bottlenecks', res.bottlenecks_geojson);
      setGeoJson(map, 'evac-destinations', res.destinations);
      status.set('evacuation-model', { label: 'Evacuation', kind: 'model', updatedAt: new Date(), detail: res.mode_note });
      results.textContent = '';
      const sp = res.shortest_path || {};
      results.append(
        el('h3', {}, `${fmt0.format(res.persons_total)} people in ${res.buildings_evacuated} buildings (${res.occupancy.period})`),
        el('p', { class: 'evac-clearance', testid: 'evac-clearance' },
          el('strong', {}, `90 % out: ${mmss(res.clearance_90_s)}`), ' · ', el('strong', {}, `everyone: ${mmss(res.clearance_100_s)}`)),
        el('p', { class: 'small', testid: 'evac-shortest' },
          `Plain shortest paths: 90 % ${mmss(sp.clearance_90_s)}, everyone ${mmss(sp.clearance_100_s)}; capacity-aware routing saves ${fmt1.format(sp.saving_100_pct ?? 0)} %.`),
        res.persons_stranded ? el('p', { class: 'error small' }, `${fmt0.format(res.persons_stranded)} people cannot reach a safe destination.`) : '',
        el('p', { class: 'small muted' }, `${res.destinations.features.length} destinations · ${res.routes_geojson.features.length} routes · ${res.mode} · ${res.occupancy.basis}`),
        legend(),
      );
      const list = el('ol', { class: 'evac-bottlenecks', testid: 'evac-bottlenecks' });
      for (const b of res.bottlenecks.slice(0, 10)) {
        const close = el('button', { type: 'button', class: 'small', title: 'close this street and re-run' }, 'close');
        close.addEventListener('click', () => {
          if (!closedEdges.includes(b.edge_id)) closedEdges.push(b.edge_id);
          renderClosed();
          runNetwork();
        });
        const f = res.bottlenecks_geojson.features.find((x) => x.properties.edge_id === b.edge_id);
        const li = el('li', {}, `street ${b.edge_id}: queue up to ${fmt0.format(b.peak_queue_persons)} · ${fmt1.format(b.capacity_p_per_s)} p/s · saturated ${mmss(b.saturated_s)} `, close);
        if (f) li.addEventListener('mouseenter', () => map.easeTo({ center: f.geometry.coordinates[0], duration: 300 }));
        list.append(li);
      }
      results.append(el('h3', {}, 'Bottlenecks'), res.bottlenecks.length ? list : el('p', { class: 'small muted' }, 'none: no street ran at capacity'));
      results.hidden = false;
    }

    function legend() {
      const ul = el('ul', { class: 'legend evac-legend' });
      for (const [c, t] of [['#2f9e44', 'light load'], ['#fab005', 'medium'], ['#c92a2a', 'busiest street'], ['#862e9c', 'bottleneck (at capacity)']]) {
        const sw = el('span', { class: 'swatch' });
        sw.style.background = c;
        ul.append(el('li', {}, sw, t));
      }
      return ul;
    }

    // ================================================================= venue
    let venue = null; // scenario document, local metres, with origin
    let job = null;
    let playback = null;
    let timer = null;

    const venueText = el('span', { testid: 'evac-venue-name' }, 'no venue yet');
    const example = el('button', { type: 'button', testid: 'evac-venue-example' }, 'Load example');
    const pick = el('button', { type: 'button', testid: 'evac-venue-pick' }, 'Pick a square');
    const drawVenue = el('button', { type: 'button', testid: 'evac-venue-draw' }, 'Draw venue');
    const addExit = el('button', { type: 'button', testid: 'evac-add-exit' }, '+ Exit');
    const addObstacle = el('button', { type: 'button', testid: 'evac-add-obstacle' }, '+ Obstacle');
    const clearVenue = el('button', { type: 'button', testid: 'evac-venue-clear-exits' }, 'Clear exits');
    const exitWidth = el('input', { type: 'number', min: '0.5', step: '0.1', value: '', placeholder: 'as drawn', testid: 'evac-exit-width' });
    const count = el('input', { type: 'number', min: '1', step: '1', value: '100', testid: 'evac-venue-count' });
    const speed = el('input', { type: 'number', min: '0.3', step: '0.05', value: '1.34', testid: 'evac-venue-speed' });
    const seeds = el('input', { type: 'number', min: '1', max: '50', step: '1', value: '1', testid: 'evac-venue-seeds' });
    const venueRun = el('button', { type: 'button', class: 'evac-run', testid: 'evac-venue-run' }, 'Simulate');
    const validateBtn = el('button', { type: 'button', testid: 'evac-venue-validate' }, 'Check');
    const progress = el('progress', { max: '1', value: '0', testid: 'evac-venue-progress', hidden: true });
    const progressText = el('span', { class: 'small muted', testid: 'evac-venue-progress-text' });
    const venueError = el('p', { class: 'error', testid: 'evac-venue-error', hidden: true });
    const venueOk = el('p', { class: 'small', testid: 'evac-venue-ok', hidden: true });
    const venueResults = el('div', { testid: 'evac-venue-results', hidden: true });
    const items = el('ul', { class: 'evac-items small', testid: 'evac-venue-items' });

    venueBox.append(
      el('div', { class: 'evac-field' }, el('span', {}, 'Venue'), venueText),
      el('div', { class: 'evac-actions' }, example, pick, drawVenue),
      el('div', { class: 'evac-actions' }, addExit, addObstacle, clearVenue),
      field('Door width (m; empty = as clicked)', exitWidth),
      items,
      el('div', { class: 'evac-grid' }, field('Crowd (persons)', count), field('Speed (m/s)', speed), field('Seeds', seeds)),
      el('div', { class: 'evac-actions' }, venueRun, validateBtn),
      el('div', { class: 'evac-progress' }, progress, progressText),
      venueError,
      venueOk,
      venueResults,
    );

    const frameOf = () => localFrame(venue.origin);
    function setVenue(doc, label) {
      venue = structuredClone(doc);
      if (!venue.origin) {
        const c = map.getCenter();
        venue.origin = [Number(c.lng.toFixed(7)), Number(c.lat.toFixed(7))];
      }
      venueText.textContent = label || venue.name || 'venue';
      const g = venue.agents?.[0];
      if (g?.count) count.value = String(g.count);
      if (g?.speed_m_per_s?.mean) speed.value = String(g.speed_m_per_s.mean);
      seeds.value = String(venue.simulation?.seeds?.length || 1);
      clearResults();
      drawVenueShape();
    }
    function drawVenueShape() {
      if (!venue) {
        setGeoJson(map, 'evac-venue', EMPTY);
        return;
      }
      const f = frameOf();
      const ring = (r) => r.map((p) => f.toLngLat(p));
      const feats = [{ type: 'Feature', properties: { kind: 'walkable_area' }, geometry: { type: 'MultiLineString', coordinates: ringsOf(venue.walkable_area).map(ring) } }];
      for (const o of venue.obstacles || []) {
        const g = o.geometry;
        if (!g) continue;
        if (g.type === 'LineString') feats.push({ type: 'Feature', properties: { kind: 'exit', closed: true, name: o.name }, geometry: { type: 'LineString', coordinates: ring(g.coordinates) } });
        else feats.push({ type: 'Feature', properties: { kind: 'obstacle', name: o.name }, geometry: { type: 'Polygon', coordinates: ringsOf(g).map(ring) } });
      }
      for (const e of venue.exits || []) {
        feats.push({ type: 'Feature', properties: { kind: 'exit', closed: !!e.closed, name: e.name }, geometry: { type: 'LineString', coordinates: ring(e.door) } });
      }
      setGeoJson(map, 'evac-venue', { type: 'FeatureCollection', features: feats });
      items.textContent = '';
      for (const e of venue.exits || []) {
        const w = Math.hypot(e.door[1][0] - e.door[0][0], e.door[1][1] - e.door[0][1]);
        items.append(el('li', {}, `exit ${e.name}: ${fmt1.format(e.width_m || w)} m`));
      }
      for (const o of venue.obstacles || []) items.append(el('li', {}, `obstacle ${o.name} (${o.kind || 'obstacle'})`));
      const b = ringsOf(venue.walkable_area)[0];
      if (b && b.length) {
        const xs = b.map((p) => p[0]);
        const ys = b.map((p) => p[1]);
        const sw = f.toLngLat([Math.min(...xs), Math.min(...ys)]);
        const ne = f.toLngLat([Math.max(...xs), Math.max(...ys)]);
        map.fitBounds([sw, ne], { padding: 80, pitch: 50, maxZoom: 19, animate: false });
      }
    }
    function clearResults() {
      stopPlayback();
      playback = null;
      venueResults.hidden = true;
      venueResults.textContent = '';
      setGeoJson(map, 'evac-density', EMPTY);
      setGeoJson(map, 'evac-agents', EMPTY);
      setGeoJson(map, 'evac-venue-bottlenecks', EMPTY);
      venueOk.hidden = true;
      showError(venueError, null);
    }
    function needVenue() {
      if (venue) return true;
      showError(venueError, new Error('walkable_area: load the example, pick a square or draw a venue first'));
      return false;
    }

    example.addEventListener('click', () => {
      const c = map.getCenter();
      setVenue({ ...EXAMPLE_VENUE, origin: [Number(c.lng.toFixed(7)), Number(c.lat.toFixed(7))] }, `${EXAMPLE_VENUE.name} (example)`);
    });
    async function fromZone(body, label) {
      showError(venueError, null);
      try {
        const sk = await api.post('/api/evacuation/venue/from-zone', { ...body, city: city?.name });
        setVenue(sk, label || sk.name);
        venueOk.textContent = `${fmt0.format(sk.source.area_m2)} m² open space (buildings cut out). Now add at least one exit on its edge.`;
        venueOk.hidden = false;
      } catch (err) {
        if (err.status !== 401) showError(venueError, err);
      }
    }
    pick.addEventListener('click', () => {
      startTool('pick', 'Click a square or pedestrian zone on the map.', {
        max: 1, min: 1, done: (pts) => {
          const hits = map.queryRenderedFeatures(map.project(pts[0]), { layers: ['zones-fill'] });
          const z = hits[0];
          if (!z) {
            showError(venueError, new Error('zone_id: no zone there; click inside a square (blue or green area)'));
            return;
          }
          fromZone({ zone_id: z.id ?? z.properties.id }, z.properties.name);
        },
      });
    });
    drawVenue.addEventListener('click', () => {
      startTool('venue', 'Click the corners of the open space; buildings inside are cut out. Double-click or Finish.', {
        done: (pts) => fromZone({ polygon: { type: 'Polygon', coordinates: [[...pts, pts[0]]] } }, 'drawn venue'),
      });
    });
    addExit.addEventListener('click', () => {
      if (!needVenue()) return;
      startTool('exit', 'Click the two ends of the door on the venue’s edge.', {
        max: 2, min: 2, closed: false, done: (pts) => {
          const f = frameOf();
          const outer = ringsOf(venue.walkable_area)[0] || [];
          const door = snapDoor(outer, f.toLocal(pts[0]), f.toLocal(pts[1]));
          const exit = { name: `exit ${(venue.exits || []).length + 1}`, door };
          const w = Number(exitWidth.value);
          if (exitWidth.value && w > 0) exit.width_m = w;
          venue.exits = [...(venue.exits || []), exit];
          clearResults();
          drawVenueShape();
        },
      });
    });
    addObstacle.addEventListener('click', () => {
      if (!needVenue()) return;
      startTool('obstacle', 'Click the corners of the obstacle (stage, stand, fence block); Finish to close it.', {
        done: (pts) => {
          const f = frameOf();
          const ring = pts.map((p) => f.toLocal(p));
          venue.obstacles = [...(venue.obstacles || []), {
            name: `obstacle ${(venue.obstacles || []).length + 1}`, kind: 'barrier',
            geometry: { type: 'Polygon', coordinates: [[...ring, ring[0]]] },
          }];
          clearResults();
          drawVenueShape();
        },
      });
    });
    clearVenue.addEventListener('click', () => {
      if (!venue) return;
      venue.exits = [];
      clearResults();
      drawVenueShape();
    });

    function scenarioToRun() {
      const sc = structuredClone(venue);
      const n = Math.round(Number(count.value));
      if (sc.agents?.length && n > 0) {
        sc.agents = [{ ...sc.agents[0], count: n }];
        delete sc.agents[0].density_p_per_m2;
      }
      const v = Number(speed.value);
      if (v > 0) {
        for (const g of sc.agents || []) {
          const s = g.speed_m_per_s || {};
          g.speed_m_per_s = { ...s, mean: v, min: Math.min(s.min ?? 0.6, v), max: Math.max(s.max ?? 1.9, v) };
        }
      }
      const k = Math.max(1, Math.round(Number(seeds.value) || 1));
      sc.simulation = { ...(sc.simulation || {}), seeds: Array.from({ length: k }, (_, i) => i + 1) };
      return sc;
    }

    validateBtn.addEventListener('click', async () => {
      if (!needVenue()) return;
      showError(venueError, null);
      venueOk.hidden = true;
      try {
        const r = await api.post('/api/evacuation/venue/validate', scenarioToRun());
        venueOk.textContent = `OK: ${r.agents} persons, ${r.exits.length} exits, ${fmt0.format(r.walkable_area_m2)} m² free.`;
        venueOk.hidden = false;
      } catch (err) {
        if (err.status !== 401) showError(venueError, err);
      }
    });

    venueRun.addEventListener('click', async () => {
      if (!needVenue()) return;
      clearResults();
      const sc = scenarioToRun();
      venueRun.disabled = true;
      try {
        const started = await api.post('/api/evacuation/venue/jobs', { scenario: sc, processes: Math.min(2, sc.simulation.seeds.length) });
        job = started.id;
        progress.hidden = false;
        progress.value = 0;
        progressText.textContent = 'queued…';
        await poll(started.id);
      } catch (err) {
        if (err.status !== 401) showError(venueError, err);
      } finally {
        venueRun.disabled = false;
      }
    });

    async function poll(id) {
      for (;;) {
        if (job !== id) return;
        const s = await api.get(`/api/evacuation/venue/jobs/${id}`);
        progress.value = s.progress;
        progressText.textContent = `${Math.round(s.progress * 100)} % · ${s.message}`;
        if (s.status === 'done') {
          progress.hidden = true;
          progressText.textContent = `done in ${fmt1.format(s.elapsed_s)} s`;
          drawVenueResult(s.result);
          return;
        }
        if (s.status === 'failed' || s.status === 'cancelled') {
          progress.hidden = true;
          progressText.textContent = '';
          throw Object.assign(new Error(s.error?.message || s.status), { detail: s.error });
        }
        await new Promise((r) => setTimeout(r, POLL_MS));
      }
    }

    function drawVenueResult(res) {
      const s = res.summary;
      const geo = res.geo;
      if (geo?.density) setGeoJson(map, 'evac-density', geo.density);
      if (geo?.bottlenecks) setGeoJson(map, 'evac-venue-bottlenecks', geo.bottlenecks);
      status.set('evacuation-pedsim', { label: 'Venue simulation', kind: 'model', updatedAt: new Date(), detail: `JuPedSim ${s.model}` });
      venueResults.textContent = '';
      venueResults.append(
        el('h3', {}, `${fmt0.format(s.persons)} persons, ${s.runs} run${s.runs > 1 ? 's' : ''}`),
        el('p', { class: 'evac-clearance', testid: 'evac-venue-summary' },
          el('strong', {}, `evacuation ${fmt1.format(s.evacuation_time_s)} s`), ' (mean) · ',
          el('strong', {}, `p95 ${fmt1.format(s.p95_evacuation_time_s)} s`)),
        s.all_complete ? '' : el('p', { class: 'error small' }, 'Not everybody got out within the time limit.'),
      );
      const tb = el('tbody');
      for (const e of s.exits) tb.append(el('tr', {}, el('td', {}, e.name), el('td', { class: 'num' }, fmt1.format(e.persons)), el('td', { class: 'num' }, e.closed ? 'closed' : fmt1.format(e.flow_p_per_s))));
      venueResults.append(el('table', { class: 'evac-table', testid: 'evac-venue-exits' },
        el('thead', {}, el('tr', {}, el('th', {}, 'Exit'), el('th', {}, 'Persons'), el('th', {}, 'Flow (p/s)'))), tb));
      const bl = el('ul', { class: 'small', testid: 'evac-venue-bottlenecks' });
      for (const b of s.bottlenecks) bl.append(el('li', {}, `at (${fmt1.format(b.x_m)}, ${fmt1.format(b.y_m)}) m: up to ${fmt1.format(b.peak_density_p_per_m2)} p/m² for ${fmt0.format(b.duration_s ?? 0)} s${b.at_exit ? ` at ${b.nearest_exit}` : ''}`));
      venueResults.append(el('h3', {}, 'Bottlenecks'), s.bottlenecks.length ? bl : el('p', { class: 'small muted' }, 'none (density never stayed ≥ 2 p/m² for 10 s)'));
      venueResults.append(el('p', { class: 'small muted' }, 'Density map: the peak persons/m² per cell (yellow → red → purple).'));
      if (geo?.playback) venueResults.append(playbackControls(geo.playback));
      venueResults.hidden = false;
    }

    // ---- playback
    const playBtn = el('button', { type: 'button', testid: 'evac-play' }, '▶ Play');
    const slider = el('input', { type: 'range', min: '0', max: '0', value: '0', step: '1', testid: 'evac-time' });
    const timeLabel = el('span', { class: 'small', testid: 'evac-time-label' }, '0 s');
    function showFrame(i) {
      if (!playback) return;
      const k = Math.max(0, Math.min(playback.positions.length - 1, i));
      slider.value = String(k);
      timeLabel.textContent = `${fmt1.format(playback.t_s[k])} s · ${playback.positions[k].filter(Boolean).length} inside`;
      setGeoJson(map, 'evac-agents', {
        type: 'FeatureCollection',
        features: playback.positions[k].flatMap((p, a) => (p ? [{ type: 'Feature', properties: { agent: a }, geometry: { type: 'Point', coordinates: p } }] : [])),
      });
    }
    function stopPlayback() {
      if (timer) clearInterval(timer);
      timer = null;
      playBtn.textContent = '▶ Play';
    }
    playBtn.addEventListener('click', () => {
      if (timer) {
        stopPlayback();
        return;
      }
      if (Number(slider.value) >= Number(slider.max)) slider.value = '0';
      playBtn.textContent = '❚❚ Pause';
      timer = setInterval(() => {
        const next = Number(slider.value) + 1;
        showFrame(next);
        if (next >= Number(slider.max)) stopPlayback();
      }, PLAY_MS);
    });
    slider.addEventListener('input', () => showFrame(Number(slider.value)));
    function playbackControls(pb) {
      playback = { t_s: pb.t_s, positions: pb.positions };
      slider.max = String(pb.positions.length - 1);
      showFrame(0);
      return el('div', { class: 'evac-playback', testid: 'evac-playback' }, el('h3', {}, 'Playback'), el('div', { class: 'evac-actions' }, playBtn, slider, timeLabel));
    }

    setMode('network');

    // hooks for tests and the console
    window.__citytwin = window.__citytwin || {};
    window.__citytwin.evacuation = {
      setArea: (geojson, label = 'test area') => setArea(geojson, label),
      setVenue: (doc, label) => setVenue(doc, label),
      setMode,
      get venue() {
        return venue;
      },
    };

    return {
      onShow() {},
      onHide() {
        stopTool();
        stopPlayback();
      },
    };
  },
});
