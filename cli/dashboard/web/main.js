// meshctl dashboard: the browser side. Plain JS modules, no framework, no
// build; the vendored libraries (cytoscape, dagre, uPlot) are classic
// scripts that run first and set globals.
//
// state.js    the shared state, window.meshctlDashboard (the test hook)
// dom.js      element helpers
// format.js   numbers, times and names as text
// api.js      the API client, the errors banner, the poller
// router.js   the hash routes, the header
// graph.js    the topology as cytoscape elements, their style
// topology.js, workload.js (charts.js, tap.js), identity.js, health.js: the pages

import { $ } from './dom.js';
import { api, clearError, setupBanner, showError, takeToken } from './api.js';
import { HealthPage } from './health.js';
import { IdentityPage } from './identity.js';
import { fillNamespaces, route, setPages, setupHeader } from './router.js';
import { app } from './state.js';
import { TopologyPage } from './topology.js';
import { WorkloadPage } from './workload.js';

setPages({ topology: TopologyPage, workload: WorkloadPage, identity: IdentityPage, health: HealthPage });

async function start() {
  takeToken();
  setupBanner();
  setupHeader();
  try {
    const cfg = await api('config');
    if (cfg && typeof cfg === 'object') Object.assign(app.config, cfg);
    clearError('config');
  } catch (e) {
    showError('config', e.message);
  }
  $('version').textContent = app.config.version ? 'v' + String(app.config.version).replace(/^v/, '') : '';
  // The page does not wait for the namespace list (a List of every
  // namespace from the API server): the picker fills when it comes.
  // A link pasted into this tab later (a dashboard restarted with a new
  // token) changes only the fragment: take its token too.
  window.addEventListener('hashchange', () => { takeToken(); route(); });
  route();
  fillNamespaces(app.namespaces);
  try {
    const list = await api('namespaces');
    app.namespaces = Array.isArray(list) ? list : [];
    clearError('namespaces');
  } catch (e) {
    showError('namespaces', e.message);
  }
  fillNamespaces(app.namespaces);
}

if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
else start();
