// meshctl dashboard: the identity page (trust anchors, issuer, proxies).

import { append, el, emptyRow, table, td } from './dom.js';
import { api, clearError, showError } from './api.js';
import { fmtDateTime, fmtRelative, parseTime, shortFP } from './format.js';

function certTable(id, certs) {
  const t = table(id, [
    { label: 'Subject' }, { label: 'Fingerprint (SHA-256)' }, { label: 'Not before' }, { label: 'Not after' }, { label: 'Expires' },
  ]);
  t.tBodies[0].replaceChildren(...(certs.length ? certs.map((c) => el('tr', { 'data-fingerprint': c.fingerprint || '' },
    td('subject', c.subject || '–', 'id'),
    td('fingerprint', shortFP(c.fingerprint), 'mono', c.fingerprint || null),
    td('not_before', fmtDateTime(c.not_before)),
    td('not_after', fmtDateTime(c.not_after)),
    td('expires', fmtRelative(c.not_after), expiryClass(c.not_after)),
  )) : [emptyRow(5, 'none')]));
  return t;
}

function expiryClass(t) {
  const d = parseTime(t);
  if (!d) return null;
  const s = (d.getTime() - Date.now()) / 1000;
  if (s < 0) return 'h-fail';
  if (s < 7 * 86400) return 'h-warn';
  return null;
}

function proxiesTable(id, list, withIssuer) {
  const cols = [{ label: 'Namespace' }, { label: 'Pod' }];
  if (withIssuer) cols.push({ label: 'Issuer' }, { label: 'Certificate expires' });
  cols.push({ label: 'Error' });
  const t = table(id, cols);
  t.tBodies[0].replaceChildren(...list.map((p) => el('tr', { 'data-pod': p.pod || '' },
    td('namespace', p.namespace || ''),
    td('pod', p.pod || '', 'id'),
    withIssuer ? td('issuer', shortFP(p.issuer_fingerprint), 'mono', p.issuer_fingerprint || null) : null,
    withIssuer ? td('not_after', fmtRelative(p.not_after), null, fmtDateTime(p.not_after)) : null,
    td('error', p.error || '', 'error-text'),
  )));
  return t;
}

export class IdentityPage {
  constructor(main) {
    this.name = 'identity';
    this.body = el('div', { id: 'identity' }, el('p', { class: 'muted', text: 'reading certificates…' }));
    append(main, [
      el('div', { class: 'toolbar' }, el('h1', { text: 'Identity' }), el('span', { class: 'spacer' }),
        el('button', { class: 'btn', type: 'button', text: 'Refresh', onclick: () => this.load() })),
      this.body,
    ]);
    this.load();
  }

  async load() {
    if (this.busy) return;
    this.busy = true;
    this.abort = new AbortController();
    try {
      const id = await api('identity', null, this.abort.signal);
      if (this.destroyed) return;
      clearError('identity');
      this.render(id || {});
    } catch (e) {
      if (e.name === 'AbortError' || this.destroyed) return;
      showError('identity', e.message);
      this.body.replaceChildren(el('p', { class: 'error-text', text: 'Could not read the identity state.' }));
    } finally {
      this.busy = false;
    }
  }

  render(id) {
    const old = (id.on_old_issuer || []).filter(Boolean);
    const unread = (id.unread || []).filter(Boolean);
    const oldBox = el('div', { id: 'identity-old-issuer' },
      old.length ? proxiesTable('old-issuer-table', old, true) : el('p', { class: 'none', text: 'none' }));
    const errs = (id.errors || []).filter(Boolean);
    this.body.replaceChildren();
    append(this.body, [
      el('h2', { text: 'Trust anchors' }), certTable('trust-anchors-table', (id.trust_anchors || []).filter(Boolean)),
      el('h2', { text: 'Issuer' }), certTable('issuer-table', id.issuer ? [id.issuer] : []),
      el('h2', { text: 'Proxies' }),
      el('p', { id: 'identity-proxies' }, el('strong', { text: String(id.proxies ?? 0) }), ' meshed proxies read.'),
      el('h3', { text: 'On an old issuer' }), oldBox,
      el('h3', { text: 'Not read' }),
      el('div', { id: 'identity-unread' }, unread.length ? proxiesTable('unread-table', unread, false) : el('p', { class: 'none', text: 'none' })),
      errs.length ? el('h3', { text: 'Errors' }) : null,
      errs.length ? el('ul', { id: 'identity-errors', class: 'messages error-text' }, errs.map((e) => el('li', { text: e }))) : null,
    ]);
  }

  destroy() {
    this.destroyed = true;
    if (this.abort) this.abort.abort();
  }
}
