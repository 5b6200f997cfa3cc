// The status bar: one badge per data source saying whether it is real, replayed or simulated,
// and how old its latest data is. Later panels call ctx.status.set(...) for their feeds.

const KINDS = {
  real: 'real data',
  replay: 'real data, replayed',
  simulated: 'simulated',
  model: 'model output',
};

export function formatAge(seconds) {
  if (!Number.isFinite(seconds)) return 'age unknown';
  if (seconds < 0) seconds = 0;
  if (seconds < 90) return `${Math.round(seconds)} s ago`;
  if (seconds < 90 * 60) return `${Math.round(seconds / 60)} min ago`;
  if (seconds < 48 * 3600) return `${Math.round(seconds / 3600)} h ago`;
  return `${Math.round(seconds / 86400)} d ago`;
}

/**
 * @param {HTMLElement} el the footer
 * @returns {{set(id: string, badge: object): void, remove(id: string): void}}
 */
export function createStatusBar(el, { now = () => Date.now() } = {}) {
  const badges = new Map();

  function render(id) {
    const b = badges.get(id);
    const ageS = b.updatedAt ? (now() - new Date(b.updatedAt).getTime()) / 1000 : NaN;
    const stale = b.staleAfterS !== undefined && Number.isFinite(ageS) && ageS > b.staleAfterS;
    b.el.className = `badge badge-${b.kind}${stale ? ' badge-stale' : ''}`;
    b.el.textContent = '';
    const label = document.createElement('strong');
    label.textContent = b.label;
    const kind = document.createElement('span');
    kind.className = 'badge-kind';
    kind.textContent = KINDS[b.kind] || b.kind;
    const age = document.createElement('span');
    age.className = 'badge-age';
    age.textContent = b.updatedAt ? formatAge(ageS) + (stale ? ' · stale' : '') : '';
    b.el.append(label, kind, age);
    b.el.title = b.detail || '';
  }

  setInterval(() => badges.forEach((_, id) => render(id)), 5000);

  return {
    /**
     * @param {string} id
     * @param {object} badge
     * @param {string} badge.label e.g. 'City model'
     * @param {'real'|'replay'|'simulated'|'model'} badge.kind
     * @param {string|number|Date} [badge.updatedAt] time of the newest data
     * @param {number} [badge.staleAfterS] age after which the badge is marked stale
     * @param {string} [badge.detail] tooltip (source, model, …)
     */
    set(id, badge) {
      let b = badges.get(id);
      if (!b) {
        const span = document.createElement('span');
        span.dataset.testid = `status-${id}`;
        el.appendChild(span);
        b = { el: span };
        badges.set(id, b);
      }
      Object.assign(b, { kind: 'real', ...badge });
      render(id);
    },
    remove(id) {
      const b = badges.get(id);
      if (b) b.el.remove();
      badges.delete(id);
    },
  };
}
