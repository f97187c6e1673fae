// meshctl dashboard: numbers, times and names as text.

export function isNum(x) { return typeof x === 'number' && Number.isFinite(x); }

export function health(sr) {
  if (!isNum(sr)) return 'idle';
  if (sr >= 0.99) return 'ok';
  if (sr >= 0.95) return 'warn';
  return 'fail';
}

export function fmtRps(x) {
  if (!isNum(x)) return '–';
  if (x === 0) return '0';
  if (x >= 100) return x.toFixed(0);
  if (x >= 1) return x.toFixed(1);
  return x.toFixed(2);
}

// fmtSuccess: two decimals, for tables ("99.50%").
export function fmtSuccess(sr) { return isNum(sr) ? (sr * 100).toFixed(2) + '%' : '–'; }

// fmtSuccessShort: for graph labels ("99.5%", "100%").
export function fmtSuccessShort(sr) {
  if (!isNum(sr)) return '–';
  const p = Math.round(sr * 1000) / 10;
  return (Number.isInteger(p) ? p.toFixed(0) : p.toFixed(1)) + '%';
}

export function fmtMsNum(ms) {
  if (!isNum(ms)) return '–';
  if (ms >= 10000) return (ms / 1000).toFixed(0) + 's';
  return String(Number(ms.toPrecision(3))) + 'ms';
}

// fmtBound: latencies are histogram bucket upper bounds.
export function fmtBound(ms) { return isNum(ms) ? '≤' + fmtMsNum(ms) : '–'; }

// fmtPercent: a split's percent, 0 decimals or 1 if needed.
export function fmtPercent(p) {
  if (!isNum(p)) return '–';
  const r = Math.round(p * 10) / 10;
  return (Number.isInteger(r) ? r.toFixed(0) : r.toFixed(1)) + '%';
}

export function parseTime(t) {
  if (!t) return null;
  const d = new Date(t);
  return Number.isNaN(d.getTime()) || d.getUTCFullYear() <= 1 ? null : d;
}

export function fmtDuration(sec) {
  sec = Math.abs(sec);
  if (Math.round(sec) < 60) return Math.round(sec) + 's';
  if (Math.round(sec / 60) < 60) return Math.round(sec / 60) + 'm';
  if (Math.round(sec / 3600) < 48) return Math.round(sec / 3600) + 'h';
  return Math.round(sec / 86400) + 'd';
}

// fmtRelative: "in 17h" or "3d ago".
export function fmtRelative(t) {
  const d = parseTime(t);
  if (!d) return '–';
  const s = (d.getTime() - Date.now()) / 1000;
  return s >= 0 ? 'in ' + fmtDuration(s) : fmtDuration(s) + ' ago';
}

export function fmtDateTime(t) {
  const d = parseTime(t);
  return d ? d.toISOString().replace('T', ' ').replace(/\.\d+Z$/, 'Z') : '–';
}

export function fmtClock(t) {
  const d = parseTime(t);
  return d ? d.toLocaleTimeString([], { hour12: false }) + '.' + String(d.getMilliseconds()).padStart(3, '0') : '–';
}

export function shortFP(fp) {
  if (!fp) return '–';
  return fp.length > 16 ? fp.slice(0, 16) + '…' : fp;
}

export function truncate(s, n) {
  s = String(s === undefined || s === null ? '' : s);
  return s.length > n ? s.slice(0, n - 1) + '…' : s;
}

export function numOrNull(x) { return isNum(x) ? x : null; }

export function parseJSON(s) {
  try { return JSON.parse(s); } catch (_) { return null; }
}
