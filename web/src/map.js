// The map: MapLibre with no external sources. The basemap is the twin's own OSM layers.
import maplibregl from 'maplibre-gl';
import 'maplibre-gl/dist/maplibre-gl.css';

/** Colours by safety class; also used by the legend. */
export const SAFETY_COLORS = {
  vulnerable: '#e8590c',
  hazardous: '#8e44ad',
  ordinary: '#8da2b8',
};
export const SELECTED_COLOR = '#ffd43b';

export const ZONE_COLORS = {
  moving: '#4dabf7',
  standing: '#38d9a9',
};

/** A style without any URL: no tiles, sprites or glyphs, so no symbol (text) layers either. */
export function offlineStyle() {
  return {
    version: 8,
    name: 'citytwin offline',
    sources: {},
    layers: [{ id: 'background', type: 'background', paint: { 'background-color': '#eef0f2' } }],
  };
}

/**
 * Create the map in `container`. Resolves once the style is loaded.
 *
 * @param {HTMLElement} container
 * @param {{bbox?: number[]}} [opts] bbox as [W, S, E, N] in degrees (EPSG:4326)
 */
export function createMap(container, { bbox } = {}) {
  const map = new maplibregl.Map({
    container,
    style: offlineStyle(),
    center: bbox ? [(bbox[0] + bbox[2]) / 2, (bbox[1] + bbox[3]) / 2] : [0, 0],
    zoom: bbox ? 14 : 1,
    pitch: 50,
    maxPitch: 75,
    attributionControl: false,
    // keeps the canvas readable for screenshots and tests (toDataURL)
    canvasContextAttributes: { preserveDrawingBuffer: true, antialias: true },
  });
  map.addControl(new maplibregl.NavigationControl({ visualizePitch: true }), 'top-left');
  map.addControl(new maplibregl.ScaleControl({ unit: 'metric' }), 'bottom-left');
  map.addControl(
    new maplibregl.AttributionControl({ compact: true, customAttribution: 'Map data © OpenStreetMap contributors' }),
    'bottom-right',
  );
  return new Promise((resolve) => {
    if (map.isStyleLoaded()) resolve(map);
    else map.once('load', () => resolve(map));
  });
}

/** Fit the view to a [W, S, E, N] box, keeping the 3D pitch. */
export function fitBbox(map, bbox, { padding = 40, animate = false } = {}) {
  map.fitBounds(
    [
      [bbox[0], bbox[1]],
      [bbox[2], bbox[3]],
    ],
    { padding, pitch: 50, animate },
  );
}

const EMPTY = { type: 'FeatureCollection', features: [] };

/**
 * Add (or replace the data of) a GeoJSON source. Features keep their numeric `id`, so
 * feature-state (selection, highlighting) works.
 */
export function setGeoJson(map, sourceId, data = EMPTY) {
  const src = map.getSource(sourceId);
  if (src) src.setData(data);
  else map.addSource(sourceId, { type: 'geojson', data, promoteId: 'id' });
  return map.getSource(sourceId);
}

/**
 * Add a layer once; `beforeId` places it below another layer (e.g. lines below the buildings).
 * Panels should put their own layers on top (no beforeId) or below 'buildings'.
 */
export function addLayer(map, layer, beforeId) {
  if (map.getLayer(layer.id)) return;
  map.addLayer(layer, beforeId && map.getLayer(beforeId) ? beforeId : undefined);
}

export function setLayerVisible(map, layerId, visible) {
  if (map.getLayer(layerId)) map.setLayoutProperty(layerId, 'visibility', visible ? 'visible' : 'none');
}

/** The city base layers, in drawing order, with empty sources; data arrives via setGeoJson. */
export function addCityLayers(map) {
  setGeoJson(map, 'zones');
  setGeoJson(map, 'walk');
  setGeoJson(map, 'drive');
  setGeoJson(map, 'buildings');
  addLayer(map, {
    id: 'zones-fill',
    type: 'fill',
    source: 'zones',
    paint: {
      'fill-color': ['match', ['get', 'kind'], 'standing', ZONE_COLORS.standing, ZONE_COLORS.moving],
      'fill-opacity': 0.25,
    },
  });
  addLayer(map, {
    id: 'zones-outline',
    type: 'line',
    source: 'zones',
    paint: {
      'line-color': ['match', ['get', 'kind'], 'standing', ZONE_COLORS.standing, ZONE_COLORS.moving],
      'line-width': 1,
    },
  });
  addLayer(map, {
    id: 'walk',
    type: 'line',
    source: 'walk',
    layout: { 'line-cap': 'round', 'line-join': 'round' },
    paint: {
      'line-color': '#a0a6ad',
      'line-width': ['interpolate', ['linear'], ['zoom'], 13, 0.4, 17, 1.5],
    },
  });
  addLayer(map, {
    id: 'drive',
    type: 'line',
    source: 'drive',
    layout: { 'line-cap': 'round', 'line-join': 'round' },
    paint: {
      'line-color': '#ffffff',
      'line-width': [
        'interpolate', ['exponential', 1.6], ['zoom'],
        13, ['*', 0.6, ['coalesce', ['get', 'lanes'], 1]],
        18, ['*', 6, ['coalesce', ['get', 'lanes'], 1]],
      ],
    },
  });
  addLayer(map, {
    id: 'drive-casing',
    type: 'line',
    source: 'drive',
    layout: { 'line-cap': 'round', 'line-join': 'round' },
    paint: { 'line-color': '#c3c8ce', 'line-width': 0.5, 'line-gap-width': ['interpolate', ['linear'], ['zoom'], 13, 1, 18, 8] },
  }, 'drive');
  addLayer(map, {
    id: 'buildings',
    type: 'fill-extrusion',
    source: 'buildings',
    filter: ['in', ['geometry-type'], ['literal', ['Polygon', 'MultiPolygon']]],
    paint: {
      'fill-extrusion-color': [
        'case',
        ['boolean', ['feature-state', 'selected'], false], SELECTED_COLOR,
        ['match', ['get', 'safety_class'],
          'vulnerable', SAFETY_COLORS.vulnerable,
          'hazardous', SAFETY_COLORS.hazardous,
          SAFETY_COLORS.ordinary],
      ],
      'fill-extrusion-height': ['coalesce', ['get', 'height_m'], 6],
      'fill-extrusion-base': 0,
      'fill-extrusion-opacity': 0.9,
      'fill-extrusion-vertical-gradient': true,
    },
  });
}

/**
 * Map clicks go to one handler at a time: the top of a stack. The city panel's building picker
 * sits at the bottom; a panel that needs the next clicks (placing a source, drawing a venue)
 * pushes its own handler and calls the returned release function when done.
 */
export function createClickRouter(map) {
  const stack = [];
  map.on('click', (e) => {
    const top = stack[stack.length - 1];
    if (top) top.handler(e);
  });
  return {
    push(owner, handler, { cursor = '' } = {}) {
      const entry = { owner, handler, cursor };
      stack.push(entry);
      map.getCanvas().style.cursor = cursor;
      return () => {
        const i = stack.indexOf(entry);
        if (i >= 0) stack.splice(i, 1);
        const top = stack[stack.length - 1];
        map.getCanvas().style.cursor = top ? top.cursor : '';
      };
    },
    get owner() {
      const top = stack[stack.length - 1];
      return top ? top.owner : null;
    },
  };
}

/** A rough centroid [lon, lat] of a Polygon/MultiPolygon (mean of the outer ring's vertices). */
export function roughCentroid(geometry) {
  const ring = geometry.type === 'MultiPolygon' ? geometry.coordinates[0][0] : geometry.coordinates[0];
  const pts = ring.slice(0, -1);
  const sum = pts.reduce((a, p) => [a[0] + p[0], a[1] + p[1]], [0, 0]);
  return [sum[0] / pts.length, sum[1] / pts.length];
}

export { maplibregl };
