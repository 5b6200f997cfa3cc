// The crowd panel: zones coloured by level now, a time slider into the next 24 h, a per-zone chart
// (history, forecast with 80/95 % bands, thresholds, events), the backtest skill, the events
// calendar and the alerts with acknowledge. Replayed data is labelled REPLAYED.
import { formatAge } from '../status.js';
import { registerPanel } from './registry.js';
import './crowd.css';

export const LEVELS = ['green', 'amber', 'red', 'critical'];
export const LEVEL_COLORS = { green: '#2f9e44', amber: '#f59f00', red: '#e03131', critical: '#7b2cbf' };
const REFRESH_MS = 60_000;

const fmt2 = new Intl.NumberFormat('en', { maximumFractionDigits: 2 });
const fmt0 = new Intl.NumberFormat('en', { maximumFractionDigits: 0 });

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'testid') e.dataset.testid = v;
    else if (k === 'class') e.className = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c ?? '')));
  return e;
}

const SVG = 'http://www.w3.org/2000/svg';
function svg(tag, attrs = {}) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  return e;
}

function levelBadge(level) {
  return el('span', { class: `crowd-level crowd-level-${level || 'none'}` }, level || 'no data');
}

function pct(v) {
  return v === null || v === undefined ? '—' : `${fmt0.format(v * 100)} %`;
}

/** Colour the city's zones by feature-state 'crowd' (level index, -1 = no data). */
function installZoneColouring(map) {
  if (!map.getLayer('zones-fill')) return;
  const base = map.getPaintProperty('zones-fill', 'fill-color');
  if (JSON.stringify(base).includes('"crowd"')) return;
  const st = ['coalesce', ['feature-state', 'crowd'], -1];
  map.setPaintProperty('zones-fill', 'fill-color', [
    'case',
    ['==', st, 0], LEVEL_COLORS.green,
    ['==', st, 1], LEVEL_COLORS.amber,
    ['==', st, 2], LEVEL_COLORS.red,
    ['==', st, 3], LEVEL_COLORS.critical,
    base,
  ]);
  map.setPaintProperty('zones-fill', 'fill-opacity', ['case', ['>=', st, 0], 0.6, 0.25]);
}

/** Draw history + forecast + bands + thresholds + events as an SVG chart. */
export function drawChart(fc, { width = 340, height = 200 } = {}) {
  const pad = { l: 36, r: 8, t: 8, b: 22 };
  const hist = fc.history.map((h) => ({ t: Date.parse(h.time), v: h.value }));
  const hours = fc.hours.map((h) => ({ ...h, t: Date.parse(h.time) }));
  const t0 = Math.min(...hist.map((h) => h.t), hours[0].t);
  const t1 = hours[hours.length - 1].t + 3600e3;
  const thr = fc.thresholds;
  const vmax = Math.max(...hist.map((h) => h.v), ...hours.map((h) => h['q0.975']), thr.red * 1.1, 1e-6);
  const x = (t) => pad.l + ((t - t0) / (t1 - t0)) * (width - pad.l - pad.r);
  const y = (v) => height - pad.b - (Math.min(v, vmax * 1.05) / (vmax * 1.05)) * (height - pad.t - pad.b);
  const root = svg('svg', { viewBox: `0 0 ${width} ${height}`, width, height, class: 'crowd-chart', 'data-testid': 'crowd-chart' });
  // events
  for (const ev of fc.events || []) {
    const a = Math.max(Date.parse(ev.start), t0);
    const b = Math.min(Date.parse(ev.end), t1);
    if (b > a) root.append(svg('rect', { x: x(a), y: pad.t, width: x(b) - x(a), height: height - pad.t - pad.b, class: 'crowd-event-band', 'data-testid': 'crowd-chart-event' }));
  }
  const band = (lo, hi, cls, testid) => {
    const up = hours.map((h) => `${x(h.t + 1800e3)},${y(h[hi])}`);
    const down = hours.slice().reverse().map((h) => `${x(h.t + 1800e3)},${y(h[lo])}`);
    root.append(svg('polygon', { points: [...up, ...down].join(' '), class: cls, 'data-testid': testid }));
  };
  band('q0.025', 'q0.975', 'crowd-band95', 'crowd-band-95');
  band('q0.1', 'q0.9', 'crowd-band80', 'crowd-band-80');
  for (const lv of ['amber', 'red', 'critical']) {
    if (thr[lv] > vmax * 1.05) continue;
    root.append(svg('line', { x1: pad.l, x2: width - pad.r, y1: y(thr[lv]), y2: y(thr[lv]), stroke: LEVEL_COLORS[lv], class: 'crowd-threshold', 'data-testid': `crowd-threshold-${lv}` }));
  }
  if (hist.length) {
    root.append(svg('polyline', { points: hist.map((h) => `${x(h.t + 1800e3)},${y(h.v)}`).join(' '), class: 'crowd-history', 'data-testid': 'crowd-history' }));
  }
  root.append(svg('polyline', { points: hours.map((h) => `${x(h.t + 1800e3)},${y(h.point)}`).join(' '), class: 'crowd-point', 'data-testid': 'crowd-forecast-line' }));
  const nowX = x(hours[0].t);
  root.append(svg('line', { x1: nowX, x2: nowX, y1: pad.t, y2: height - pad.b, class: 'crowd-now' }));
  // axes
  root.append(svg('line', { x1: pad.l, x2: pad.l, y1: pad.t, y2: height - pad.b, class: 'crowd-axis' }));
  root.append(svg('line', { x1: pad.l, x2: width - pad.r, y1: height - pad.b, y2: height - pad.b, class: 'crowd-axis' }));
  for (const v of [0, vmax / 2, vmax]) {
    const t = svg('text', { x: pad.l - 3, y: y(v) + 3, class: 'crowd-tick', 'text-anchor': 'end' });
    t.textContent = fmt2.format(v);
    root.append(t);
  }
  for (const t of [t0, hours[0].t, t1]) {
    const lab = svg('text', { x: x(t), y: height - 6, class: 'crowd-tick', 'text-anchor': 'middle' });
    lab.textContent = new Date(t).toLocaleString('en-GB', { weekday: 'short', hour: '2-digit', minute: '2-digit' });
    root.append(lab);
  }
  return root;
}

function toIsoWithZone(localValue) {
  // <input type="datetime-local"> gives local wall time without a zone; the API wants one
  if (!localValue) return null;
  const d = new Date(localValue);
  return Number.isNaN(d.getTime()) ? localValue : d.toISOString();
}

registerPanel({
  id: 'crowd',
  title: 'Crowd',
  order: 20,
  async mount(container, ctx) {
    const { api, map, status, events, clicks } = ctx;
    const state = { nowcast: null, forecasts: new Map(), zone: null, lead: 0, timer: null, release: null };
    const zoneNames = new Map();

    // ---- layout
    const summary = el('div', { class: 'crowd-summary', testid: 'crowd-summary' }, 'loading the nowcast…');
    const replayed = el('span', { class: 'crowd-tag replayed', testid: 'crowd-replayed', hidden: true }, 'REPLAYED');
    const age = el('span', { class: 'muted small', testid: 'crowd-data-age' });
    const slider = el('input', { type: 'range', min: '0', max: '23', step: '1', value: '0', testid: 'crowd-slider' });
    const sliderLabel = el('span', { testid: 'crowd-slider-label' }, 'now');
    const legend = el('div', { class: 'crowd-legend' }, ...LEVELS.map((lv) => el('span', {}, el('i', { class: 'swatch', style: `background:${LEVEL_COLORS[lv]}` }), lv)));
    const zoneSelect = el('select', { testid: 'crowd-zone-select' }, el('option', { value: '' }, 'choose a zone…'));
    const allowStale = el('input', { type: 'checkbox', testid: 'crowd-allow-stale' });
    const chartBox = el('div', { class: 'crowd-chart-box', testid: 'crowd-chart-box' });
    const skillBox = el('div', { class: 'crowd-skill', testid: 'crowd-skill' });
    const zoneInfo = el('div', { class: 'crowd-zone-info', testid: 'crowd-zone-info' });
    const alertsBox = el('ul', { class: 'crowd-alerts', testid: 'crowd-alerts' });
    const eventsList = el('ul', { class: 'crowd-events', testid: 'crowd-events' });
    const evName = el('input', { type: 'text', placeholder: 'name', testid: 'crowd-event-name' });
    const evStart = el('input', { type: 'datetime-local', testid: 'crowd-event-start' });
    const evEnd = el('input', { type: 'datetime-local', testid: 'crowd-event-end' });
    const evVisitors = el('input', { type: 'number', min: '0', step: '1', placeholder: 'expected visitors', testid: 'crowd-event-visitors' });
    const evError = el('p', { class: 'error', testid: 'crowd-event-error', hidden: true });
    const parkingBox = el('ul', { class: 'crowd-parking', testid: 'crowd-parking' });
    const modelInfo = el('p', { class: 'muted small', testid: 'crowd-model' });
    const trainBtn = el('button', { type: 'button', testid: 'crowd-train' }, 'Retrain now');
    const trainMsg = el('span', { class: 'muted small', testid: 'crowd-train-msg' });

    container.append(
      el('h3', {}, 'Crowd now ', replayed), summary, age, legend,
      el('label', { class: 'crowd-slider' }, el('span', {}, 'Time: '), slider, sliderLabel),
      el('h3', {}, 'Alerts'), alertsBox,
      el('h3', {}, 'Zone forecast'),
      el('div', { class: 'crowd-row' }, zoneSelect, el('label', { class: 'small' }, allowStale, ' forecast on stale input')),
      zoneInfo, chartBox, skillBox,
      el('h3', {}, 'Events calendar'),
      el('form', { class: 'crowd-event-form', testid: 'crowd-event-form', onsubmit: onAddEvent },
        evName, el('label', { class: 'small' }, 'start ', evStart), el('label', { class: 'small' }, 'end ', evEnd), evVisitors,
        el('button', { type: 'submit', testid: 'crowd-event-add' }, 'Add event (selected zone)')),
      evError, eventsList,
      el('h3', {}, 'Parking: full in how long'), parkingBox,
      el('h3', {}, 'Model'), modelInfo, el('div', { class: 'crowd-row' }, trainBtn, trainMsg),
    );

    installZoneColouring(map);
    events.addEventListener('city:loaded', () => { installZoneColouring(map); paintZones(); });

    function setZoneLevel(id, level) {
      const idx = level ? LEVELS.indexOf(level) : -1;
      try {
        map.setFeatureState({ source: 'zones', id }, { crowd: idx });
      } catch {
        /* the zones source is not there yet; painted again on city:loaded */
      }
    }

    function paintZones() {
      if (!state.nowcast) return;
      container.dataset.lead = String(state.lead);
      const byZone = new Map();
      if (state.lead === 0) {
        for (const z of state.nowcast.zones) byZone.set(z.zone_id, z.level);
      } else {
        for (const z of state.nowcast.zones) byZone.set(z.zone_id, null);
        for (const [id, hrs] of state.forecasts) {
          const h = hrs.find((x) => x.lead_h === state.lead);
          byZone.set(id, h ? h.level : null);
        }
      }
      let coloured = 0;
      for (const [id, level] of byZone) {
        setZoneLevel(id, level);
        if (level) coloured += 1;
      }
      container.dataset.coloured = String(coloured);
      map.triggerRepaint();
    }

    function updateSliderLabel() {
      if (state.lead === 0) {
        sliderLabel.textContent = 'now';
        return;
      }
      const any = [...state.forecasts.values()][0];
      const h = any?.find((x) => x.lead_h === state.lead);
      sliderLabel.textContent = h ? `+${state.lead} h (${new Date(h.time).toLocaleTimeString('en-GB', { hour: '2-digit', minute: '2-digit' })})` : `+${state.lead} h (no forecast)`;
    }

    slider.addEventListener('input', () => {
      state.lead = Number(slider.value);
      updateSliderLabel();
      paintZones();
    });

    async function loadNowcast() {
      const nc = await api.get('/api/crowd/nowcast');
      state.nowcast = nc;
      for (const z of nc.zones) zoneNames.set(z.zone_id, z.name);
      const withData = nc.zones.filter((z) => z.level);
      const counts = LEVELS.map((lv) => `${nc.levels[lv]} ${lv}`).join(' · ');
      summary.textContent = withData.length ? `${withData.length} zones with data: ${counts}` : 'no zone has a counting source yet';
      const isReplayed = withData.some((z) => z.replayed);
      replayed.hidden = !isReplayed;
      const ages = withData.map((z) => z.data_age_s).filter(Number.isFinite);
      const oldest = ages.length ? Math.max(...ages) : null;
      age.textContent = oldest === null ? '' : `data age: ${formatAge(oldest)}${withData.some((z) => z.stale) ? ' (STALE sources)' : ''}`;
      status.set('crowd', {
        label: 'Crowd',
        kind: isReplayed ? 'replay' : 'real',
        updatedAt: oldest === null ? undefined : new Date(Date.now() - oldest * 1000),
        staleAfterS: 7200,
        detail: isReplayed ? 'REPLAYED real counts, time-shifted to now' : 'crowd nowcast',
      });
      // zone choices: zones with sources first
      const current = zoneSelect.value;
      zoneSelect.replaceChildren(el('option', { value: '' }, 'choose a zone…'));
      for (const z of [...withData, ...nc.zones.filter((q) => !q.level)]) {
        zoneSelect.append(el('option', { value: String(z.zone_id) }, `${z.name} (#${z.zone_id})${z.level ? ` — ${z.level}` : ''}`));
      }
      if (current) zoneSelect.value = current;
      else if (withData.length && !state.zone) zoneSelect.value = String(withData[0].zone_id);
    }

    async function loadForecastLevels() {
      const res = await api.get('/api/crowd/forecast/zones');
      state.forecasts = new Map(res.zones.map((z) => [z.zone_id, z.hours]));
      updateSliderLabel();
    }

    async function loadZone() {
      const id = Number(zoneSelect.value);
      state.zone = id || null;
      chartBox.replaceChildren();
      skillBox.replaceChildren();
      zoneInfo.replaceChildren();
      if (!id) return;
      const nz = state.nowcast?.zones.find((z) => z.zone_id === id);
      if (nz) {
        zoneInfo.append(el('p', {}, levelBadge(nz.level), ' ',
          nz.density === null || nz.density === undefined ? 'no estimate' : `${fmt2.format(nz.density)} persons/m² (${fmt2.format(nz.density_low)}–${fmt2.format(nz.density_high)}), ~${fmt0.format(nz.people)} people`,
          nz.trend ? ` · ${nz.trend}` : '', nz.disagree ? ' · SOURCES DISAGREE' : '', nz.stale ? ' · STALE' : '',
          nz.replayed ? ' · REPLAYED' : ''));
        for (const n of nz.notes || []) zoneInfo.append(el('p', { class: 'muted small' }, n));
        if (nz.error) zoneInfo.append(el('p', { class: 'error' }, nz.error.message));
      }
      let fc;
      try {
        fc = await api.get('/api/crowd/forecast', { zone_id: id, allow_stale: allowStale.checked ? 'true' : undefined });
      } catch (err) {
        chartBox.append(el('p', { class: 'error', testid: 'crowd-forecast-error' }, err.message));
        return;
      }
      chartBox.append(drawChart(fc));
      const p = Math.max(...fc.hours.map((h) => h.p_levels.red));
      chartBox.append(el('p', { class: 'small' }, `P(red or worse) within 24 h: up to ${pct(p)} · model ${fc.model_version} trained ${fc.training_window.start} … ${fc.training_window.end}`,
        fc.replayed ? ' · REPLAYED data' : '', fc.stale ? ' · forecast on STALE input' : ''));
      chartBox.append(el('p', { class: 'muted small' }, 'bands: 80 % (dark) and 95 % (light); dashed: amber/red/critical thresholds; shaded: events'));
      chartBox.append(el('p', { class: 'muted small', testid: 'crowd-weather-input' }, weatherText(fc.weather)));
      chartBox.append(el('p', { class: 'muted small', testid: 'crowd-school-input' }, fc.school_holidays
        ? `school holidays: ${fc.school_holidays} (holidays package)`
        : 'school holidays: not known for this city (see the model info)'));
      const zs = (fc.skill || []).find((s) => s.datastream_id === null);
      if (zs) {
        skillBox.append(el('table', { class: 'crowd-skill-table' },
          el('tr', {}, el('th', {}, 'MAE'), el('th', {}, 'MASE'), el('th', {}, 'cov. 80 %'), el('th', {}, 'cov. 95 %'), el('th', {}, 'n')),
          el('tr', {}, el('td', { testid: 'crowd-skill-mae' }, fmt2.format(zs.mae)), el('td', { testid: 'crowd-skill-mase' }, fmt2.format(zs.mase)),
            el('td', {}, pct(zs.coverage_80)), el('td', {}, pct(zs.coverage_95)), el('td', {}, zs.n))),
          el('p', { class: 'muted small' }, `backtest ${zs.test_start} … ${zs.test_end} (day-ahead from midnight; MASE vs weekly naive)`));
      } else {
        skillBox.append(el('p', { class: 'muted small' }, 'no backtest skill yet (retrain to compute it)'));
      }
    }

    function weatherText(w) {
      if (!w || !w.station) return 'weather: no weather station — forecast without weather';
      if (!w.used_by_model) return `weather: ${w.station}, not used by this model (retrain to use it)`;
      const a = w.hours_ahead.temperature_c || {};
      const parts = [];
      if (a.forecast) parts.push(`${a.forecast} h from ${w.forecast}`);
      if (a.persistence) parts.push(`${a.persistence} h persistence of the last observed day (no weather forecast)`);
      if (a.missing) parts.push(`${a.missing} h without weather`);
      return `weather: ${w.station}; hours ahead: ${parts.join(', ') || 'none'}`;
    }

    function parkingForecastText(g) {
      const f = g.forecast || {};
      if (f.error) return `no forecast: ${f.error}`;
      const full = f.full_in_h === null
        ? 'not expected full in 24 h'
        : f.full_in_h === 0 ? 'expected full this hour' : `expected full from ${new Date(f.full_at).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' })} (in ${f.full_in_h} h)`;
      const cold = f.method === 'cold_start' ? ' · COLD START (under two weeks of history)' : '';
      return `${full} · P(full within 24 h) ${pct(f.p_full_horizon)}${cold}`;
    }

    async function loadParking() {
      const res = await api.get('/api/crowd/parking');
      parkingBox.replaceChildren();
      if (!res.garages.length) parkingBox.append(el('li', { class: 'muted' }, 'no parking garages'));
      for (const g of res.garages) {
        const now = g.occupied === null ? 'no data' : `${fmt0.format(g.occupied)} / ${fmt0.format(g.capacity)} occupied`;
        const trend = g.full_in_min === null ? '' : ` · full in ~${fmt0.format(g.full_in_min)} min at the last hour's rate`;
        parkingBox.append(el('li', { testid: `crowd-garage-${g.datastream_id}` },
          el('strong', {}, g.name), ` ${g.origin !== 'real' ? g.origin.toUpperCase() : ''} · ${now}${trend}`,
          g.stale ? ' · STALE' : '', el('br'),
          el('span', { class: 'muted small', testid: 'crowd-garage-forecast' }, parkingForecastText(g))));
      }
    }

    async function loadAlerts() {
      const res = await api.get('/api/crowd/alerts', { status: 'active' });
      alertsBox.replaceChildren();
      if (!res.alerts.length) alertsBox.append(el('li', { class: 'muted' }, 'no active alert'));
      for (const a of res.alerts) {
        const ack = a.status === 'open'
          ? el('button', { type: 'button', testid: `crowd-alert-ack-${a.id}`, onclick: () => acknowledge(a.id) }, 'Acknowledge')
          : el('span', { class: 'small', testid: `crowd-alert-acked-${a.id}` }, `acknowledged by ${a.acknowledged_by}`);
        alertsBox.append(el('li', { class: `crowd-alert crowd-alert-${a.level}`, testid: `crowd-alert-${a.id}` },
          levelBadge(a.level), ' ', a.message, el('br'),
          el('span', { class: 'muted small' }, `lead ${a.lead_h} h · p = ${pct(a.probability)} · raised ${formatAge((Date.now() - Date.parse(a.raised_at)) / 1000)}`), ' ', ack));
      }
    }

    async function acknowledge(id) {
      try {
        await api.post(`/api/crowd/alerts/${id}/ack`, {});
      } catch (err) {
        alertsBox.prepend(el('li', { class: 'error' }, err.message));
      }
      await loadAlerts();
    }

    async function loadEvents() {
      const res = await api.get('/api/crowd/events');
      eventsList.replaceChildren();
      if (!res.events.length) eventsList.append(el('li', { class: 'muted' }, 'no planned event'));
      for (const ev of res.events) {
        eventsList.append(el('li', { testid: `crowd-event-${ev.id}` },
          `${ev.name} — ${zoneNames.get(ev.zone_id) || `zone ${ev.zone_id}`}, ${new Date(ev.start).toLocaleString('en-GB')} – ${new Date(ev.end).toLocaleString('en-GB')}, ${fmt0.format(ev.expected_visitors)} visitors `,
          el('button', { type: 'button', class: 'small', onclick: async () => { await api.request(`/api/crowd/events/${ev.id}`, { method: 'DELETE', raw: true }); await loadEvents(); } }, 'remove')));
      }
    }

    async function onAddEvent(ev) {
      ev.preventDefault();
      evError.hidden = true;
      const v = evVisitors.value.trim();
      const body = {
        zone_id: state.zone,
        name: evName.value.trim(),
        start: toIsoWithZone(evStart.value),
        end: toIsoWithZone(evEnd.value),
        expected_visitors: v === '' ? null : Number.isInteger(Number(v)) ? Number(v) : v,
      };
      try {
        await api.post('/api/crowd/events', body);
        evName.value = '';
        await loadEvents();
        if (state.zone) await loadZone();
      } catch (err) {
        const field = err.detail && typeof err.detail === 'object' ? err.detail.field : null;
        evError.textContent = err.message;
        evError.dataset.field = field || '';
        evError.hidden = false;
      }
    }

    function schoolText(sh) {
      if (!sh) return '';
      return sh.calendar ? ` · school holidays: ${sh.calendar}` : ` · no school holidays: ${sh.why_not}`;
    }

    async function loadModel() {
      const m = await api.get('/api/crowd/model');
      modelInfo.textContent = m.model
        ? `model ${m.model.version}, trained on ${m.model.training_start} … ${m.model.training_end} (${m.model.n_sensors} sensors)`
          + schoolText(m.model.info?.school_holidays)
        : 'no model trained yet';
    }

    trainBtn.addEventListener('click', async () => {
      trainBtn.disabled = true;
      trainMsg.textContent = 'training…';
      try {
        const r = await api.post('/api/crowd/train', {});
        trainMsg.textContent = `trained ${r.model.version}`;
        await refreshAll();
      } catch (err) {
        trainMsg.textContent = err.message;
      } finally {
        trainBtn.disabled = false;
      }
    });

    zoneSelect.addEventListener('change', () => loadZone());
    allowStale.addEventListener('change', () => loadZone());

    async function refreshAll() {
      await loadNowcast();
      await Promise.all([loadForecastLevels(), loadAlerts(), loadEvents(), loadModel(),
        loadParking().catch((err) => parkingBox.replaceChildren(el('li', { class: 'error' }, `parking: ${err.message}`)))]);
      paintZones();
      await loadZone();
      container.dataset.ready = 'true';
    }

    await refreshAll().catch((err) => {
      summary.textContent = `could not load: ${err.message}`;
    });

    return {
      onShow() {
        if (!state.timer) state.timer = setInterval(() => refreshAll().catch(() => {}), REFRESH_MS);
        if (!state.release && clicks) {
          state.release = clicks.push('crowd', (e) => {
            const f = map.queryRenderedFeatures(e.point, { layers: ['zones-fill'] })[0];
            if (f && f.id !== undefined) {
              zoneSelect.value = String(f.id);
              loadZone();
              return true;
            }
            return false;
          });
        }
      },
      onHide() {
        clearInterval(state.timer);
        state.timer = null;
        state.release?.();
        state.release = null;
      },
    };
  },
});
