// meshctl dashboard: the health page (meshctl check in the browser).

import { append, el } from './dom.js';
import { api, clearError, showError } from './api.js';

const HEALTH_SYMBOLS = { ok: '✔', warning: '‼', error: '×', skipped: '-' };

export class HealthPage {
  constructor(main) {
    this.name = 'health';
    this.summary = el('div', { id: 'health-summary' });
    this.body = el('div', { id: 'health-results' });
    this.again = el('button', { class: 'btn', type: 'button', text: 'Run again', onclick: () => this.load() });
    append(main, [
      el('div', { class: 'toolbar' }, el('h1', { text: 'Health' }), el('span', { class: 'spacer' }), this.again),
      this.summary, this.body,
    ]);
    this.load();
  }

  async load() {
    if (this.busy) return;
    this.busy = true;
    this.again.disabled = true;
    this.summary.className = 'running';
    this.summary.textContent = 'running checks… (this can take 20 seconds)';
    this.abort = new AbortController();
    try {
      const h = await api('health', null, this.abort.signal);
      if (this.destroyed) return;
      clearError('health');
      this.render(h || {});
    } catch (e) {
      if (e.name === 'AbortError' || this.destroyed) return;
      showError('health', e.message);
      this.summary.className = 'running';
      this.summary.textContent = 'The checks could not be run.';
    } finally {
      this.busy = false;
      this.again.disabled = false;
    }
  }

  render(h) {
    const results = (h.results || []).filter(Boolean);
    const count = (s) => results.filter((r) => r.result === s).length;
    const errors = count('error');
    const warnings = count('warning');
    const passed = h.passed === true;
    this.summary.className = passed ? 'passed' : 'failed';
    const plural = (n, w) => n + ' ' + w + (n === 1 ? '' : 's');
    this.summary.textContent = passed
      ? (warnings ? `Status check results are passed, with ${plural(warnings, 'warning')}` : 'Status check results are passed')
      : `Status check results are failed: ${plural(errors, 'error')}${warnings ? ', ' + plural(warnings, 'warning') : ''}`;
    const cats = new Map();
    for (const r of results) {
      const c = r.category || 'other';
      if (!cats.has(c)) cats.set(c, []);
      cats.get(c).push(r);
    }
    this.body.replaceChildren(...[...cats].map(([cat, rs]) => el('section', { class: 'panel health-cat', 'data-category': cat },
      el('h3', { text: cat }),
      el('ul', null, rs.map((r) => el('li', { 'data-result': r.result || '' },
        el('span', { class: 'sym ' + (r.result || ''), text: HEALTH_SYMBOLS[r.result] || '?', title: r.result || '' }),
        el('span', { class: 'name', text: r.name || '' }),
        r.detail ? el('div', { class: 'detail', text: r.detail }) : null,
        r.hint && r.result !== 'ok' ? el('div', { class: 'hint', text: 'hint: ' + r.hint }) : null,
      ))))));
  }

  destroy() {
    this.destroyed = true;
    if (this.abort) this.abort.abort();
  }
}
