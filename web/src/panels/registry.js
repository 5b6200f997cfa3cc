// The panel registry: each domain (city, sensors, crowd, incident, evacuation) is one module in
// src/panels/ that calls registerPanel(); src/panels/index.js imports them all, in tab order.

const registered = [];

/**
 * Register a side-bar panel.
 *
 * @param {object} panel
 * @param {string} panel.id unique, used in data-testid="panel-<id>" and "tab-<id>"
 * @param {string} panel.title the tab's label
 * @param {(container: HTMLElement, ctx: object) => (void|object|Promise<void|object>)} panel.mount
 *   called once after login with the panel's own container and the shared context
 *   {api, map, city, status, loading, clicks, events, panels}. It may return hooks
 *   {onShow(), onHide()} called when its tab is selected or left.
 * @param {number} [panel.order] tab position (lower first; default: registration order)
 */
export function registerPanel(panel) {
  for (const key of ['id', 'title']) {
    if (typeof panel[key] !== 'string' || !panel[key]) throw new Error(`registerPanel: "${key}" must be a non-empty string`);
  }
  if (typeof panel.mount !== 'function') throw new Error(`registerPanel(${panel.id}): "mount" must be a function`);
  if (registered.some((p) => p.id === panel.id)) throw new Error(`registerPanel: a panel "${panel.id}" is already registered`);
  registered.push({ order: 100 + registered.length, ...panel });
}

export function registeredPanels() {
  return [...registered].sort((a, b) => a.order - b.order);
}

/**
 * Build the tabs and mount every registered panel; resolves, once all mounts have settled, to
 * the controller {show(id), active} (also set as ctx.panels before any mount is called).
 * A panel whose mount fails shows its error in its own tab; the others still work.
 */
export async function mountPanels({ tabs, bodies, ctx }) {
  const entries = [];
  let active = null;

  const controller = {
    show(id) {
      const next = entries.find((e) => e.panel.id === id);
      if (!next || active === next) return;
      if (active) {
        active.tab.setAttribute('aria-selected', 'false');
        active.body.hidden = true;
        active.hooks?.onHide?.();
      }
      active = next;
      next.tab.setAttribute('aria-selected', 'true');
      next.body.hidden = false;
      next.hooks?.onShow?.();
    },
    get active() {
      return active ? active.panel.id : null;
    },
  };
  ctx.panels = controller;

  for (const panel of registeredPanels()) {
    const tab = document.createElement('button');
    tab.type = 'button';
    tab.className = 'panel-tab';
    tab.textContent = panel.title;
    tab.setAttribute('role', 'tab');
    tab.setAttribute('aria-selected', 'false');
    tab.dataset.testid = `tab-${panel.id}`;
    tab.addEventListener('click', () => controller.show(panel.id));
    tabs.appendChild(tab);

    const body = document.createElement('section');
    body.className = 'panel-body';
    body.setAttribute('role', 'tabpanel');
    body.dataset.testid = `panel-${panel.id}`;
    body.hidden = true;
    bodies.appendChild(body);
    entries.push({ panel, tab, body, hooks: null });
  }

  if (entries.length) controller.show(entries[0].panel.id);
  await Promise.all(
    entries.map(async (entry) => {
      try {
        entry.hooks = (await entry.panel.mount(entry.body, ctx)) || null;
        if (active === entry) entry.hooks?.onShow?.();
      } catch (err) {
        console.error(`panel ${entry.panel.id} failed to mount`, err);
        const p = document.createElement('p');
        p.className = 'error';
        p.textContent = `This panel could not start: ${err.message}`;
        entry.body.appendChild(p);
      }
    }),
  );
  return controller;
}
