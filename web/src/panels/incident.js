// The incident panel: click the source on the map, pick a substance or "fire", see the live
// wind (or enter it), run the plume; zones and "possibly affected" bands are drawn, affected
// buildings highlighted in 3D, listed (vulnerable first) and the report downloaded.
import { addLayer, setGeoJson } from '../map.js';
import { formatAge } from '../status.js';
import { registerPanel } from './registry.js';
import './incident.css';

/** Fill colours of the three levels of concern (1 = lowest). */
export const LEVEL_COLORS = { 1: '#fcc419', 2: '#fd7e14', 3: '#e03131' };
const ADVICE_COLORS = { consider_evacuation: '#c92a2a', shelter: '#f76707', inform: '#fab005' };
const ADVICE_RANK = { consider_evacuation: 3, shelter: 2, inform: 1 };
const ADVICE_LABELS = {
  consider_evacuation: 'consider evacuation',
  shelter: 'shelter (close windows, ventilation off)',
  inform: 'inform',
};
const STALE_AFTER_S = 1800;
const TABLE_ROWS = 500;

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

function conc(v) {
  if (v === null || v === undefined || !Number.isFinite(v)) return '—';
  if (v === 0) return '0';
  return v >= 100 ? fmt0.format(v) : Number(v.toPrecision(2)).toString();
}

function numberOrNull(input) {
  const s = input.value.trim();
  if (s === '') return null;
  const v = Number(s);
  return Number.isFinite(v) ? v : s; // a non-number goes to the API, which names the field
}

function field(label, input, hint) {
  return el('label', { class: 'incident-field' }, el('span', {}, label), input, hint ? el('span', { class: 'muted small' }, hint) : '');
}

function filenameOf(res, fallback) {
  const cd = res.headers.get('Content-Disposition') || '';
  const m = /filename="?([^";]+)"?/i.exec(cd);
  return m ? m[1] : fallback;
}

function addIncidentLayers(map) {
  setGeoJson(map, 'incident-zones');
  setGeoJson(map, 'incident-source');
  setGeoJson(map, 'incident-affected');
  const levelColor = ['match', ['get', 'level'], 3, LEVEL_COLORS[3], 2, LEVEL_COLORS[2], LEVEL_COLORS[1]];
  addLayer(map, {
    id: 'incident-zone-fill',
    type: 'fill',
    source: 'incident-zones',
    filter: ['==', ['get', 'kind'], 'zone'],
    layout: { 'fill-sort-key': ['get', 'level'] },
    paint: { 'fill-color': levelColor, 'fill-opacity': 0.4 },
  }, 'buildings');
  addLayer(map, {
    id: 'incident-zone-outline',
    type: 'line',
    source: 'incident-zones',
    filter: ['==', ['get', 'kind'], 'zone'],
    paint: { 'line-color': levelColor, 'line-width': 1.5 },
  });
  addLayer(map, {
    id: 'incident-band-line',
    type: 'line',
    source: 'incident-zones',
    filter: ['==', ['get', 'kind'], 'possibly_affected'],
    paint: { 'line-color': levelColor, 'line-width': 2, 'line-dasharray': [2, 2] },
  });
  addLayer(map, {
    id: 'incident-affected',
    type: 'circle',
    source: 'incident-affected',
    paint: {
      'circle-radius': ['case', ['==', ['get', 'safety_class'], 'vulnerable'], 9, 4],
      'circle-color': ['match', ['get', 'advice'],
        'consider_evacuation', ADVICE_COLORS.consider_evacuation,
        'shelter', ADVICE_COLORS.shelter,
        ADVICE_COLORS.inform],
      'circle-stroke-color': ['case', ['==', ['get', 'safety_class'], 'vulnerable'], '#1f2933', '#ffffff'],
      'circle-stroke-width': ['case', ['==', ['get', 'safety_class'], 'vulnerable'], 3, 1],
      'circle-pitch-alignment': 'map',
    },
  });
  addLayer(map, {
    id: 'incident-source',
    type: 'circle',
    source: 'incident-source',
    paint: { 'circle-radius': 8, 'circle-color': '#1f2933', 'circle-stroke-color': '#ffffff', 'circle-stroke-width': 3 },
  });
  // affected buildings in 3D: feature-state 'incident' (advice rank) on the city's buildings layer
  if (map.getLayer('buildings')) {
    const base = map.getPaintProperty('buildings', 'fill-extrusion-color');
    if (!JSON.stringify(base).includes('"incident"')) {
      const st = ['coalesce', ['feature-state', 'incident'], 0];
      map.setPaintProperty('buildings', 'fill-extrusion-color', [
        'case',
        ['==', st, 3], ADVICE_COLORS.consider_evacuation,
        ['==', st, 2], ADVICE_COLORS.shelter,
        ['==', st, 1], ADVICE_COLORS.inform,
        base,
      ]);
    }
  }
}

registerPanel({
  id: 'incident',
  title: 'Incident',
  order: 30,
  async mount(container, ctx) {
    const { api, map, status, clicks, city } = ctx;
    addIncidentLayers(map);

    // ---- form
    const sourceText = el('span', { testid: 'incident-source' }, 'click the map to place the source');
    const substance = el('select', { testid: 'incident-substance' });
    const rate = el('input', { type: 'number', min: '0', step: 'any', value: '1000', testid: 'incident-rate' });
    const duration = el('input', { type: 'number', min: '0', max: '60', step: 'any', value: '30', testid: 'incident-duration' });
    const heat = el('input', { type: 'number', min: '0', step: 'any', value: '20', testid: 'incident-heat' });
    const rateField = field('Release rate (g/s)', rate);
    const durationField = field('Duration (min, ≤ 60; empty = continuous)', duration);
    const heatField = field('Heat release (MW)', heat);

    const windLive = el('p', { class: 'incident-wind-live', testid: 'incident-wind-live' }, 'looking for a weather stream…');
    const manual = el('input', { type: 'checkbox', testid: 'incident-wind-manual' });
    const speed = el('input', { type: 'number', min: '0', step: 'any', placeholder: 'm/s', testid: 'incident-wind-speed' });
    const from = el('input', { type: 'number', min: '0', max: '360', step: 'any', placeholder: '°', testid: 'incident-wind-from' });
    const sigma = el('input', { type: 'number', min: '0', step: 'any', placeholder: 'optional', testid: 'incident-sigma-theta' });
    const manualBox = el(
      'div',
      { class: 'incident-manual', testid: 'incident-wind-inputs' },
      field('Wind speed at 10 m (m/s)', speed),
      field('Wind from (° from north)', from),
      field('σθ (°)', sigma),
    );
    const at = el('input', { type: 'datetime-local', testid: 'incident-at' });

    const run = el('button', { type: 'button', class: 'incident-run', testid: 'incident-run' }, 'Run');
    const spinner = el('span', { class: 'incident-spinner', testid: 'incident-spinner', hidden: true }, el('span', { class: 'spinner dark' }), 'computing plume…');
    const error = el('p', { class: 'error', testid: 'incident-error', hidden: true });
    const results = el('div', { class: 'incident-results', testid: 'incident-results', hidden: true });

    container.append(
      el('h2', {}, 'Incident'),
      el('p', { class: 'muted small' }, 'Smoke or a toxic release: where it goes with the wind, and which buildings lie under it.'),
      el('div', { class: 'incident-field' }, el('span', {}, 'Source'), sourceText),
      field('Substance', substance),
      rateField,
      durationField,
      heatField,
      el('h3', {}, 'Wind'),
      windLive,
      el('label', { class: 'toggle' }, manual, ' enter the wind by hand'),
      manualBox,
      field('Time (local; empty = now)', at),
      el('div', { class: 'incident-actions' }, run, spinner),
      error,
      results,
    );

    // ---- substances
    const subs = await api.get('/api/incident/substances');
    substance.append(el('option', { value: 'fire' }, 'fire (smoke)'));
    for (const s of subs) if (s.key !== 'fire') substance.append(el('option', { value: s.key }, s.name));
    substance.value = subs.some((s) => s.key === 'chlorine') ? 'chlorine' : substance.options[0].value;
    function syncKind() {
      const fire = substance.value === 'fire';
      heatField.hidden = !fire;
      rateField.hidden = fire;
      durationField.hidden = fire;
    }
    substance.addEventListener('change', syncKind);
    syncKind();

    // ---- live wind
    let live = null;
    function renderWind() {
      windLive.textContent = '';
      windLive.classList.toggle('stale', !!live?.stale);
      if (!live) {
        windLive.append(el('strong', {}, 'no weather stream — enter wind'));
        manual.checked = true;
        manual.disabled = true;
      } else {
        manual.disabled = false;
        const ageS = (Date.now() - new Date(live.observed_at).getTime()) / 1000;
        windLive.append(
          el('strong', {}, `${fmt1.format(live.wind_speed_m_s)} m/s from ${fmt0.format(live.wind_from_deg)}°`),
          live.sigma_theta_deg != null ? ` · σθ ${fmt1.format(live.sigma_theta_deg)}°` : '',
          el('span', { class: 'muted', testid: 'incident-wind-age' }, ` · ${formatAge(ageS)}`),
          live.simulated ? el('span', { class: 'incident-tag sim' }, 'simulated') : '',
          live.stale ? el('span', { class: 'incident-tag stale', testid: 'incident-wind-stale' }, 'stale') : '',
          el('br'),
          el('span', { class: 'muted small' }, live.source),
        );
      }
      manualBox.hidden = !manual.checked;
    }
    async function loadWind() {
      try {
        const w = await api.get('/api/incident/wind', { city: city?.name });
        live = w.available ? w : null;
      } catch (err) {
        if (err.status === 401) throw err;
        live = null;
      }
      if (live) {
        status.set('incident-wind', {
          label: 'Wind', kind: live.simulated ? 'simulated' : 'real', updatedAt: live.observed_at,
          staleAfterS: STALE_AFTER_S, detail: live.source,
        });
      }
      renderWind();
    }
    manual.addEventListener('change', renderWind);
    await loadWind();

    // ---- the source, by clicking the map while this tab is shown
    let source = null;
    function setSource(lngLat) {
      source = [Number(lngLat.lng.toFixed(6)), Number(lngLat.lat.toFixed(6))];
      sourceText.textContent = `${source[1].toFixed(5)}, ${source[0].toFixed(5)} (lat, lon)`;
      setGeoJson(map, 'incident-source', {
        type: 'FeatureCollection',
        features: [{ type: 'Feature', geometry: { type: 'Point', coordinates: source }, properties: {} }],
      });
    }
    let release = null;

    // ---- run
    function body() {
      if (!source) throw Object.assign(new Error('Click the map to place the source.'), { field: 'lon' });
      const fire = substance.value === 'fire';
      const b = { lon: source[0], lat: source[1], substance: substance.value, city: city?.name };
      if (fire) b.heat_mw = numberOrNull(heat);
      else {
        b.rate_g_s = numberOrNull(rate);
        b.duration_min = numberOrNull(duration);
      }
      if (manual.checked) {
        b.wind_speed_m_s = numberOrNull(speed);
        b.wind_from_deg = numberOrNull(from);
        b.sigma_theta_deg = numberOrNull(sigma);
        if (b.wind_speed_m_s === null) {
          throw Object.assign(new Error('wind_speed_m_s: enter the wind speed (m/s, > 0)'), { field: 'wind_speed_m_s' });
        }
      }
      if (at.value) b.at = new Date(at.value).toISOString();
      for (const k of Object.keys(b)) if (b[k] === null || b[k] === undefined) delete b[k];
      return b;
    }

    const inputsByField = { rate_g_s: rate, duration_min: duration, heat_mw: heat, wind_speed_m_s: speed, wind_from_deg: from, sigma_theta_deg: sigma, substance };
    function showError(err) {
      for (const i of Object.values(inputsByField)) i.classList.remove('invalid');
      if (!err) {
        error.hidden = true;
        return;
      }
      const d = err.detail && typeof err.detail === 'object' && !Array.isArray(err.detail) ? err.detail : null;
      const fieldName = d?.field || err.field;
      error.textContent = d ? `${d.field}: ${d.message}` : err.message;
      error.hidden = false;
      inputsByField[fieldName]?.classList.add('invalid');
    }

    let lastBody = null;
    let highlighted = [];
    function clearHighlights() {
      for (const id of highlighted) map.setFeatureState({ source: 'buildings', id }, { incident: 0 });
      highlighted = [];
    }

    run.addEventListener('click', async () => {
      showError(null);
      let b;
      try {
        b = body();
      } catch (err) {
        showError(err);
        return;
      }
      run.disabled = true;
      spinner.hidden = false;
      try {
        const res = await api.post('/api/incident/assess', b);
        // the downloads repeat this run at the same incident time
        lastBody = { ...b, at: res.incident.at };
        draw(res);
      } catch (err) {
        if (err.status !== 401) showError(err);
      } finally {
        run.disabled = false;
        spinner.hidden = true;
      }
    });

    function draw(res) {
      setGeoJson(map, 'incident-zones', res.zones);
      setGeoJson(map, 'incident-affected', {
        type: 'FeatureCollection',
        features: res.affected.map((a) => ({
          type: 'Feature',
          geometry: { type: 'Point', coordinates: [a.lon, a.lat] },
          properties: { id: a.id, advice: a.advice, safety_class: a.safety_class },
        })),
      });
      clearHighlights();
      for (const a of res.affected) {
        map.setFeatureState({ source: 'buildings', id: a.id }, { incident: ADVICE_RANK[a.advice] || 1 });
        highlighted.push(a.id);
      }
      status.set('incident-model', { label: 'Plume', kind: 'model', updatedAt: new Date(), detail: `${res.model.name} ${res.model.version}` });
      renderResults(res);
    }

    function renderResults(res) {
      results.textContent = '';
      const w = res.weather;
      const wind = res.wind || {};
      const windText = wind.source === 'live'
        ? `live wind ${fmt1.format(w.wind_speed_m_s)} m/s from ${fmt0.format(w.wind_from_deg)}°, ${formatAge(wind.age_s)} (${wind.label})`
        : `wind entered by hand: ${fmt1.format(w.wind_speed_m_s)} m/s from ${fmt0.format(w.wind_from_deg)}°`;
      const total = res.counts.total;
      const adv = res.counts.advice;
      results.append(
        el('h3', {}, `${res.incident.substance}: ${fmt0.format(res.affected_total)} buildings possibly affected`),
        el('p', { class: 'small', testid: 'incident-summary' },
          `≈ ${fmt0.format(total.total.occupants)} people · ${total.vulnerable.buildings} vulnerable · ${total.hazardous.buildings} hazardous. `,
          `Consider evacuation: ${adv.consider_evacuation.total.buildings}, shelter: ${adv.shelter.total.buildings}, inform: ${adv.inform.total.buildings}.`),
        el('p', { class: 'small', testid: 'incident-wind-used' }, windText, ` · class ${w.stability_class}`),
      );
      if (w.stale || wind.stale) {
        results.append(el('p', { class: 'incident-stale', testid: 'incident-stale' }, `⚠ stale: true — the live wind is ${formatAge(wind.age_s)}; check it or enter the wind by hand.`));
      }
      const legend = el('ul', { class: 'legend incident-legend' });
      for (const lv of [...res.levels].reverse()) {
        const sw = el('span', { class: 'swatch' });
        sw.style.background = LEVEL_COLORS[lv.level];
        legend.append(el('li', {}, sw, `level ${lv.level}: ${lv.name} (${conc(lv.mg_m3)} mg/m³)`));
      }
      legend.append(el('li', {}, el('span', { class: 'swatch swatch-dashed' }), 'possibly affected (wind direction uncertainty)'));
      results.append(legend);

      const downloads = el('div', { class: 'incident-downloads' });
      for (const [kind, path, label] of [
        ['xlsx', '/api/incident/report.xlsx', 'Excel report'],
        ['geojson', '/api/incident/zones.geojson', 'GeoJSON'],
        ['kml', '/api/incident/zones.kml', 'KML'],
      ]) {
        const btn = el('button', { type: 'button', testid: `incident-download-${kind}` }, `⤓ ${label}`);
        btn.addEventListener('click', () => download(btn, path, `incident.${kind}`));
        downloads.append(btn);
      }
      results.append(downloads);

      if (res.warnings.length) {
        results.append(el('h3', {}, 'Warnings'), el('ul', { class: 'incident-warnings', testid: 'incident-warnings' }, ...res.warnings.map((t) => el('li', {}, t))));
      }
      results.append(el('details', { class: 'small', testid: 'incident-limitations' }, el('summary', {}, 'Limitations'), el('ul', {}, ...res.limitations.map((t) => el('li', {}, t)))));
      results.append(table(res));
      results.hidden = false;
    }

    function table(res) {
      const head = ['Building', 'Class', 'Occupants', 'Outdoor peak (mg/m³)', 'Indoor peak (mg/m³)', 'Arrival (min)', 'Distance (m)', 'Direction', 'Advice'];
      const tbody = el('tbody');
      for (const a of res.affected.slice(0, TABLE_ROWS)) {
        const tr = el('tr', { class: `advice-${a.advice} class-${a.safety_class}`, 'data-id': a.id },
          el('td', {}, a.name || a.address || `#${a.id}`, a.note ? el('div', { class: 'muted small' }, a.note) : ''),
          el('td', {}, el('span', { class: `incident-class ${a.safety_class}` }, a.safety_class)),
          el('td', { class: 'num' }, fmt0.format(a.occupants ?? 0)),
          el('td', { class: 'num' }, conc(a.peak_outdoor_mg_m3)),
          el('td', { class: 'num' }, conc(a.peak_indoor_mg_m3)),
          el('td', { class: 'num' }, fmt1.format(a.arrival_min ?? 0)),
          el('td', { class: 'num' }, fmt0.format(a.distance_m ?? 0)),
          el('td', {}, a.direction || ''),
          el('td', {}, el('span', { class: 'incident-advice', title: ADVICE_LABELS[a.advice] || '' }, ADVICE_LABELS[a.advice] || a.advice)),
        );
        tr.addEventListener('click', () => map.easeTo({ center: [a.lon, a.lat], zoom: Math.max(map.getZoom(), 16) }));
        tbody.append(tr);
      }
      const more = res.affected_total > TABLE_ROWS ? el('p', { class: 'muted small' }, `first ${TABLE_ROWS} of ${res.affected_total}; all are in the Excel report`) : '';
      return el('div', {},
        el('h3', {}, 'Affected buildings'),
        el('div', { class: 'incident-table-wrap' },
          el('table', { class: 'incident-table', testid: 'incident-table' }, el('thead', {}, el('tr', {}, ...head.map((h) => el('th', {}, h)))), tbody)),
        more);
    }

    async function download(btn, path, fallback) {
      if (!lastBody) return;
      btn.disabled = true;
      try {
        const res = await api.request(path, { method: 'POST', body: lastBody, raw: true, headers: { Accept: '*/*' } });
        const blob = await res.blob();
        const url = URL.createObjectURL(blob);
        const a = el('a', { href: url, download: filenameOf(res, fallback) });
        a.style.display = 'none';
        document.body.append(a);
        a.click();
        a.remove();
        setTimeout(() => URL.revokeObjectURL(url), 60_000);
      } catch (err) {
        if (err.status !== 401) showError(err);
      } finally {
        btn.disabled = false;
      }
    }

    return {
      onShow() {
        if (!release) release = clicks.push('incident', (e) => setSource(e.lngLat), { cursor: 'crosshair' });
        loadWind().catch(() => {});
      },
      onHide() {
        if (release) release();
        release = null;
      },
    };
  },
});
