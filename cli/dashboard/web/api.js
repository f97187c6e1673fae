// meshctl dashboard: the API client, the errors banner and the poller.

import { $, el } from './dom.js';
import { app } from './state.js';

// ---------------------------------------------------------------- banner

const bannerErrors = new Map(); // source -> message

export function showError(source, msg) {
  bannerErrors.set(source, String(msg));
  renderBanner();
}

export function clearError(source) {
  if (bannerErrors.delete(source)) renderBanner();
}

function renderBanner() {
  const list = $('error-list');
  list.replaceChildren(...[...bannerErrors.values()].map((m) => el('li', { text: m })));
  $('error-banner').hidden = bannerErrors.size === 0;
}

export function clearAllErrors() {
  bannerErrors.clear();
  renderBanner();
}

export function setupBanner() {
  $('error-dismiss').addEventListener('click', clearAllErrors);
}

// ---------------------------------------------------------------- token

// The token the API wants arrives in the address's fragment
// (#/topology?token=…), which the browser never sends anywhere. It is kept
// in this tab's sessionStorage, which belongs to this origin alone (scheme,
// host and port: unlike a cookie, another server on another port of
// 127.0.0.1 never sees it), and is sent as "Authorization: Bearer".
const TOKEN_KEY = 'meshctl-dashboard-token';
let token = '';

// takeToken moves a token from the fragment to sessionStorage and takes it
// out of the address bar and the history. Called once, before routing.
export function takeToken() {
  const h = location.hash;
  const qi = h.indexOf('?');
  const params = new URLSearchParams(qi >= 0 ? h.slice(qi + 1) : h.replace(/^#/, ''));
  const given = params.get('token');
  if (given) {
    token = given;
    try { sessionStorage.setItem(TOKEN_KEY, given); } catch (_) { /* storage off: this page only */ }
    params.delete('token');
    const rest = params.toString();
    let route = qi >= 0 ? h.slice(0, qi) : '#/';
    if (route === '#' || route === '') route = '#/';
    history.replaceState(null, '', location.pathname + location.search + route + (rest ? '?' + rest : ''));
    return;
  }
  try { token = sessionStorage.getItem(TOKEN_KEY) || ''; } catch (_) { token = ''; }
}

// authHeaders are the headers that carry the token.
export function authHeaders(extra) {
  const h = Object.assign({}, extra);
  if (token) h.Authorization = 'Bearer ' + token;
  return h;
}

// ---------------------------------------------------------------- API

export class APIError extends Error {
  constructor(msg, status) { super(msg); this.status = status; }
}

// api GETs a JSON endpoint; a non-2xx answer throws its {"error"} text.
export async function api(path, params, signal) {
  const url = apiURL(path, params);
  let resp;
  try {
    resp = await fetch(url, { signal, headers: authHeaders({ Accept: 'application/json' }), cache: 'no-store' });
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

// download GETs an API path with the token and hands the answer to the
// browser as a file named filename.
export async function download(path, params, filename) {
  let resp;
  try {
    resp = await fetch(apiURL(path, params), { headers: authHeaders(), cache: 'no-store' });
  } catch (e) {
    throw new APIError(`${path}: the dashboard server did not answer (${e.message})`, 0);
  }
  if (!resp.ok) {
    let msg = resp.statusText;
    try { msg = JSON.parse(await resp.text()).error || msg; } catch (_) { /* not JSON */ }
    throw new APIError(`${path}: ${resp.status} ${msg}`, resp.status);
  }
  const url = URL.createObjectURL(await resp.blob());
  const a = el('a', { href: url, download: filename });
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60000);
}

// apiURL is a relative URL (the dashboard may be served under a prefix).
export function apiURL(path, params) {
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

// ---------------------------------------------------------------- poller

// poller calls fn now and every refresh_s seconds, never two at once.
export function poller(fn) {
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
