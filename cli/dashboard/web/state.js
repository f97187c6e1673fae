// meshctl dashboard: the shared state and the test hook.
//
// Everything the API returns comes from the cluster or from clients'
// requests and is treated as hostile: the DOM is built with createElement
// and textContent only (never innerHTML), and the graph's labels are
// canvas text.

export const hook = { cy: null, ready: 0, lastGraph: null };
window.meshctlDashboard = hook;

export const WORKLOAD_KINDS = new Set(['deployment', 'statefulset', 'daemonset', 'job', 'pod']);
export const COLORS = { ok: '#2e9d5b', warn: '#d99a00', fail: '#d64541', idle: '#9aa0a6', split: '#7057c8' };

export const app = {
  config: { namespace: '', all_namespaces: true, refresh_s: 5, version: '' },
  namespaces: [],
  page: null, // the current page object: {name, update(route), destroy()}
};
