// Entry point: login, then the city in 3D with the side-bar panels.
import './style.css';
import { createApi } from './api.js';
import { createLoading } from './loading.js';
import { createClickRouter, createMap, fitBbox } from './map.js';
import './panels/index.js';
import { mountPanels } from './panels/registry.js';
import { createStatusBar } from './status.js';

const FLASH_KEY = 'citytwin.flash';
const $ = (id) => document.getElementById(id);

// For tests and debugging in the console: the map, and whether the city has been drawn.
const debug = (window.__citytwin = { map: null, ready: false, error: null, ctx: null });

const api = createApi({
  onUnauthorized: () => endSession('Your session has ended; please sign in again.'),
});

/** Forget the token and start over (a reload also closes every panel's streams and timers). */
function endSession(message) {
  api.logout();
  if (message) sessionStorage.setItem(FLASH_KEY, message);
  window.location.reload();
}

function showLogin() {
  $('app-view').hidden = true;
  $('login-view').hidden = false;
  const flash = sessionStorage.getItem(FLASH_KEY);
  sessionStorage.removeItem(FLASH_KEY);
  showLoginError(flash);
  $('login-username').focus();
}

function showLoginError(message) {
  const err = $('login-error');
  err.textContent = message || '';
  err.hidden = !message;
}

/** The server's `imported_at` is UTC without a zone designator. */
function parseUtc(ts) {
  if (!ts) return undefined;
  return /[zZ]|[+-]\d\d:?\d\d$/.test(ts) ? ts : `${ts}Z`;
}

async function startApp(session) {
  $('login-view').hidden = true;
  $('app-view').hidden = false;
  $('user-badge').textContent = `${session.user} (${session.role})`;
  const loading = createLoading($('loading'), $('loading-text'));
  const status = createStatusBar($('status-bar'));

  loading.set('city', 'loading city…');
  const cities = await api.get('/api/city');
  loading.done('city');
  if (!cities.length) {
    loading.set('city', 'No city is imported yet: run `citytwin import --osm FILE.pbf --name NAME`.');
    return;
  }
  const city = cities[0];
  $('city-name').textContent = city.name;
  document.title = `citytwin — ${city.name}`;
  status.set('city', {
    label: 'City model',
    kind: 'real',
    updatedAt: parseUtc(city.imported_at),
    detail: `OpenStreetMap import (${city.source}); the age is the time since the import`,
  });

  const map = await createMap($('map'), { bbox: city.bbox });
  fitBbox(map, city.bbox);
  debug.map = map;

  const events = new EventTarget();
  events.addEventListener('city:loaded', () => {
    map.once('idle', () => {
      debug.ready = true;
      document.body.dataset.cityReady = 'true';
    });
    map.triggerRepaint();
  });
  const ctx = { api, map, city, status, loading, events, clicks: createClickRouter(map) };
  debug.ctx = ctx;
  await mountPanels({ tabs: $('panel-tabs'), bodies: $('panel-bodies'), ctx });
}

async function onLogin(ev) {
  ev.preventDefault();
  const button = ev.submitter || $('login-form').querySelector('button');
  button.disabled = true;
  showLoginError(null);
  try {
    const session = await api.login($('login-username').value.trim(), $('login-password').value);
    $('login-password').value = '';
    launch(session);
  } catch (err) {
    if (err.status === 401) showLoginError('Wrong user name or password.');
    else if (err.status === 422) showLoginError('Enter a user name and a password.');
    else showLoginError(`Sign-in failed: ${err.message}`);
  } finally {
    button.disabled = false;
  }
}

function launch(session) {
  startApp(session).catch((err) => {
    debug.error = err.message;
    if (err.status !== 401) {
      $('loading').hidden = false;
      $('loading-text').textContent = `Could not start: ${err.message}`;
    }
  });
}

function main() {
  $('login-form').addEventListener('submit', onLogin);
  $('logout').addEventListener('click', () => endSession(null));
  const session = api.session;
  if (!session) {
    showLogin();
    return;
  }
  launch(session);
}

main();
