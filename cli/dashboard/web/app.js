// meshctl dashboard: the browser side. Plain JS, no framework, no build.
//
// Everything the API returns comes from the cluster or from clients'
// requests and is treated as hostile: the DOM is built with createElement
// and textContent only (never innerHTML), and the graph's labels are
// canvas text.
'use strict';

(() => {
  const hook = { cy: null, ready: 0, lastGraph: null };
  window.meshctlDashboard = hook;

  const WORKLOAD_KINDS = new Set(['deployment', 'statefulset', 'daemonset', 'job', 'pod']);
  const COLORS = { ok: '#2e9d5b', warn: '#d99a00', fail: '#d64541', idle: '#9aa0a6', split: '#7057c8' };
  const TAP_MAX_ROWS = 500;

  const app = {
    config: { namespace: '', all_namespaces: true, refresh_s: 5, version: '' },
    namespaces: [],
    page: null, // the current page object: {name, update(route), destroy()}
  };

  // ---------------------------------------------------------------- DOM

  // el builds an element: attrs are attributes (class, data-*, title, href…),
  // plus `text` for textContent and `on<event>` for listeners; children are
  // nodes or strings (text nodes), null/false are skipped.
  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    if (attrs) {
      for (const [k, v] of Object.entries(attrs)) {
        if (v === undefined || v === null || v === false) continue;
        if (k === 'text') e.textContent = String(v);
        else if (k === 'class') e.className = v;
        else if (k.startsWith('on') && typeof v === 'function') e.addEventListener(k.slice(2), v);
        else e.setAttribute(k, v === true ? '' : String(v));
      }
    }
    append(e, children);
    return e;
  }

  function append(parent, children) {
    for (const c of children) {
      if (c === undefined || c === null || c === false) continue;
      if (Array.isArray(c)) append(parent, c);
      else parent.appendChild(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return parent;
  }

  function $(id) { return document.getElementById(id); }

  // table builds a <table class="data"> with a header row; cols are
  // {label, cls} (cls for th).
  function table(id, cols) {
    const thead = el('thead', null, el('tr', null, cols.map((c) => el('th', { class: c.cls, text: c.label }))));
    return el('table', { class: 'data', id }, thead, el('tbody'));
  }

  function emptyRow(cols, text) {
    return el('tr', { class: 'empty' }, el('td', { colspan: cols, text }));
  }

  function td(col, text, cls, title) {
    return el('td', { 'data-col': col, class: cls, title, text: text === undefined || text === null ? '' : text });
  }

  function yesNo(b) { return b ? '✔' : '×'; }

  // ---------------------------------------------------------------- banner

  const bannerErrors = new Map(); // source -> message

  function showError(source, msg) {
    bannerErrors.set(source, String(msg));
    renderBanner();
  }

  function clearError(source) {
    if (bannerErrors.delete(source)) renderBanner();
  }

  function renderBanner() {
    const list = $('error-list');
    list.replaceChildren(...[...bannerErrors.values()].map((m) => el('li', { text: m })));
    $('error-banner').hidden = bannerErrors.size === 0;
  }

  // ---------------------------------------------------------------- API

  class APIError extends Error {
    constructor(msg, status) { super(msg); this.status = status; }
  }

  // api GETs a JSON endpoint; a non-2xx answer throws its {"error"} text.
  async function api(path, params, signal) {
    const url = apiURL(path, params);
    let resp;
    try {
      resp = await fetch(url, { signal, headers: { Accept: 'application/json' }, cache: 'no-store' });
    } catch (e) {
      if (e.name === 'AbortError') throw e;
      throw new APIError(`${path}: the dashboard server did not answer (${e.message})`, 0);
    }
    const text = await resp.text();
    let body = null;
    try { body = text ? JSON.parse(text) : null; } catch (_) { body = null; }
    if (!resp.ok) {
      const msg = body && typeof body.error === 'string' ? body.error : (text.trim().slice(0, 300) || resp.statusText);
      throw new APIError(`${path}: ${resp.status} ${msg}`, resp.status);
    }
    if (body === null && text) throw new APIError(`${path}: the answer is not JSON`, resp.status);
    return body;
  }

  // apiURL is a relative URL (the dashboard may be served under a prefix).
  function apiURL(path, params) {
    const q = new URLSearchParams();
    if (params) {
      for (const [k, v] of Object.entries(params)) {
        if (v === undefined || v === null) continue;
        q.set(k, v);
      }
    }
    const qs = q.toString();
    return 'api/' + path + (qs ? '?' + qs : '');
  }

  // ---------------------------------------------------------------- formats

  function isNum(x) { return typeof x === 'number' && Number.isFinite(x); }

  function health(sr) {
    if (!isNum(sr)) return 'idle';
    if (sr >= 0.99) return 'ok';
    if (sr >= 0.95) return 'warn';
    return 'fail';
  }

  function fmtRps(x) {
    if (!isNum(x)) return '–';
    if (x === 0) return '0';
    if (x >= 100) return x.toFixed(0);
    if (x >= 1) return x.toFixed(1);
    return x.toFixed(2);
  }

  // fmtSuccess: two decimals, for tables ("99.50%").
  function fmtSuccess(sr) { return isNum(sr) ? (sr * 100).toFixed(2) + '%' : '–'; }

  // fmtSuccessShort: for graph labels ("99.5%", "100%").
  function fmtSuccessShort(sr) {
    if (!isNum(sr)) return '–';
    const p = Math.round(sr * 1000) / 10;
    return (Number.isInteger(p) ? p.toFixed(0) : p.toFixed(1)) + '%';
  }

  function fmtMsNum(ms) {
    if (!isNum(ms)) return '–';
    if (ms >= 10000) return (ms / 1000).toFixed(0) + 's';
    return String(Number(ms.toPrecision(3))) + 'ms';
  }

  // fmtBound: latencies are histogram bucket upper bounds.
  function fmtBound(ms) { return isNum(ms) ? '≤' + fmtMsNum(ms) : '–'; }

  // fmtPercent: a split's percent, 0 decimals or 1 if needed.
  function fmtPercent(p) {
    if (!isNum(p)) return '–';
    const r = Math.round(p * 10) / 10;
    return (Number.isInteger(r) ? r.toFixed(0) : r.toFixed(1)) + '%';
  }

  function parseTime(t) {
    if (!t) return null;
    const d = new Date(t);
    return Number.isNaN(d.getTime()) || d.getUTCFullYear() <= 1 ? null : d;
  }

  function fmtDuration(sec) {
    sec = Math.abs(sec);
    if (Math.round(sec) < 60) return Math.round(sec) + 's';
    if (Math.round(sec / 60) < 60) return Math.round(sec / 60) + 'm';
    if (Math.round(sec / 3600) < 48) return Math.round(sec / 3600) + 'h';
    return Math.round(sec / 86400) + 'd';
  }

  // fmtRelative: "in 17h" or "3d ago".
  function fmtRelative(t) {
    const d = parseTime(t);
    if (!d) return '–';
    const s = (d.getTime() - Date.now()) / 1000;
    return s >= 0 ? 'in ' + fmtDuration(s) : fmtDuration(s) + ' ago';
  }

  function fmtDateTime(t) {
    const d = parseTime(t);
    return d ? d.toISOString().replace('T', ' ').replace(/\.\d+Z$/, 'Z') : '–';
  }

  function fmtClock(t) {
    const d = parseTime(t);
    return d ? d.toLocaleTimeString([], { hour12: false }) + '.' + String(d.getMilliseconds()).padStart(3, '0') : '–';
  }

  function shortFP(fp) {
    if (!fp) return '–';
    return fp.length > 16 ? fp.slice(0, 16) + '…' : fp;
  }

  function truncate(s, n) {
    s = String(s === undefined || s === null ? '' : s);
    return s.length > n ? s.slice(0, n - 1) + '…' : s;
  }

  // ---------------------------------------------------------------- routing

  // parseRoute: #/topology?namespace=demo&filter=x, #/workload/NS/NAME,
  // #/identity, #/health.
  function parseRoute() {
    let h = location.hash.replace(/^#/, '');
    if (!h.startsWith('/')) h = '/' + h;
    const qi = h.indexOf('?');
    const path = qi >= 0 ? h.slice(0, qi) : h;
    const params = new URLSearchParams(qi >= 0 ? h.slice(qi + 1) : '');
    const parts = path.split('/').filter((p) => p !== '').map((p) => {
      try { return decodeURIComponent(p); } catch (_) { return p; }
    });
    const page = parts[0] || 'topology';
    if (page === 'workload' && parts.length >= 3) {
      return { page, namespace: parts[1], name: parts.slice(2).join('/'), params };
    }
    if (page === 'identity' || page === 'health') return { page, params };
    return {
      page: 'topology',
      namespace: params.has('namespace') ? params.get('namespace') : defaultNamespace(),
      filter: params.get('filter') || '',
      params,
    };
  }

  function defaultNamespace() {
    return app.config.all_namespaces ? '' : (app.config.namespace || '');
  }

  function topologyHash(ns, filter) {
    const q = new URLSearchParams();
    q.set('namespace', ns);
    if (filter) q.set('filter', filter);
    return '#/topology?' + q.toString();
  }

  function workloadHash(ns, name) {
    return '#/workload/' + encodeURIComponent(ns) + '/' + encodeURIComponent(name);
  }

  // The last topology query, so the nav link and the picker keep it.
  const query = { namespace: null, filter: '' };

  function currentNamespace() { return query.namespace === null ? defaultNamespace() : query.namespace; }

  function route() {
    const r = parseRoute();
    if (r.page === 'topology') {
      query.namespace = r.namespace;
      query.filter = r.filter;
    } else if (r.page === 'workload' && query.namespace === null) {
      query.namespace = r.namespace;
    }
    syncHeader(r);
    if (app.page && app.page.name === r.page && app.page.update) {
      app.page.update(r);
      return;
    }
    if (app.page) {
      try { app.page.destroy(); } catch (e) { console.error(e); }
    }
    app.page = null;
    for (const k of ['graph', 'workload', 'identity', 'health', 'tap']) clearError(k);
    const main = $('main');
    main.replaceChildren();
    switch (r.page) {
      case 'workload': app.page = new WorkloadPage(main, r); break;
      case 'identity': app.page = new IdentityPage(main); break;
      case 'health': app.page = new HealthPage(main); break;
      default: app.page = new TopologyPage(main, r); break;
    }
  }

  function syncHeader(r) {
    for (const a of document.querySelectorAll('header nav a')) {
      a.classList.toggle('active', a.dataset.page === r.page);
    }
    $('nav-topology').setAttribute('href', topologyHash(currentNamespace(), query.filter));
    const sel = $('ns-select');
    const ns = currentNamespace();
    ensureNamespaceOption(ns);
    sel.value = ns;
    const fi = $('filter-input');
    if (document.activeElement !== fi) fi.value = query.filter;
  }

  function ensureNamespaceOption(ns) {
    const sel = $('ns-select');
    if (ns === '' || [...sel.options].some((o) => o.value === ns)) return;
    sel.appendChild(el('option', { value: ns, text: ns }));
  }

  function fillNamespaces(list) {
    const sel = $('ns-select');
    const keep = currentNamespace();
    const names = new Set(list.filter((n) => typeof n === 'string' && n !== ''));
    if (keep) names.add(keep);
    if (app.config.namespace) names.add(app.config.namespace);
    sel.replaceChildren(el('option', { value: '', text: 'All namespaces' }),
      ...[...names].sort().map((n) => el('option', { value: n, text: n })));
    sel.value = keep;
  }

  function setupHeader() {
    $('ns-select').addEventListener('change', (ev) => {
      location.hash = topologyHash(ev.target.value, query.filter);
    });
    let timer = null;
    const fi = $('filter-input');
    const apply = () => {
      clearTimeout(timer);
      timer = null;
      const f = fi.value.trim();
      const r = parseRoute();
      if (r.page === 'topology' && f === query.filter) return;
      const h = topologyHash(currentNamespace(), f);
      if (r.page === 'topology') history.replaceState(null, '', h);
      else history.pushState(null, '', h);
      route();
    };
    fi.addEventListener('input', () => {
      clearTimeout(timer);
      timer = setTimeout(apply, 400);
    });
    fi.addEventListener('keydown', (ev) => { if (ev.key === 'Enter') apply(); });
    $('error-dismiss').addEventListener('click', () => {
      bannerErrors.clear();
      renderBanner();
    });
  }

  // poller calls fn now and every refresh_s seconds, never two at once.
  function poller(fn) {
    let busy = false;
    let stopped = false;
    const tick = async () => {
      if (busy || stopped) return;
      busy = true;
      try { await fn(); } catch (e) { if (e.name !== 'AbortError') console.error(e); } finally { busy = false; }
    };
    const period = Math.max(1, Number(app.config.refresh_s) || 5) * 1000;
    const id = setInterval(tick, period);
    tick();
    return {
      now: tick,
      stop() { stopped = true; clearInterval(id); },
    };
  }

  function warningsBox(id) {
    const list = el('ul');
    const summary = el('summary');
    const box = el('details', { class: 'warnings', id, hidden: true }, summary, list);
    return {
      node: box,
      set(items) {
        items = (items || []).filter((s) => s !== null && s !== undefined && s !== '');
        box.hidden = items.length === 0;
        summary.textContent = items.length === 1 ? '1 warning' : items.length + ' warnings';
        list.replaceChildren(...items.map((s) => el('li', { text: s })));
      },
    };
  }

  // ---------------------------------------------------------------- topology

  const CY_STYLE = [
    {
      selector: 'node',
      style: {
        shape: 'round-rectangle',
        width: 'data(w)',
        height: 'data(h)',
        label: 'data(label)',
        'text-wrap': 'wrap',
        'text-valign': 'center',
        'text-halign': 'center',
        'font-size': 12,
        color: '#1f2328',
        'background-color': '#ffffff',
        'border-width': 3,
        'border-color': COLORS.idle,
      },
    },
    { selector: 'node[health = "ok"]', style: { 'border-color': COLORS.ok, 'background-color': '#eaf6ef' } },
    { selector: 'node[health = "warn"]', style: { 'border-color': COLORS.warn, 'background-color': '#fdf5e1' } },
    { selector: 'node[health = "fail"]', style: { 'border-color': COLORS.fail, 'background-color': '#fceceb' } },
    { selector: 'node[health = "idle"]', style: { 'border-color': COLORS.idle, 'background-color': '#f3f4f6' } },
    { selector: 'node[kind = "unmeshed"], node[kind = "external"]', style: { 'border-style': 'dashed', shape: 'rectangle' } },
    { selector: 'node[kind = "service"]', style: { shape: 'hexagon', 'border-color': COLORS.split, 'background-color': '#f0ecfb' } },
    {
      selector: 'edge',
      style: {
        'curve-style': 'bezier',
        width: 2,
        'line-color': COLORS.idle,
        'target-arrow-color': COLORS.idle,
        'target-arrow-shape': 'triangle',
        'arrow-scale': 1.1,
        label: 'data(label)',
        'font-size': 10,
        color: '#3c4657',
        'text-background-color': '#ffffff',
        'text-background-opacity': 0.85,
        'text-background-padding': 2,
      },
    },
    { selector: 'edge[health = "ok"]', style: { 'line-color': COLORS.ok, 'target-arrow-color': COLORS.ok } },
    { selector: 'edge[health = "warn"]', style: { 'line-color': COLORS.warn, 'target-arrow-color': COLORS.warn } },
    { selector: 'edge[health = "fail"]', style: { 'line-color': COLORS.fail, 'target-arrow-color': COLORS.fail, width: 3 } },
    { selector: 'edge[?split]', style: { 'line-style': 'dashed', 'line-color': COLORS.split, 'target-arrow-color': COLORS.split, color: COLORS.split, width: 1.5 } },
    { selector: ':selected', style: { 'overlay-color': '#2f6fde', 'overlay-opacity': 0.15 } },
  ];

  function edgeLabel(e) {
    const lock = e.secured ? '🔒 ' : '';
    if (!isNum(e.success_rate)) return lock + fmtRps(e.rps) + ' rps · no requests';
    let s = lock + fmtRps(e.rps) + ' rps · ' + fmtSuccessShort(e.success_rate);
    if (isNum(e.p99_ms)) s += ' · p99 ' + fmtBound(e.p99_ms);
    return s;
  }

  function splitLabel(s) { return 'weight ' + s.weight + ' (' + fmtPercent(s.percent) + ')'; }

  // graphElements turns a Graph into cytoscape element definitions (nodes
  // first) and the problems found (edges to unknown nodes).
  function graphElements(g, allNamespaces) {
    const defs = [];
    const problems = [];
    const nodeIDs = new Set();
    for (const n of g.nodes || []) {
      if (!n || typeof n.id !== 'string' || nodeIDs.has(n.id)) continue;
      nodeIDs.add(n.id);
      const name = truncate(n.name || n.id, 48);
      const twoLines = allNamespaces && n.namespace;
      const label = twoLines ? name + '\n' + truncate(n.namespace, 48) : name;
      const longest = Math.max(...label.split('\n').map((l) => l.length));
      const inbound = n.inbound || {};
      defs.push({
        group: 'nodes',
        classes: WORKLOAD_KINDS.has(n.kind) ? 'workload' : '',
        data: {
          id: n.id,
          kind: n.kind,
          namespace: n.namespace || '',
          name: n.name || '',
          health: health(inbound.success_rate),
          label,
          w: Math.max(70, Math.min(380, longest * 7.2 + 26)) + (n.kind === 'service' ? 30 : 0),
          h: twoLines ? 46 : 34,
        },
      });
    }
    const ids = new Set(nodeIDs);
    for (const e of g.edges || []) {
      if (!e || typeof e.id !== 'string' || ids.has(e.id)) continue;
      if (!nodeIDs.has(e.source) || !nodeIDs.has(e.target)) {
        problems.push(`edge ${e.id} not drawn: node ${nodeIDs.has(e.source) ? e.target : e.source} is not in the graph`);
        continue;
      }
      ids.add(e.id);
      defs.push({
        group: 'edges',
        data: {
          id: e.id,
          source: e.source,
          target: e.target,
          secured: !!e.secured,
          health: health(e.success_rate),
          label: edgeLabel(e),
        },
      });
    }
    for (const s of g.splits || []) {
      if (!s) continue;
      for (const t of s.targets || []) {
        const id = 'split:' + s.id + '→' + t;
        if (ids.has(id)) continue;
        if (!nodeIDs.has(s.service) || !nodeIDs.has(t)) {
          problems.push(`split ${s.id} to ${t} not drawn: node ${nodeIDs.has(s.service) ? t : s.service} is not in the graph`);
          continue;
        }
        ids.add(id);
        defs.push({
          group: 'edges',
          data: {
            id,
            source: s.service,
            target: t,
            split: true,
            splitId: s.id,
            secured: false,
            health: 'idle',
            label: splitLabel(s),
          },
        });
      }
    }
    return { defs, problems };
  }

  class TopologyPage {
    constructor(main, r) {
      this.name = 'topology';
      this.route = r;
      this.gen = 0; // query generation: answers to an older query are dropped
      this.needFit = true;
      this.abort = null;

      this.exportJSON = el('a', { target: '_blank', rel: 'noopener', text: 'JSON' });
      this.exportDOT = el('a', { target: '_blank', rel: 'noopener', text: 'DOT' });
      this.status = el('span', { class: 'muted small', id: 'graph-status' });
      this.warnings = warningsBox('graph-warnings');
      this.empty = el('div', { class: 'graph-empty', hidden: true });
      this.cyDiv = el('div', { id: 'cy' });
      this.edgesTable = table('edges-table', [
        { label: 'Source' }, { label: 'Target' }, { label: 'RPS', cls: 'num' },
        { label: 'Success', cls: 'num' }, { label: 'p99', cls: 'num' }, { label: 'Secured' },
      ]);
      this.splitsTable = table('splits-table', [
        { label: 'Route' }, { label: 'Service' }, { label: 'Backend' }, { label: 'Targets' },
        { label: 'Weight', cls: 'num' }, { label: 'Percent', cls: 'num' },
      ]);
      this.splitsSection = el('section', { id: 'splits-section' }, el('h2', { text: 'Traffic splits' }), this.splitsTable);

      append(main, [
        el('div', { class: 'toolbar' },
          el('span', { class: 'legend' },
            el('span', null, el('span', { class: 'sw ok' }), 'success ≥ 99%'),
            el('span', null, el('span', { class: 'sw warn' }), '≥ 95%'),
            el('span', null, el('span', { class: 'sw fail' }), 'below'),
            el('span', null, el('span', { class: 'sw idle' }), 'no traffic'),
            el('span', null, el('span', { class: 'sw split' }), 'split (dashed)'),
            el('span', null, '🔒 mTLS')),
          el('span', { class: 'spacer' }),
          this.status,
          el('button', { class: 'btn', type: 'button', text: 'Re-layout', onclick: () => this.layout(true) }),
          el('span', { class: 'small' }, 'Export: ', this.exportJSON, ' · ', this.exportDOT)),
        this.warnings.node,
        el('div', { class: 'graph-wrap' }, this.cyDiv, this.empty),
        el('h2', { text: 'Edges' }),
        this.edgesTable,
        this.splitsSection,
      ]);

      this.cy = null;
      if (typeof window.cytoscape !== 'function') {
        showError('graph', 'the graph library (vendor/cytoscape.min.js) did not load');
      } else {
        this.cy = window.cytoscape({
          container: this.cyDiv,
          style: CY_STYLE,
          elements: [],
          minZoom: 0.1,
          maxZoom: 3,
          boxSelectionEnabled: false,
        });
        this.cy.on('tap', 'node', (ev) => {
          const d = ev.target.data();
          if (WORKLOAD_KINDS.has(d.kind) && d.namespace) location.hash = workloadHash(d.namespace, d.name);
        });
        this.cy.on('mouseover', 'node.workload', () => { this.cyDiv.style.cursor = 'pointer'; });
        this.cy.on('mouseout', 'node', () => { this.cyDiv.style.cursor = ''; });
        hook.cy = this.cy;
        this.onResize = () => this.cy && this.cy.resize();
        window.addEventListener('resize', this.onResize);
      }
      this.setQuery(r);
      this.poll = poller(() => this.refresh());
    }

    setQuery(r) {
      this.route = r;
      const params = { namespace: r.namespace };
      if (r.filter) params.filter = r.filter;
      this.exportJSON.href = apiURL('graph', params);
      this.exportDOT.href = apiURL('graph', Object.assign({}, params, { format: 'dot' }));
    }

    update(r) {
      if (r.namespace === this.route.namespace && r.filter === this.route.filter) return;
      this.setQuery(r);
      this.gen++;
      this.needFit = true;
      if (this.abort) this.abort.abort();
      this.status.textContent = 'loading…';
      // A refresh already under way is aborted; ask again at once.
      setTimeout(() => this.poll.now(), 0);
    }

    async refresh() {
      const gen = this.gen;
      const r = this.route;
      const params = { namespace: r.namespace };
      if (r.filter) params.filter = r.filter;
      this.abort = new AbortController();
      let g;
      try {
        g = await api('graph', params, this.abort.signal);
      } catch (e) {
        if (e.name === 'AbortError' || gen !== this.gen) return;
        showError('graph', e.message);
        this.status.textContent = 'update failed';
        if (this.needFit) {
          // The new query has no answer: do not show the old one's graph.
          if (this.cy) this.cy.elements().remove();
          this.edgesTable.tBodies[0].replaceChildren();
          this.splitsSection.hidden = true;
          this.warnings.set([]);
        }
        return;
      }
      if (gen !== this.gen || this.destroyed) return;
      clearError('graph');
      this.render(g || {}, r);
    }

    render(g, r) {
      hook.lastGraph = g;
      const allNS = r.namespace === '';
      const { defs, problems } = graphElements(g, allNS);
      let changed = false;
      if (this.cy) changed = this.apply(defs);
      if (this.cy && (changed || this.needFit)) this.layout(this.needFit);
      this.needFit = false;

      this.warnings.set([...(g.errors || []), ...problems]);
      const nNodes = (g.nodes || []).length;
      this.empty.hidden = nNodes > 0;
      this.empty.textContent = r.filter
        ? `No workload matches “${r.filter}”.`
        : `No workloads${allNS ? '' : ' in namespace ' + r.namespace}.`;
      const t = parseTime(g.time);
      this.status.textContent = (t ? 'updated ' + t.toLocaleTimeString([], { hour12: false }) : '') +
        (isNum(g.interval_s) && g.interval_s > 0 ? ` · rates over ${Math.round(g.interval_s)}s` : ' · rates after the second scrape');
      this.renderEdges(g);
      this.renderSplits(g);
      hook.ready++;
    }

    // apply updates the graph in place; true when the set of elements changed.
    apply(defs) {
      const cy = this.cy;
      const want = new Map(defs.map((d) => [d.data.id, d]));
      let changed = false;
      const added = [];
      cy.batch(() => {
        const gone = cy.elements().filter((e) => {
          const d = want.get(e.id());
          if (!d) return true;
          if (d.group !== e.group()) return true;
          if (d.group === 'edges' && (e.data('source') !== d.data.source || e.data('target') !== d.data.target)) return true;
          return false;
        });
        if (gone.length > 0) {
          changed = true;
          cy.remove(gone);
        }
        const toAdd = [];
        for (const d of defs) {
          const e = cy.getElementById(d.data.id);
          if (e.nonempty()) {
            e.data(d.data);
            if (d.group === 'nodes') {
              e.classes(d.classes || '');
            }
          } else {
            toAdd.push(d);
          }
        }
        if (toAdd.length > 0) {
          changed = true;
          added.push(...toAdd.filter((d) => d.group === 'nodes').map((d) => d.data.id));
          cy.add(toAdd);
        }
      });
      this.added = added;
      return changed;
    }

    // layout: a full dagre layout on the first render, a new query or the
    // button; otherwise existing nodes stay where they are and new ones are
    // placed next to a neighbour.
    layout(full) {
      const cy = this.cy;
      if (!cy || cy.nodes().length === 0) return;
      const added = new Set(this.added || []);
      const placed = cy.nodes().filter((n) => !added.has(n.id()));
      if (full || placed.length === 0 || added.size > placed.length) {
        cy.layout({
          name: 'dagre',
          rankDir: 'LR',
          nodeSep: 40,
          rankSep: 140,
          edgeSep: 12,
          fit: true,
          padding: 30,
          animate: false,
        }).run();
        if (cy.zoom() > 1.4) { cy.zoom(1.4); cy.center(); }
        this.added = [];
        return;
      }
      for (const id of added) this.place(cy.getElementById(id), added);
      this.added = [];
    }

    place(node, pending) {
      const cy = this.cy;
      let x;
      let y;
      const inc = node.incomers('node').filter((n) => !pending.has(n.id()));
      const out = node.outgoers('node').filter((n) => !pending.has(n.id()));
      if (inc.length > 0) {
        x = inc[0].position('x') + 220;
        y = inc[0].position('y');
      } else if (out.length > 0) {
        x = out[0].position('x') - 220;
        y = out[0].position('y');
      } else {
        const bb = cy.nodes().filter((n) => !pending.has(n.id())).boundingBox();
        x = bb.x1 + 60;
        y = bb.y2 + 60;
      }
      // Move down until no placed node is close.
      const others = cy.nodes().filter((n) => n !== node && !pending.has(n.id()));
      for (let i = 0; i < 50; i++) {
        const clash = others.some((o) => Math.abs(o.position('x') - x) < 120 && Math.abs(o.position('y') - y) < 55);
        if (!clash) break;
        y += 60;
      }
      node.position({ x, y });
      pending.delete(node.id());
    }

    nodeCell(col, id, g) {
      const cell = td(col, null, 'id');
      const n = (g.nodes || []).find((x) => x && x.id === id);
      if (n && WORKLOAD_KINDS.has(n.kind) && n.namespace) {
        cell.appendChild(el('a', { href: workloadHash(n.namespace, n.name), text: id }));
      } else {
        cell.textContent = id;
      }
      return cell;
    }

    renderEdges(g) {
      const tbody = this.edgesTable.tBodies[0];
      const edges = (g.edges || []).filter((e) => e && typeof e.id === 'string').slice()
        .sort((a, b) => (a.source + '\0' + a.target).localeCompare(b.source + '\0' + b.target));
      if (edges.length === 0) {
        tbody.replaceChildren(emptyRow(6, 'no traffic seen'));
        return;
      }
      tbody.replaceChildren(...edges.map((e) => el('tr', { 'data-edge-id': e.id },
        this.nodeCell('source', e.source, g),
        this.nodeCell('target', e.target, g),
        td('rps', fmtRps(e.rps), 'num'),
        td('success', fmtSuccess(e.success_rate), 'num h-' + health(e.success_rate)),
        td('p99', fmtBound(e.p99_ms), 'num'),
        td('secured', yesNo(e.secured), 'center ' + (e.secured ? 'yes' : 'no'),
          e.secured ? 'mutual TLS, both identities known' : 'not every request was mutual TLS with both identities known'),
      )));
    }

    renderSplits(g) {
      const splits = (g.splits || []).filter((s) => s && typeof s.id === 'string');
      this.splitsSection.hidden = splits.length === 0;
      this.splitsTable.tBodies[0].replaceChildren(...splits.map((s) => el('tr', { 'data-split-id': s.id },
        td('route', s.route, 'id'),
        td('service', s.service, 'id'),
        td('backend', s.backend, 'id'),
        td('targets', (s.targets || []).join(', '), 'id'),
        td('weight', String(s.weight), 'num'),
        td('percent', fmtPercent(s.percent), 'num'),
      )));
    }

    destroy() {
      this.destroyed = true;
      this.poll.stop();
      if (this.abort) this.abort.abort();
      if (this.onResize) window.removeEventListener('resize', this.onResize);
      if (this.cy) this.cy.destroy();
      if (hook.cy === this.cy) hook.cy = null;
    }
  }

  // ---------------------------------------------------------------- workload

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

  class Chart {
    constructor(container, title, series, yFmt) {
      this.container = container;
      this.series = series;
      this.yFmt = yFmt;
      this.plot = null;
      this.title = el('div', { class: 'title', text: title });
      this.nodata = el('div', { class: 'nodata', text: 'no data yet' });
      this.body = el('div');
      append(container, [this.title, this.nodata, this.body]);
    }

    set(data) {
      const has = data[0].length > 0;
      this.nodata.hidden = has;
      if (typeof window.uPlot !== 'function') {
        this.nodata.hidden = false;
        this.nodata.textContent = 'the chart library (vendor/uPlot.iife.min.js) did not load';
        return;
      }
      if (!this.plot) {
        if (!has) return;
        const fmt = this.yFmt;
        this.plot = new window.uPlot({
          width: this.width(),
          height: 170,
          cursor: { drag: { x: false, y: false } },
          scales: { x: { time: true } },
          series: [{}, ...this.series.map((s) => ({
            label: s.label,
            stroke: s.color,
            width: 1.6,
            spanGaps: false,
            points: { show: false },
            value: (u, v) => (v === null || v === undefined ? '–' : fmt(v)),
          }))],
          axes: [
            { space: 70, values: (u, vals) => vals.map((v) => new Date(v * 1000).toLocaleTimeString([], { hour12: false })) },
            { size: 56, values: (u, vals) => vals.map((v) => fmt(v)) },
          ],
        }, data, this.body);
      } else {
        this.plot.setData(data);
      }
    }

    width() { return Math.max(260, this.container.clientWidth - 14); }

    resize() { if (this.plot) this.plot.setSize({ width: this.width(), height: 170 }); }

    destroy() { if (this.plot) this.plot.destroy(); this.plot = null; }
  }

  function numOrNull(x) { return isNum(x) ? x : null; }

  class WorkloadPage {
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

  // ---------------------------------------------------------------- tap

  const STATUS_FILTERS = [
    ['all', 'all'], ['2xx', '2xx'], ['3xx', '3xx'], ['4xx', '4xx'], ['5xx', '5xx'],
    ['err', '4xx + 5xx + failed'], ['failed', 'failed (no status)'], ['pending', 'in flight'],
  ];
  const METHODS = ['', 'GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'HEAD', 'OPTIONS'];

  class Tap {
    constructor(ns, name) {
      this.ns = ns;
      this.name = name;
      this.records = []; // oldest first
      this.byKey = new Map();
      this.paused = false;
      this.skipped = 0;
      this.dropped = 0;
      this.es = null;

      this.pathInput = el('input', { type: 'text', id: 'tap-path', placeholder: '/prefix', spellcheck: 'false', autocomplete: 'off' });
      this.methodSelect = el('select', { id: 'tap-method' }, METHODS.map((m) => el('option', { value: m, text: m || 'any' })));
      this.statusSelect = el('select', { id: 'tap-status' }, STATUS_FILTERS.map(([v, l]) => el('option', { value: v, text: l })));
      this.pauseBtn = el('button', { class: 'btn', type: 'button', id: 'tap-pause', text: 'Pause' });
      this.clearBtn = el('button', { class: 'btn', type: 'button', id: 'tap-clear', text: 'Clear' });
      this.state = el('span', { class: 'muted small', id: 'tap-state' });
      this.messages = el('ul', { class: 'messages', id: 'tap-messages' });
      this.table = table('tap-table', [
        { label: 'Time' }, { label: 'Direction' }, { label: 'Method' }, { label: 'Authority' }, { label: 'Path' },
        { label: 'Status', cls: 'num' }, { label: 'Latency', cls: 'num' }, { label: 'Client identity' },
      ]);
      this.node = el('div', { id: 'tap' },
        el('div', { class: 'tap-controls' },
          el('label', null, 'Path prefix', this.pathInput),
          el('label', null, 'Method', this.methodSelect),
          el('label', null, 'Status', this.statusSelect),
          this.pauseBtn, this.clearBtn, this.state),
        this.messages,
        el('div', { class: 'tap-wrap' }, this.table));

      let t = null;
      this.pathInput.addEventListener('input', () => { clearTimeout(t); t = setTimeout(() => this.start(), 500); });
      this.pathInput.addEventListener('keydown', (ev) => { if (ev.key === 'Enter') { clearTimeout(t); this.start(); } });
      this.methodSelect.addEventListener('change', () => this.start());
      this.statusSelect.addEventListener('change', () => this.renderNow());
      this.pauseBtn.addEventListener('click', () => {
        this.paused = !this.paused;
        this.pauseBtn.textContent = this.paused ? 'Resume' : 'Pause';
        this.pauseBtn.classList.toggle('on', this.paused);
        if (!this.paused) this.skipped = 0;
        this.showState();
      });
      this.clearBtn.addEventListener('click', () => {
        this.records = [];
        this.byKey.clear();
        this.renderNow();
      });
      this.renderNow();
    }

    url() {
      const p = { namespace: this.ns, name: this.name };
      const path = this.pathInput.value.trim();
      if (path) p.path = path;
      if (this.methodSelect.value) p.method = this.methodSelect.value;
      return apiURL('tap', p);
    }

    start() {
      this.stop();
      this.stopped = false;
      // New server-side filters: the rows of the old ones go.
      this.records = [];
      this.byKey.clear();
      this.renderNow();
      this.messages.replaceChildren();
      if (typeof EventSource !== 'function') {
        this.setState('this browser has no EventSource');
        return;
      }
      const url = this.url();
      this.currentURL = url;
      const es = new EventSource(url);
      this.es = es;
      this.setState('connecting…');
      // Request IDs may start again on a new connection: the key has the
      // connection's number.
      es.onopen = () => {
        if (this.es !== es) return;
        this.conn = (this.conn || 0) + 1;
        clearError('tap');
        this.setState('streaming');
      };
      es.onmessage = (ev) => { if (this.es === es) this.onEvent(ev.data); };
      es.addEventListener('info', (ev) => {
        if (this.es !== es) return;
        const d = parseJSON(ev.data);
        this.message('info', d && d.message !== undefined ? String(d.message) : String(ev.data));
      });
      es.addEventListener('failure', (ev) => {
        if (this.es !== es) return;
        const d = parseJSON(ev.data);
        this.message('failure', d ? `${d.pod || '?'}: ${d.error || ''}` : String(ev.data));
      });
      es.onerror = () => {
        if (this.es !== es) return;
        if (es.readyState === EventSource.CLOSED) {
          this.setState('stopped');
          this.explainFailure(url);
        } else {
          this.setState('disconnected, reconnecting…');
        }
      };
    }

    // explainFailure: EventSource hides a refused stream's answer, so ask
    // once more with fetch to show the server's {"error"}.
    async explainFailure(url) {
      const ac = new AbortController();
      try {
        const resp = await fetch(url, { signal: ac.signal, cache: 'no-store' });
        if (!resp.ok) {
          const body = parseJSON(await resp.text());
          showError('tap', `tap: ${resp.status} ${body && body.error ? body.error : resp.statusText}`);
        } else {
          showError('tap', 'tap: the stream ended');
        }
      } catch (e) {
        showError('tap', 'tap: the dashboard server did not answer');
      } finally {
        ac.abort();
      }
    }

    stop() {
      this.stopped = true;
      if (this.es) this.es.close();
      this.es = null;
    }

    setState(s) { this.connState = s; this.showState(); }

    showState() {
      let s = this.connState || '';
      if (this.paused) s += ` · paused${this.skipped ? ` (${this.skipped} events not shown)` : ''}`;
      if (this.dropped) s += ` · ${this.dropped} events dropped by proxies`;
      this.state.textContent = s;
    }

    message(kind, text) {
      this.messages.appendChild(el('li', { class: kind === 'failure' ? 'error-text' : 'muted', text }));
      while (this.messages.children.length > 20) this.messages.firstChild.remove();
    }

    onEvent(data) {
      const ev = parseJSON(data);
      if (!ev || typeof ev !== 'object') return;
      if (ev.type === 'dropped') {
        this.dropped += Number(ev.count) || 0;
        this.showState();
        return;
      }
      if (this.paused) {
        this.skipped++;
        this.showState();
        return;
      }
      const key = String(this.conn || 0) + '\u0000' + (ev.pod || '') + '\u0000' + String(ev.id);
      let rec = this.byKey.get(key);
      if (ev.type === 'start') {
        if (!rec) {
          rec = { key, pod: ev.pod || '', namespace: ev.namespace || '', tr: null };
          this.byKey.set(key, rec);
          this.records.push(rec);
          while (this.records.length > TAP_MAX_ROWS) this.byKey.delete(this.records.shift().key);
        }
        Object.assign(rec, {
          ts: ev.ts, direction: ev.direction, method: ev.method, authority: ev.authority,
          path: ev.path, client: ev.client_id, server: ev.server_id,
        });
      } else if (ev.type === 'headers' || ev.type === 'end') {
        if (!rec) return; // its start came before we connected
        if (ev.type === 'end') rec.ended = true;
        if (ev.status !== undefined) rec.status = ev.status;
        if (ev.grpc_status !== undefined) rec.grpc = ev.grpc_status;
        if (isNum(ev.latency_ms)) rec.latency = ev.latency_ms;
        if (ev.bytes !== undefined) rec.bytes = ev.bytes;
      } else {
        return;
      }
      this.drawRow(rec);
      this.scheduleRender();
    }

    statusClass(rec) {
      if (!rec.ended && !rec.status) return 'pending';
      const s = Number(rec.status) || 0;
      if (s === 0) return 'failed';
      return Math.floor(s / 100) + 'xx';
    }

    matches(rec) {
      const f = this.statusSelect.value;
      const c = this.statusClass(rec);
      if (f === 'all') return true;
      if (f === 'err') return c === '4xx' || c === '5xx' || c === 'failed';
      return f === c;
    }

    drawRow(rec) {
      let statusText = '';
      const c = this.statusClass(rec);
      if (c === 'pending') statusText = '…';
      else if (c === 'failed') statusText = 'failed';
      else statusText = String(rec.status);
      if (rec.grpc !== undefined && rec.grpc !== '') statusText += ' grpc ' + rec.grpc;
      const cls = c === '5xx' || c === 'failed' ? 'num h-fail' : c === '4xx' ? 'num h-warn' : 'num';
      const lat = isNum(rec.latency) ? fmtMsNum(rec.latency) + (rec.ended ? '' : ' (headers)') : '';
      const tr = el('tr', { 'data-tap-key': rec.key, 'data-tap-pod': rec.pod },
        td('time', fmtClock(rec.ts), null, rec.pod ? 'pod ' + rec.pod : null),
        td('direction', rec.direction || ''),
        td('method', rec.method || ''),
        td('authority', rec.authority || '', 'mono'),
        td('path', rec.path || '', 'mono'),
        td('status', statusText, cls),
        td('latency', lat, 'num', isNum(rec.bytes) ? rec.bytes + ' bytes' : null),
        td('client', rec.client || '(none)', rec.client ? 'mono' : 'muted', rec.server ? 'server ' + rec.server : null));
      if (rec.tr && rec.tr.parentNode) rec.tr.replaceWith(tr);
      rec.tr = tr;
    }

    scheduleRender() {
      if (this.renderTimer) return;
      this.renderTimer = setTimeout(() => this.renderNow(), 100);
    }

    renderNow() {
      clearTimeout(this.renderTimer);
      this.renderTimer = null;
      const rows = [];
      for (let i = this.records.length - 1; i >= 0; i--) { // newest first
        const r = this.records[i];
        if (this.matches(r)) rows.push(r.tr);
      }
      const tbody = this.table.tBodies[0];
      if (rows.length === 0) {
        tbody.replaceChildren();
        this.table.classList.add('no-rows');
      } else {
        tbody.replaceChildren(...rows);
        this.table.classList.remove('no-rows');
      }
    }
  }

  function parseJSON(s) {
    try { return JSON.parse(s); } catch (_) { return null; }
  }

  // ---------------------------------------------------------------- identity

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

  class IdentityPage {
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

  // ---------------------------------------------------------------- health

  const HEALTH_SYMBOLS = { ok: '✔', warning: '‼', error: '×', skipped: '-' };

  class HealthPage {
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

  // ---------------------------------------------------------------- start

  async function start() {
    setupHeader();
    try {
      const cfg = await api('config');
      if (cfg && typeof cfg === 'object') Object.assign(app.config, cfg);
      clearError('config');
    } catch (e) {
      showError('config', e.message);
    }
    $('version').textContent = app.config.version ? 'v' + String(app.config.version).replace(/^v/, '') : '';
    try {
      const list = await api('namespaces');
      app.namespaces = Array.isArray(list) ? list : [];
      clearError('namespaces');
    } catch (e) {
      showError('namespaces', e.message);
    }
    fillNamespaces(app.namespaces);
    window.addEventListener('hashchange', route);
    route();
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
})();
