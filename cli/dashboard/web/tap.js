// meshctl dashboard: the live tap of a workload (server-sent events).

import { el, table, td } from './dom.js';
import { apiURL, authHeaders, clearError, showError } from './api.js';
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
    this.ac = null;

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
    this.connect(this.url());
  }

  // connect reads the stream of server-sent events with fetch (an
  // EventSource cannot send the token's header). Like an EventSource it
  // connects again 3 s after a stream ends or breaks; a refused stream
  // (401, 404, 429, 502) is shown and not asked again.
  async connect(url) {
    const ac = new AbortController();
    this.ac = ac;
    this.setState('connecting…');
    let resp;
    try {
      resp = await fetch(url, { signal: ac.signal, cache: 'no-store', headers: authHeaders({ Accept: 'text/event-stream' }) });
    } catch (e) {
      this.retry(url, ac);
      return;
    }
    if (this.ac !== ac) { ac.abort(); return; }
    if (!resp.ok || !resp.body) {
      const body = parseJSON(await resp.text().catch(() => ''));
      ac.abort();
      if (this.ac !== ac) return; // a newer stream started meanwhile
      showError('tap', `tap: ${resp.status} ${body && body.error ? body.error : resp.statusText}`);
      this.setState('stopped');
      this.ac = null;
      return;
    }
    // Request IDs may start again on a new connection: the key has the
    // connection's number.
    this.conn = (this.conn || 0) + 1;
    clearError('tap');
    this.setState('streaming');
    try {
      await readEvents(resp.body, (event, data) => { if (this.ac === ac) this.dispatch(event, data); });
    } catch (_) {
      /* broken, aborted, or an event too large: see below */
    } finally {
      ac.abort(); // the stream, whatever ended the reading, gives its slot back
    }
    this.retry(url, ac);
  }

  retry(url, ac) {
    if (this.ac !== ac || this.stopped) return;
    this.setState('disconnected, reconnecting…');
    this.retryTimer = setTimeout(() => { if (this.ac === ac && !this.stopped) this.connect(url); }, 3000);
  }

  dispatch(event, data) {
    if (event === 'info') {
      const d = parseJSON(data);
      this.message('info', d && d.message !== undefined ? String(d.message) : String(data));
    } else if (event === 'failure') {
      const d = parseJSON(data);
      this.message('failure', d ? `${d.pod || '?'}: ${d.error || ''}` : String(data));
    } else if (event === 'message') {
      this.onEvent(data);
    }
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    if (this.ac) this.ac.abort();
    this.ac = null;
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

// readEvents reads a text/event-stream body and calls on(event, data) for
// each event ("message" when it names none), as an EventSource would:
// lines end with LF, CR LF or CR; "data:" lines join with LF; a blank line
// ends an event; lines starting with ":" are comments.
export async function readEvents(body, on) {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buf = '';
  let event = '';
  let data = [];
  const line = (l) => {
    if (l === '') {
      if (data.length) on(event || 'message', data.join('\n'));
      event = '';
      data = [];
      return;
    }
    if (l.startsWith(':')) return;
    const ci = l.indexOf(':');
    const field = ci >= 0 ? l.slice(0, ci) : l;
    let value = ci >= 0 ? l.slice(ci + 1) : '';
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'event') event = value;
    else if (field === 'data') data.push(value);
  };
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return; // an event the stream's end cut short is not dispatched (as in an EventSource)
    buf += decoder.decode(value, { stream: true });
    for (;;) {
      const m = /\r\n|\r|\n/.exec(buf);
      // A CR at the end may be the first half of CR LF: wait for more.
      if (!m || (m[0] === '\r' && m.index === buf.length - 1)) break;
      line(buf.slice(0, m.index));
      buf = buf.slice(m.index + m[0].length);
    }
    if (buf.length > 1 << 20) {
      reader.cancel().catch(() => {});
      throw new Error('an event of over 1 MiB');
    }
  }
}
