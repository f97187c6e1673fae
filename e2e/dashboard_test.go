//go:build e2e

package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshctl/meshctl/identity/ca"
	"github.com/meshctl/meshctl/internal/browsertest"
	"github.com/meshctl/meshctl/internal/certs"
)

// dashboardLoad is a load generator of the dashboard's scene.
type dashboardLoad struct{ Name, Target, RPS string }

// startDashboard runs `meshctl dashboard` for ns on a free port until the
// test ends and returns its address.
func startDashboard(t *testing.T, ns string) string {
	t.Helper()
	bin := filepath.Join(cluster.local.RepoDir, "bin", "meshctl")
	cmd := exec.Command(bin, "dashboard", "-n", ns, "--no-browser", "--port", "0", "--refresh", "5s", "--kubeconfig", cluster.local.Kubeconfig())
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("meshctl dashboard did not stop cleanly on SIGINT: %v\n%s", err, stderr.String())
			}
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			t.Errorf("meshctl dashboard still running 15s after SIGINT")
		}
		if strings.Contains(stderr.String(), "level=WARN") {
			t.Logf("meshctl dashboard's warnings:\n%s", stderr.String())
		}
	})
	lines := bufio.NewReader(out)
	line, err := lines.ReadString('\n')
	if err != nil {
		t.Fatalf("meshctl dashboard printed no address: %v\n%s", err, stderr.String())
	}
	go func() { _, _ = io.Copy(io.Discard, lines) }()
	_, link, ok := strings.Cut(strings.TrimSpace(line), " is at ")
	if !ok {
		t.Fatalf("meshctl dashboard's first line %q names no address", line)
	}
	return link
}

// loadCounts sums a running load generator's summary lines: requests and
// errors since it started.
func loadCounts(t *testing.T, ns, deployment string) (requests, errs int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	pods, err := cluster.client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=" + deployment})
	if err != nil || len(pods.Items) != 1 {
		t.Fatalf("the load generator %s's pod: %v (%d pods)", deployment, err, len(pods.Items))
	}
	logs, err := cluster.client.CoreV1().Pods(ns).GetLogs(pods.Items[0].Name, &corev1.PodLogOptions{Container: "load"}).DoRaw(ctx)
	if err != nil {
		t.Fatal(err)
	}
	s := bufio.NewScanner(bytes.NewReader(logs))
	for s.Scan() {
		var r loadSummary
		if json.Unmarshal(s.Bytes(), &r) == nil && !r.Final {
			requests += r.Requests
			errs += r.Errors
		}
	}
	return requests, errs
}

// TestDashboardInABrowser runs `meshctl dashboard` against a meshed app
// under steady load and looks at it in headless Chromium: every workload
// and edge is drawn, with padlocks; the load→web edge's success rate is
// within a point of what the load generator counted; the HTTPRoute split
// shows its weights; the failing api-v2 is red; the workload page lists
// its pod and fills its live tap; a foreign Host header is refused.
func TestDashboardInABrowser(t *testing.T) {
	anchor := mustCA(t)(ca.NewTrustAnchor("cluster.local", 24*time.Hour))
	issuer := mustCA(t)(ca.NewIssuer(anchor, "cluster.local", 12*time.Hour))
	deployControlPlane(t, "24h", issuer, anchor)
	ns := meshedNamespace(t, "dashboard")
	applyTemplate(t, "dashboard.yaml", map[string]any{
		"Namespace": ns, "Versions": []string{"v1", "v2"},
		"Loads": []dashboardLoad{{"load", "web", "50"}, {"load-api", "api", "20"}},
	})
	for _, d := range []string{"web", "api-v1", "api-v2", "load", "load-api"} {
		waitReady(t, ns, d, 3*time.Minute)
	}
	link := startDashboard(t, ns)
	u, err := url.Parse(link)
	if err != nil || u.Hostname() != "127.0.0.1" {
		t.Fatalf("the dashboard's address %q: want http://127.0.0.1:PORT/... (%v)", link, err)
	}

	// DNS rebinding: a request that reaches the port under another name.
	req, _ := http.NewRequest(http.MethodGet, "http://"+u.Host+"/api/graph?namespace="+ns, nil)
	req.Host = "attacker.example:" + u.Port()
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusForbidden {
		t.Errorf("a request with Host attacker.example: %v %v, want 403", resp, err)
	} else {
		resp.Body.Close()
	}
	token := checkDashboardToken(t, u, ns)

	b := browsertest.New(t, 1400, 900)
	started := time.Now()
	b.Navigate(t, link)
	b.WaitFor(t, "the first render", `!!(window.meshctlDashboard && window.meshctlDashboard.ready > 0)`, 30*time.Second)
	measure(t, "dashboard: namespace view first render (5 workloads)", time.Since(started).Seconds(), "s", "")
	id := func(name string) string { return ns + "/" + name }
	loadEdge := id("load") + ">" + id("web")
	b.WaitFor(t, "rates on every edge", fmt.Sprintf(`(() => { const cy = window.meshctlDashboard.cy;
		return [%q, %q, %q].every(e => cy.getElementById(e).nonempty() && /%%/.test(cy.getElementById(e).data('label') || ''));
	})()`, loadEdge, id("load-api")+">"+id("api-v1"), id("load-api")+">"+id("api-v2")), 2*time.Minute)
	nodes := browsertest.Eval[[]string](t, b, `window.meshctlDashboard.cy.nodes().map(n => n.id())`)
	for _, want := range []string{id("load"), id("web"), id("load-api"), id("api-v1"), id("api-v2"), "svc:" + id("api")} {
		if !slices.Contains(nodes, want) {
			t.Errorf("node %s not drawn (nodes: %v)", want, nodes)
		}
	}
	for _, e := range []string{loadEdge, id("load-api") + ">" + id("api-v1"), id("load-api") + ">" + id("api-v2")} {
		if !browsertest.Eval[bool](t, b, fmt.Sprintf(`window.meshctlDashboard.cy.getElementById(%q).data('secured') === true`, e)) {
			t.Errorf("edge %s has no padlock", e)
		}
	}
	b.WaitFor(t, "api-v2 red", fmt.Sprintf(`window.meshctlDashboard.cy.getElementById(%q).data('health') === 'fail'`, id("api-v2")), time.Minute)
	weights := browsertest.Eval[[]string](t, b, `[...document.querySelectorAll('#splits-table tr[data-split-id] td[data-col="weight"]')].map(td => td.textContent.trim()).sort()`)
	if strings.Join(weights, ",") != "20,80" {
		t.Errorf("split weights shown %v, want 80 and 20", weights)
	}

	// The success rate shown against the load generator's own count, once
	// it has counted 1,000 requests (web fails every 50th: its count is
	// 98 % within 0.1 point then, and a 5 s window of 250 within 0.4).
	eventually(t, "the load generator to count 1,000 requests", 2*time.Minute, func(context.Context) error {
		if n, _ := loadCounts(t, ns, "load"); n < 1000 {
			return fmt.Errorf("%d so far", n)
		}
		return nil
	})
	b.WaitFor(t, "a refresh after that", fmt.Sprintf(`window.meshctlDashboard.ready > %d`, browsertest.Eval[int](t, b, `window.meshctlDashboard.ready`)), 30*time.Second)
	cell := browsertest.Eval[string](t, b, fmt.Sprintf(`document.querySelector('tr[data-edge-id=%q] td[data-col="success"]').textContent.trim()`, loadEdge))
	shown, err := strconv.ParseFloat(strings.TrimSuffix(cell, "%"), 64)
	if err != nil {
		t.Fatalf("load→web success cell %q: %v", cell, err)
	}
	requests, errs := loadCounts(t, ns, "load")
	truth := 100 * (1 - float64(errs)/float64(requests))
	t.Logf("load→web: the dashboard shows %.2f%%, the load generator counted %d requests, %d failed (%.2f%%)", shown, requests, errs, truth)
	measure(t, "dashboard: load→web success rate shown minus the load generator's", shown-truth, "points", "|x| <= 1")
	if math.Abs(shown-truth) > 1 {
		t.Errorf("the dashboard shows %.2f%% on load→web; the load generator counted %.2f%% (more than 1 point apart)", shown, truth)
	}
	b.Screenshot(t, filepath.Join(cluster.local.RepoDir, "e2e", "reports", "dashboard-topology.png"))

	// The workload page: its pod, and the live tap filling.
	b.Navigate(t, strings.SplitN(link, "#", 2)[0]+"#/workload/"+ns+"/web")
	b.WaitFor(t, "web's pod listed", `document.querySelectorAll('tr[data-pod]').length === 1`, 30*time.Second)
	b.WaitFor(t, "the live tap to fill", `document.querySelectorAll('#tap-table tbody tr td[data-col="status"]').length >= 5`, time.Minute)
	b.WaitFor(t, "the charts", `!!document.querySelector('#chart-success canvas')`, 30*time.Second)
	b.Screenshot(t, filepath.Join(cluster.local.RepoDir, "e2e", "reports", "dashboard-workload.png"))

	// The API behind the other pages, on the real cluster; then the pages.
	checkDashboardAPI(t, u, token, ns, anchor, issuer)
	b.Navigate(t, strings.SplitN(link, "#", 2)[0]+"#/identity")
	b.WaitFor(t, "the identity page's issuer", fmt.Sprintf(`[...document.querySelectorAll('tr[data-fingerprint]')].some(tr => tr.dataset.fingerprint === %q)`, certs.Fingerprint(issuer.Cert)), 30*time.Second)
	b.Navigate(t, strings.SplitN(link, "#", 2)[0]+"#/health")
	b.WaitFor(t, "the health page's checks", `document.querySelectorAll('[data-category] li[data-result]').length >= 10`, 2*time.Minute)
	if p := b.Problems(); len(p) > 0 {
		t.Errorf("the page reported problems: %q", p)
	}
}
