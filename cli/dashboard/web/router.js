// meshctl dashboard: the hash routes, the header (namespace picker,
// filter) and switching pages.

import { $, el } from './dom.js';
import { clearError } from './api.js';
import { app } from './state.js';

// The page classes by route name: {topology, workload, identity, health},
// set by main.js (so that the pages can import this module's links).
let pages = {};

export function setPages(p) { pages = p; }

// parseRoute: #/topology?namespace=demo&filter=x, #/workload/NS/NAME,
// #/identity, #/health.
export function parseRoute() {
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

export function topologyHash(ns, filter) {
  const q = new URLSearchParams();
  q.set('namespace', ns);
  if (filter) q.set('filter', filter);
  return '#/topology?' + q.toString();
}

export function workloadHash(ns, name) {
  return '#/workload/' + encodeURIComponent(ns) + '/' + encodeURIComponent(name);
}

// The last topology query, so the nav link and the picker keep it.
const query = { namespace: null, filter: '' };

function currentNamespace() { return query.namespace === null ? defaultNamespace() : query.namespace; }

export function route() {
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
  const Page = pages[r.page] || pages.topology;
  app.page = new Page(main, r);
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

export function fillNamespaces(list) {
  const sel = $('ns-select');
  const keep = currentNamespace();
  const names = new Set(list.filter((n) => typeof n === 'string' && n !== ''));
  if (keep) names.add(keep);
  if (app.config.namespace) names.add(app.config.namespace);
  sel.replaceChildren(el('option', { value: '', text: 'All namespaces' }),
    ...[...names].sort().map((n) => el('option', { value: n, text: n })));
  sel.value = keep;
}

export function setupHeader() {
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
}
