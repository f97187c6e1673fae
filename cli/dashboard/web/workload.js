// meshctl dashboard: the workload page (stats, charts, pods, edges,
// policy, routes and the live tap).

import { append, el, emptyRow, table, td, warningsBox, yesNo } from './dom.js';
import { api, clearError, poller, showError } from './api.js';
import { Chart } from './charts.js';
import { fmtBound, fmtDateTime, fmtPercent, fmtRelative, fmtRps, fmtSuccess, health, isNum, numOrNull, parseTime } from './format.js';
import { topologyHash } from './router.js';
import { COLORS } from './state.js';
import { Tap } from './tap.js';

function edgesTableFor(id, edges, other) {
  const t = table(id, [
    { label: other === 'source' ? 'From' : 'To' }, { label: 'RPS', cls: 'num' }, { label: 'Success', cls: 'num' },
    { label: 'p50', cls: 'num' }, { label: 'p95', cls: 'num' }, { label: 'p99', cls: 'num' },
    { label: 'Requests', cls: 'num' }, { label: 'Secured' },
  ]);
  fillEdgesTable(t, edges, other);
  return t;
}

function fillEdgesTable(t, edges, other) {
  const rows = (edges || []).filter((e) => e && typeof e.id === 'string').map((e) => el('tr', { 'data-edge-id': e.id },
    td(other, e[other], 'id'),
    td('rps', fmtRps(e.rps), 'num'),
    td('success', fmtSuccess(e.success_rate), 'num h-' + health(e.success_rate)),
    td('p50', fmtBound(e.p50_ms), 'num'),
    td('p95', fmtBound(e.p95_ms), 'num'),
    td('p99', fmtBound(e.p99_ms), 'num'),
    td('requests', isNum(e.requests) ? String(Math.round(e.requests)) : '–', 'num'),
    td('secured', yesNo(e.secured), 'center ' + (e.secured ? 'yes' : 'no')),
  ));
  t.tBodies[0].replaceChildren(...(rows.length ? rows : [emptyRow(8, 'none')]));
}

export class WorkloadPage {
  constructor(main, r) {
    this.name = 'workload';
    this.ns = r.namespace;
    this.wname = r.name;
    this.main = main;

    this.title = el('h1', null, el('span', { class: 'kind', text: 'workload' }), `${r.namespace}/${r.name}`);
    this.back = el('a', { href: topologyHash(r.namespace, ''), text: '← topology of ' + r.namespace });
    this.stats = el('div', { class: 'stats' });
    this.warnings = warningsBox('workload-warnings');
    this.charts = {
      success: new Chart(el('div', { class: 'chart', id: 'chart-success' }), 'Success rate (%)',
        [{ label: 'success %', color: COLORS.ok }], (v) => v.toFixed(v >= 99 ? 2 : 1)),
      rps: new Chart(el('div', { class: 'chart', id: 'chart-rps' }), 'Requests per second',
        [{ label: 'rps', color: '#2f6fde' }], (v) => fmtRps(v)),
      latency: new Chart(el('div', { class: 'chart', id: 'chart-latency' }), 'Latency (ms, bucket bound)',
        [{ label: 'p50', color: '#5fa8d3' }, { label: 'p95', color: '#d99a00' }, { label: 'p99', color: '#d64541' }],
        (v) => String(Number(v.toPrecision(3)))),
    };
    this.podsTable = table('pods-table', [
      { label: 'Pod' }, { label: 'Ready' }, { label: 'Meshed' }, { label: 'Proxy version' },
      { label: 'Identity' }, { label: 'Certificate expires' },
    ]);
    this.inboundTable = edgesTableFor('inbound-table', [], 'source');
    this.outboundTable = edgesTableFor('outbound-table', [], 'target');
    this.policyBox = el('div', { id: 'policy' });
    this.policiesTable = table('policies-table', [
      { label: 'Policy' }, { label: 'Port' }, { label: 'Clients' }, { label: 'Path prefixes' },
    ]);
    this.routesBox = el('div', { id: 'routes' });
    this.tap = new Tap(r.namespace, r.name);

    append(main, [
      this.back,
      this.title,
      this.warnings.node,
      this.stats,
      el('div', { class: 'charts' }, this.charts.success.container, this.charts.rps.container, this.charts.latency.container),
      el('h2', { text: 'Pods' }), this.podsTable,
      el('h2', { text: 'Inbound' }), this.inboundTable,
      el('h2', { text: 'Outbound' }), this.outboundTable,
      el('h2', { text: 'Policy' }), this.policyBox, el('h3', { text: 'Authorization policies' }), this.policiesTable,
      el('h2', { text: 'Routes' }), this.routesBox,
      el('h2', { text: 'Live tap' }), this.tap.node,
    ]);
    this.onResize = () => Object.values(this.charts).forEach((c) => c.resize());
    window.addEventListener('resize', this.onResize);
    this.poll = poller(() => this.refresh());
  }

  async refresh() {
    this.abort = new AbortController();
    let w;
    try {
      w = await api('workload', { namespace: this.ns, name: this.wname }, this.abort.signal);
    } catch (e) {
      if (e.name === 'AbortError' || this.destroyed) return;
      showError('workload', e.message);
      if (e.status === 404) this.stats.replaceChildren(el('p', { class: 'error-text', text: 'This workload is not known to the dashboard.' }));
      return;
    }
    if (this.destroyed) return;
    clearError('workload');
    this.render(w || {});
    // The tap starts once the workload is known (not for a 404).
    if (!this.tapStarted) {
      this.tapStarted = true;
      this.tap.start();
    }
  }

  render(w) {
    this.title.replaceChildren(el('span', { class: 'kind', text: w.kind || 'workload' }),
      `${w.namespace || this.ns}/${w.name || this.wname}`);
    const ib = w.inbound || {};
    const stat = (k, v, cls) => el('div', { class: 'stat' }, el('div', { class: 'v ' + (cls || ''), text: v }), el('div', { class: 'k', text: k }));
    this.stats.replaceChildren(
      stat('pods meshed', `${w.meshed ?? 0}/${w.pods ?? 0}`),
      stat('success', fmtSuccess(ib.success_rate)),
      stat('rps', fmtRps(ib.rps)),
      stat('p50', fmtBound(ib.p50_ms)),
      stat('p95', fmtBound(ib.p95_ms)),
      stat('p99', fmtBound(ib.p99_ms)),
    );
    this.warnings.set(w.errors);

    const hist = (w.history || []).filter((p) => p && parseTime(p.t));
    const xs = hist.map((p) => parseTime(p.t).getTime() / 1000);
    this.charts.success.set([xs, hist.map((p) => (isNum(p.success_rate) ? p.success_rate * 100 : null))]);
    this.charts.rps.set([xs, hist.map((p) => numOrNull(p.rps))]);
    this.charts.latency.set([xs, hist.map((p) => numOrNull(p.p50_ms)), hist.map((p) => numOrNull(p.p95_ms)), hist.map((p) => numOrNull(p.p99_ms))]);

    const pods = (w.pod_list || []).filter((p) => p && typeof p.name === 'string');
    this.podsTable.tBodies[0].replaceChildren(...(pods.length ? pods.map((p) => {
      const id = p.identity;
      let expiry;
      if (id) expiry = td('expiry', fmtRelative(id.not_after), null, fmtDateTime(id.not_after));
      else if (p.identity_error) expiry = td('expiry', p.identity_error, 'error-text');
      else expiry = td('expiry', p.meshed ? '–' : 'not meshed', 'muted');
      return el('tr', { 'data-pod': p.name },
        td('name', p.name, 'id'),
        td('ready', yesNo(p.ready), 'center ' + (p.ready ? 'yes' : 'no')),
        td('meshed', yesNo(p.meshed), 'center ' + (p.meshed ? 'yes' : 'no')),
        td('proxy_version', p.proxy_version || '–'),
        td('identity', id ? id.spiffe_id : '', 'id mono', id && id.serial ? 'serial ' + id.serial : null),
        expiry);
    }) : [emptyRow(6, 'no running pods')]));

    fillEdgesTable(this.inboundTable, w.inbound_edges, 'source');
    fillEdgesTable(this.outboundTable, w.outbound_edges, 'target');

    const rate = (x) => (isNum(x) && x > 0 ? fmtRps(x) + ' rps' : 'none');
    this.policyBox.replaceChildren(el('dl', { class: 'kv' },
      el('dt', { text: 'Default policy' }), el('dd', { id: 'default-policy', text: w.default_policy || '–' }),
      el('dt', { text: 'Rate limit' }), el('dd', { id: 'rate-limit', text: rate(w.rate_limit_rps) }),
      el('dt', { text: 'Rate limit per client' }), el('dd', { id: 'rate-limit-per-client', text: rate(w.rate_limit_per_client_rps) }),
    ));
    const pols = (w.policies || []).filter(Boolean);
    this.policiesTable.tBodies[0].replaceChildren(...(pols.length ? pols.map((p) => el('tr', { 'data-policy': p.name },
      td('name', p.name, 'id'),
      td('port', p.port ? String(p.port) : 'all'),
      el('td', { 'data-col': 'clients', class: 'id mono' }, (p.clients || []).map((c, i) => [i ? el('br') : null, c])),
      el('td', { 'data-col': 'paths', class: 'id mono' }, (p.path_prefixes || []).length
        ? p.path_prefixes.map((c, i) => [i ? el('br') : null, c]) : 'all paths'),
    )) : [emptyRow(4, 'none')]));

    const routes = (w.routes || []).filter(Boolean);
    if (routes.length === 0) {
      this.routesBox.replaceChildren(el('p', { class: 'muted', text: 'No HTTPRoute shapes traffic to this workload.' }));
    } else {
      this.routesBox.replaceChildren(...routes.map((rt) => {
        const t = table(null, [{ label: 'Backend' }, { label: 'Workloads' }, { label: 'Weight', cls: 'num' }, { label: 'Percent', cls: 'num' }]);
        t.tBodies[0].replaceChildren(...(rt.backends || []).filter(Boolean).map((b) => el('tr', { 'data-split-id': b.id },
          td('backend', b.backend, 'id'),
          td('targets', (b.targets || []).join(', '), 'id'),
          td('weight', String(b.weight), 'num'),
          td('percent', fmtPercent(b.percent), 'num'))));
        return el('section', { class: 'panel route', 'data-route': rt.name },
          el('h3', null, 'HTTPRoute ', el('span', { class: 'mono', text: rt.name })),
          el('p', { class: 'muted small', text: 'parents: ' + ((rt.parents || []).join(', ') || '–') }),
          t);
      }));
    }
  }

  destroy() {
    this.destroyed = true;
    this.poll.stop();
    if (this.abort) this.abort.abort();
    this.tap.stop();
    window.removeEventListener('resize', this.onResize);
    Object.values(this.charts).forEach((c) => c.destroy());
  }
}
