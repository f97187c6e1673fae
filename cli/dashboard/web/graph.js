// meshctl dashboard: the topology as cytoscape elements and their style.

import { fmtBound, fmtPercent, fmtRps, fmtSuccessShort, health, isNum, truncate } from './format.js';
import { COLORS, WORKLOAD_KINDS } from './state.js';

export const CY_STYLE = [
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
      'text-background-opacity': 0.92,
      'text-background-padding': 3,
      'text-background-shape': 'round-rectangle',
      // Traffic edges (and their labels) are drawn over the split edges.
      'z-index': 1,
    },
  },
  { selector: 'edge[health = "ok"]', style: { 'line-color': COLORS.ok, 'target-arrow-color': COLORS.ok } },
  { selector: 'edge[health = "warn"]', style: { 'line-color': COLORS.warn, 'target-arrow-color': COLORS.warn } },
  { selector: 'edge[health = "fail"]', style: { 'line-color': COLORS.fail, 'target-arrow-color': COLORS.fail, width: 3 } },
  {
    selector: 'edge[?split]',
    style: {
      'line-style': 'dashed', 'line-color': COLORS.split, 'target-arrow-color': COLORS.split, color: COLORS.split, width: 1.5,
      'z-index': 0,
      // A split's weight sits near its target, not mid-edge where the
      // traffic edges' labels are.
      label: '',
      'target-label': 'data(label)',
      'target-text-offset': 46,
    },
  },
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
export function graphElements(g, allNamespaces) {
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
