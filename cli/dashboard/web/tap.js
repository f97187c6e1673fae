// meshctl dashboard: the live tap of a workload (server-sent events).

import { el, table, td } from './dom.js';
import { apiURL, clearError, showError } from './api.js';
import { fmtClock, fmtMsNum, isNum, parseJSON } from './format.js';

const TAP_MAX_ROWS = 500;

const STATUS_FILTERS = [
  ['all', 'all'], ['2xx', '2xx'], ['3xx', '3xx'], ['4xx', '4xx'], ['5xx', '5xx'],
  ['err', '4xx + 5xx + failed'], ['failed', 'failed (no status)'], ['pending', 'in flight'],
];
const METHODS = ['', 'GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'HEAD', 'OPTIONS'];

export class Tap {
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
