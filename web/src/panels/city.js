// The city panel: the base registry on the map (buildings, streets, zones), its legend and the
// details of a clicked building.
import { SAFETY_COLORS, ZONE_COLORS, addCityLayers, setGeoJson, setLayerVisible } from '../map.js';
import { registerPanel } from './registry.js';

const BUILDING_PAGE = 200; // small pages keep the progress readable on the demo city
const NETWORK_PAGE = 10000;

const SAFETY_LABELS = {
  vulnerable: 'Vulnerable (schools, care, hospitals)',
  hazardous: 'Hazardous (fuel, industry, storage)',
  ordinary: 'Ordinary',
};

const fmt = new Intl.NumberFormat('en', { maximumFractionDigits: 0 });
const fmt1 = new Intl.NumberFormat('en', { maximumFractionDigits: 1 });

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'testid') e.dataset.testid = v;
    else if (k === 'class') e.className = v;
    else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c ?? '')));
  return e;
}

function legend(city) {
  const counts = city?.stats?.safety_classes || {};
  const list = el('ul', { class: 'legend' });
  for (const cls of ['vulnerable', 'hazardous', 'ordinary']) {
    const sw = el('span', { class: 'swatch' });
    sw.style.background = SAFETY_COLORS[cls];
    list.append(el('li', { testid: `legend-${cls}` }, sw, `${SAFETY_LABELS[cls]} `, el('span', { class: 'muted' }, `(${fmt.format(counts[cls] || 0)})`)));
  }
  for (const [kind, color] of Object.entries(ZONE_COLORS)) {
    const sw = el('span', { class: 'swatch swatch-zone' });
    sw.style.background = color;
    list.append(el('li', {}, sw, `Zone, ${kind} crowd`));
  }
  const walk = el('span', { class: 'swatch swatch-line' });
  walk.style.background = '#a0a6ad';
  const drive = el('span', { class: 'swatch swatch-road' });
  list.append(el('li', {}, walk, 'Walk network'), el('li', {}, drive, 'Drive network (width by lanes)'));
  return el('div', {}, el('h3', {}, 'Legend'), list);
}

function layerToggles(map) {
  const groups = {
    Buildings: ['buildings'],
    Zones: ['zones-fill', 'zones-outline'],
    'Walk network': ['walk'],
    'Drive network': ['drive', 'drive-casing'],
  };
  const box = el('div', { class: 'toggles' }, el('h3', {}, 'Layers'));
  for (const [label, ids] of Object.entries(groups)) {
    const cb = el('input', { type: 'checkbox', testid: `toggle-${ids[0]}` });
    cb.checked = true;
    cb.addEventListener('change', () => ids.forEach((id) => setLayerVisible(map, id, cb.checked)));
    box.append(el('label', { class: 'toggle' }, cb, ` ${label}`));
  }
  return box;
}

function row(label, value, testid) {
  return [el('dt', {}, label), el('dd', testid ? { testid } : {}, value ?? '—')];
}

/** Render a building's properties into the details panel. */
export function renderBuilding(container, props) {
  container.textContent = '';
  const cls = props.safety_class || 'ordinary';
  const chip = el('span', { class: `chip chip-${cls}`, testid: 'building-safety-class' }, cls);
  chip.style.background = SAFETY_COLORS[cls];
  const reasons = Array.isArray(props.safety_reason) ? props.safety_reason : [];
  const reasonList = reasons.length
    ? el('ul', { class: 'reasons', testid: 'building-safety-reason' }, ...reasons.map((r) => el('li', {}, el('code', {}, r))))
    : el('span', { class: 'muted', testid: 'building-safety-reason' }, 'no tag made it vulnerable or hazardous');
  const height = props.height_m == null ? null : `${fmt1.format(props.height_m)} m` + (props.height_source ? ` (${props.height_source})` : '');
  const dl = el(
    'dl',
    { class: 'details' },
    ...row('Address', props.address),
    ...row('Use', [props.use_class, props.building && props.building !== 'yes' ? `building=${props.building}` : null].filter(Boolean).join(' · ')),
    el('dt', {}, 'Safety class'),
    el('dd', {}, chip),
    el('dt', {}, 'Decided by'),
    el('dd', {}, reasonList),
    ...row('Height', height),
    ...row('Levels', props.levels == null ? null : fmt1.format(props.levels)),
    ...row('Floor area', props.floor_area_m2 == null ? null : `${fmt.format(props.floor_area_m2)} m²`),
    ...row('Occupants, day', props.occupants_day == null ? null : `≈ ${fmt.format(props.occupants_day)}`, 'building-occupants-day'),
    ...row('Occupants, night', props.occupants_night == null ? null : `≈ ${fmt.format(props.occupants_night)}`, 'building-occupants-night'),
  );
  container.append(
    el('h3', { testid: 'building-name' }, props.name || props.address || `Building ${props.id}`),
    dl,
    el('p', { class: 'muted small' }, `OSM ${props.osm_id || '—'} · occupants are estimates (floor area × density per use)`),
  );
}

async function loadCityLayers(ctx) {
  const { api, map, loading } = ctx;
  const buildings = new Map();

  const networks = ['walk', 'drive'].map(async (net) => {
    loading.set(net, `loading ${net} network…`);
    const fc = await api.fetchAllFeatures(`/api/city/networks/${net}`, {
      pageSize: NETWORK_PAGE,
      onPage: (_, done, total) => loading.set(net, `loading ${net} network ${done}/${total}…`),
    });
    setGeoJson(map, net, fc);
    loading.done(net);
    return fc.features.length;
  });
  const zones = (async () => {
    loading.set('zones', 'loading zones…');
    const fc = await api.fetchAllFeatures('/api/city/zones', { pageSize: NETWORK_PAGE });
    setGeoJson(map, 'zones', fc);
    loading.done('zones');
    return fc.features.length;
  })();

  loading.set('buildings', 'loading buildings…');
  const all = await api.fetchAllFeatures('/api/city/buildings', {
    pageSize: BUILDING_PAGE,
    onPage: (page, done, total) => {
      for (const f of page.features) buildings.set(f.id ?? f.properties.id, f);
      setGeoJson(map, 'buildings', { type: 'FeatureCollection', features: [...buildings.values()] });
      loading.set('buildings', `loading buildings ${done}/${total}…`);
    },
  });
  loading.done('buildings');
  const [walk, drive, nZones] = await Promise.all([...networks, zones]);
  return { buildings, counts: { buildings: all.features.length, walk, drive, zones: nZones } };
}

registerPanel({
  id: 'city',
  title: 'City',
  order: 0,
  async mount(container, ctx) {
    const { map, clicks, events } = ctx;
    addCityLayers(map);

    const details = el('div', { class: 'building-details', testid: 'building-details', hidden: '' });
    const hint = el('p', { class: 'muted', testid: 'building-hint' }, 'Click a building on the map for its details.');
    const summary = el('p', { class: 'muted small', testid: 'city-summary' });
    container.append(el('h2', {}, 'City'), summary, hint, details, legend(ctx.city), layerToggles(map));

    let byId = new Map();
    let selected = null;

    function select(id) {
      if (selected !== null) map.setFeatureState({ source: 'buildings', id: selected }, { selected: false });
      selected = id;
      if (id === null) {
        details.hidden = true;
        hint.hidden = false;
        return;
      }
      map.setFeatureState({ source: 'buildings', id }, { selected: true });
      const f = byId.get(id);
      renderBuilding(details, f ? f.properties : { id });
      details.hidden = false;
      hint.hidden = true;
      ctx.panels.show('city');
      events.dispatchEvent(new CustomEvent('building:selected', { detail: { id, feature: f } }));
    }

    clicks.push('city', (e) => {
      const hit = map.queryRenderedFeatures(e.point, { layers: ['buildings'] })[0];
      select(hit ? hit.id : null);
    });
    map.on('mouseenter', 'buildings', () => {
      if (clicks.owner === 'city') map.getCanvas().style.cursor = 'pointer';
    });
    map.on('mouseleave', 'buildings', () => {
      if (clicks.owner === 'city') map.getCanvas().style.cursor = '';
    });

    const result = await loadCityLayers(ctx).catch((err) => {
      ctx.loading.done('buildings');
      if (err.status !== 401) summary.textContent = `Could not load the city: ${err.message}`;
      throw err;
    });
    byId = result.buildings;
    const c = result.counts;
    summary.textContent = `${fmt.format(c.buildings)} buildings · ${fmt.format(c.walk)} walk edges · ${fmt.format(c.drive)} drive edges · ${fmt.format(c.zones)} zones`;
    events.dispatchEvent(new CustomEvent('city:loaded', { detail: { buildings: byId, counts: c } }));
    return { select };
  },
});
