// The loading indicator: several tasks may run at once; it shows all and hides when none is left.

export function createLoading(el, textEl) {
  const tasks = new Map();
  function render() {
    el.hidden = tasks.size === 0;
    textEl.textContent = [...tasks.values()].join(' · ');
  }
  return {
    set(key, text) {
      tasks.set(key, text);
      render();
    },
    done(key) {
      tasks.delete(key);
      render();
    },
  };
}
