// meshctl dashboard: element helpers. Text is always text (textContent,
// text nodes), never markup.

// el builds an element: attrs are attributes (class, data-*, title, href…),
// plus `text` for textContent and `on<event>` for listeners; children are
// nodes or strings (text nodes), null/false are skipped.
export function el(tag, attrs, ...children) {
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

export function append(parent, children) {
  for (const c of children) {
    if (c === undefined || c === null || c === false) continue;
    if (Array.isArray(c)) append(parent, c);
    else parent.appendChild(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return parent;
}

export function $(id) { return document.getElementById(id); }

// table builds a <table class="data"> with a header row; cols are
// {label, cls} (cls for th).
export function table(id, cols) {
  const thead = el('thead', null, el('tr', null, cols.map((c) => el('th', { class: c.cls, text: c.label }))));
  return el('table', { class: 'data', id }, thead, el('tbody'));
}

export function emptyRow(cols, text) {
  return el('tr', { class: 'empty' }, el('td', { colspan: cols, text }));
}

export function td(col, text, cls, title) {
  return el('td', { 'data-col': col, class: cls, title, text: text === undefined || text === null ? '' : text });
}

export function yesNo(b) { return b ? '✔' : '×'; }

export function warningsBox(id) {
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
