// The HTTP client: bearer token in sessionStorage, one place that turns a 401 into "log in again".

const TOKEN_KEY = 'citytwin.session';

/** Raised for any non-2xx answer; `status` and the server's `detail` are kept for the UI. */
export class ApiError extends Error {
  constructor(status, detail, path) {
    super(typeof detail === 'string' ? detail : JSON.stringify(detail));
    this.name = 'ApiError';
    this.status = status;
    this.detail = detail;
    this.path = path;
  }
}

function readSession(storage) {
  try {
    const s = JSON.parse(storage.getItem(TOKEN_KEY) || 'null');
    if (!s || !s.token) return null;
    if (s.expiresAt && Date.now() >= s.expiresAt) {
      storage.removeItem(TOKEN_KEY);
      return null;
    }
    return s;
  } catch {
    storage.removeItem(TOKEN_KEY);
    return null;
  }
}

async function errorDetail(res) {
  try {
    const body = await res.json();
    return body.detail ?? body;
  } catch {
    return res.statusText || `HTTP ${res.status}`;
  }
}

function withQuery(path, query) {
  if (!query) return path;
  const params = new URLSearchParams();
  for (const [k, v] of Object.entries(query)) {
    if (v === undefined || v === null) continue;
    params.set(k, Array.isArray(v) ? v.join(',') : String(v));
  }
  const qs = params.toString();
  return qs ? `${path}${path.includes('?') ? '&' : '?'}${qs}` : path;
}

/**
 * Build the API client.
 *
 * @param {object} opts
 * @param {(err: ApiError) => void} opts.onUnauthorized called once when a request gets 401
 * @param {Storage} [opts.storage] where the session lives (default sessionStorage)
 * @param {typeof fetch} [opts.fetchImpl] injected for tests
 */
export function createApi({ onUnauthorized, storage = window.sessionStorage, fetchImpl = window.fetch.bind(window) } = {}) {
  let unauthorizedFired = false;

  const api = {
    /** The current session {token, user, role, expiresAt} or null. */
    get session() {
      return readSession(storage);
    },

    /** Exchange user name and password for a token; throws ApiError (401 on a wrong password). */
    async login(username, password) {
      const body = new URLSearchParams({ username, password });
      const res = await fetchImpl('/api/auth/token', {
        method: 'POST',
        headers: { 'Content-Type': 'application/x-www-form-urlencoded', Accept: 'application/json' },
        body,
      });
      if (!res.ok) throw new ApiError(res.status, await errorDetail(res), '/api/auth/token');
      const tok = await res.json();
      const session = {
        token: tok.access_token,
        user: tok.user,
        role: tok.role,
        expiresAt: tok.expires_in ? Date.now() + tok.expires_in * 1000 : null,
      };
      storage.setItem(TOKEN_KEY, JSON.stringify(session));
      unauthorizedFired = false;
      return session;
    },

    logout() {
      storage.removeItem(TOKEN_KEY);
    },

    /**
     * A request with the bearer token. JSON bodies are sent as JSON; FormData/URLSearchParams as is.
     * Returns the parsed JSON (or the Response when `raw` is true, e.g. for file downloads).
     */
    async request(path, { method = 'GET', query, body, headers = {}, signal, raw = false } = {}) {
      const session = readSession(storage);
      const h = { Accept: 'application/json', ...headers };
      if (session) h.Authorization = `Bearer ${session.token}`;
      let payload = body;
      if (body !== undefined && !(body instanceof FormData) && !(body instanceof URLSearchParams) && !(body instanceof Blob)) {
        h['Content-Type'] = 'application/json';
        payload = JSON.stringify(body);
      }
      const url = withQuery(path, query);
      const res = await fetchImpl(url, { method, headers: h, body: payload, signal });
      if (res.status === 401) {
        const err = new ApiError(401, await errorDetail(res), url);
        storage.removeItem(TOKEN_KEY);
        if (!unauthorizedFired && onUnauthorized) {
          unauthorizedFired = true;
          onUnauthorized(err);
        }
        throw err;
      }
      if (!res.ok) throw new ApiError(res.status, await errorDetail(res), url);
      if (raw) return res;
      if (res.status === 204) return null;
      return res.json();
    },

    get(path, query, opts = {}) {
      return api.request(path, { ...opts, query });
    },

    post(path, body, opts = {}) {
      return api.request(path, { ...opts, method: 'POST', body });
    },

    /**
     * Page through a GeoJSON collection endpoint (limit/offset) until `numberMatched` is reached.
     *
     * @param {string} path e.g. '/api/city/buildings'
     * @param {object} [opts]
     * @param {object} [opts.query] extra query parameters (bbox, safety_class, …)
     * @param {number} [opts.pageSize]
     * @param {(page: object, done: number, total: number) => void} [opts.onPage]
     * @returns {Promise<object>} one FeatureCollection with every feature
     */
    async fetchAllFeatures(path, { query = {}, pageSize = 1000, onPage, signal } = {}) {
      const features = [];
      let total = Infinity;
      let offset = 0;
      while (offset < total) {
        const page = await api.get(path, { ...query, limit: pageSize, offset }, { signal });
        features.push(...page.features);
        total = Number.isFinite(page.numberMatched) ? page.numberMatched : features.length;
        offset += page.features.length;
        if (onPage) onPage(page, features.length, total);
        if (page.features.length === 0) break; // the server said more but sent none: stop
      }
      return { type: 'FeatureCollection', features, numberMatched: total };
    },

    /** A URL for EventSource/downloads, which cannot set headers (the server accepts ?access_token=). */
    urlWithToken(path, query = {}) {
      const session = readSession(storage);
      return withQuery(path, { ...query, access_token: session ? session.token : undefined });
    },
  };
  return api;
}
