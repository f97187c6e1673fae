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

// ---------------------------------------------------------------- API

export class APIError extends Error {
  constructor(msg, status) { super(msg); this.status = status; }
}

// api GETs a JSON endpoint; a non-2xx answer throws its {"error"} text.
export async function api(path, params, signal) {
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
