// meshctl dashboard: the topology page (graph, edges and splits tables).

import { append, el, emptyRow, table, td, warningsBox, yesNo } from './dom.js';
import { api, clearError, download, poller, showError } from './api.js';
import { fmtBound, fmtPercent, fmtRps, fmtSuccess, health, isNum, parseTime } from './format.js';
import { CY_STYLE, graphElements } from './graph.js';
import { workloadHash } from './router.js';
import { hook, WORKLOAD_KINDS } from './state.js';

export class TopologyPage {
  constructor(main, r) {
    this.name = 'topology';
    this.route = r;
    this.gen = 0; // query generation: answers to an older query are dropped
    this.needFit = true;
    this.abort = null;

    // Downloads, not links: a link cannot send the token's header.
    this.exportJSON = el('a', { href: '#', id: 'export-json', text: 'JSON' });
    this.exportDOT = el('a', { href: '#', id: 'export-dot', text: 'DOT' });
    this.exportJSON.addEventListener('click', (ev) => { ev.preventDefault(); this.exportGraph(''); });
    this.exportDOT.addEventListener('click', (ev) => { ev.preventDefault(); this.exportGraph('dot'); });
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
  }

  // exportGraph downloads the graph of the current query as JSON, or in
  // another format ('dot').
  async exportGraph(format) {
    const params = { namespace: this.route.namespace };
    if (this.route.filter) params.filter = this.route.filter;
    if (format) params.format = format;
    const name = 'mesh-' + (this.route.namespace || 'all') + (format === 'dot' ? '.dot' : '.json');
    try {
      await download('graph', params, name);
      clearError('export');
    } catch (e) {
      showError('export', e.message);
    }
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
        // Room between ranks for an edge's label (dagre does not size
        // edge labels here), and between parallel edges.
        nodeSep: 60,
        rankSep: 200,
        edgeSep: 30,
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
