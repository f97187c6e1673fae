//go:build e2e

package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"

	"github.com/meshctl/meshctl/identity/ca"
)

// annotateNamespace sets an annotation on a namespace.
func annotateNamespace(t *testing.T, ns, key, value string) {
	t.Helper()
	ctx := context.Background()
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		obj, err := cluster.client.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if obj.Annotations == nil {
			obj.Annotations = map[string]string{}
		}
		obj.Annotations[key] = value
		_, err = cluster.client.CoreV1().Namespaces().Update(ctx, obj, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// byVersion adds up a load summary's answers by the web version that gave them.
func byVersion(backends map[string]int) (v1, v2 int) {
	for pod, n := range backends {
		switch {
		case strings.HasPrefix(pod, "web-v1-"):
			v1 += n
		case strings.HasPrefix(pod, "web-v2-"):
			v2 += n
		}
	}
	return v1, v2
}

// TestPolicyOnTheCluster runs the policy scenarios: an HTTPRoute canary
// split and a weight shift under load, identity-based authorization under a
// default-deny namespace, and an inbound rate limit.
func TestPolicyOnTheCluster(t *testing.T) {
	anchor := mustCA(t)(ca.NewTrustAnchor("cluster.local", 24*time.Hour))
	issuer := mustCA(t)(ca.NewIssuer(anchor, "cluster.local", 12*time.Hour))
	deployControlPlane(t, "24h", issuer, anchor)

	canary := meshedNamespace(t, "canary")
	applyTemplate(t, "policy-route.yaml", map[string]any{"Namespace": canary, "V1": 90, "V2": 10})
	applyTemplate(t, "policy-canary.yaml", map[string]any{"Namespace": canary, "Versions": []string{"v1", "v2"}})
	authz := meshedNamespace(t, "authz")
	annotateNamespace(t, authz, "config.meshctl.io/default-inbound-policy", "deny")
	applyTemplate(t, "policy-authz.yaml", map[string]any{"Namespace": authz})
	for _, name := range []string{"web-v1", "web-v2", "limited"} {
		waitReady(t, canary, name, 3*time.Minute)
	}
	waitReady(t, authz, "server", 3*time.Minute)

	t.Run("a 90/10 split holds over one keep-alive connection", func(t *testing.T) {
		final, _ := runLoad(t, load{Namespace: canary, Name: "load-split", Service: "web", Count: 10000}, 5*time.Minute)
		v1, v2 := byVersion(final.Backends)
		share := 100 * float64(v2) / float64(v1+v2)
		t.Logf("10,000 requests to Service web over one connection: web-v1 %d, web-v2 %d (%.2f %%, route 10 %%), %d errors", v1, v2, share, final.Errors)
		measure(t, "split.v2_share_pct_of_10000", share, "%", "10 ± 1.5")
		if final.Errors > 0 || math.Abs(share-10) > 1.5 {
			t.Errorf("web-v2 got %.2f %% with %d errors, want 10 ± 1.5 %% and none", share, final.Errors)
		}
	})

	t.Run("moving the weights to 0/100 under load loses no request", func(t *testing.T) {
		pod := startLoad(t, load{Namespace: canary, Name: "load-shift", Service: "web", RPS: 100, Count: 3000})
		var n0 int
		eventually(t, "steady load on both versions", time.Minute, func(ctx context.Context) error {
			r, err := loadReports(ctx, canary, pod)
			if err != nil || len(r) < 5 {
				return fmt.Errorf("%d reports (%v)", len(r), err)
			}
			n0 = len(r)
			return nil
		})
		toIsExact(t, canary) // while the load pod's proxy runs: its edges are read from it
		diagnosticsOfTheLoad(t, canary, pod)
		shifted := time.Now()
		applyTemplate(t, "policy-route.yaml", map[string]any{"Namespace": canary, "V1": 0, "V2": 100})
		var tookEffect time.Duration
		var clean int // the first report with no answer from web-v1
		eventually(t, "only web-v2 answering", time.Minute, func(ctx context.Context) error {
			r, err := loadReports(ctx, canary, pod)
			if err != nil || len(r) <= n0 {
				return fmt.Errorf("no report since the change (%v)", err)
			}
			if v1, _ := byVersion(r[len(r)-1].Backends); v1 > 0 {
				return fmt.Errorf("web-v1 still answered %d in the last second", v1)
			}
			tookEffect, clean = time.Since(shifted), len(r)-1
			return nil
		})
		routesAfterTheShift(t, canary) // while the load goes on
		final := waitFinal(t, canary, pod, 2*time.Minute)
		// The change reaches the proxies in milliseconds; what is measured is
		// the first whole 1 s report without web-v1, read every 250 ms.
		measure(t, "split.weight_shift_s", tookEffect.Seconds(), "s", "<= 5")
		if tookEffect > 5*time.Second {
			t.Errorf("web-v1 answered for %.1f s after the weights moved to 0/100, want at most 5 s", tookEffect.Seconds())
		}
		if r, err := loadReports(context.Background(), canary, pod); err != nil {
			t.Fatal(err)
		} else {
			for i := clean; i < len(r); i++ {
				if v1, _ := byVersion(r[i].Backends); v1 > 0 && !r[i].Final {
					t.Errorf("report %d: web-v1 answered %d after the shift had taken effect", i, v1)
				}
			}
		}
		v1, v2 := byVersion(final.Backends)
		t.Logf("weights 90/10 → 0/100 at 100 requests/s: only web-v2 within %.1f s (seen in 1 s reports); %d requests: web-v1 %d, web-v2 %d, %d failed, statuses %v",
			tookEffect.Seconds(), final.Requests, v1, v2, final.Errors, final.Statuses)
		if final.Errors > 0 {
			t.Errorf("%d requests failed during the shift", final.Errors)
		}
	})

	t.Run("only the authorized ServiceAccount gets in", func(t *testing.T) {
		client, _ := runLoad(t, load{Namespace: authz, Name: "as-client", Service: "server", RPS: 20, Count: 50, ServiceAccount: "client"}, 3*time.Minute)
		// meshctl tap, from the intruder only, says why each was refused.
		refusals := startTap(t, "deploy/server", "-n", authz, "--from", "sa/intruder")
		intruder, _ := runLoad(t, load{Namespace: authz, Name: "as-intruder", Service: "server", RPS: 20, Count: 50, ServiceAccount: "intruder"}, 3*time.Minute)
		ends := refusals.stop()
		n403 := 0
		for _, e := range ends {
			if !strings.HasSuffix(e.ClientID, "/ns/"+authz+"/sa/intruder") {
				t.Errorf("tap --from sa/intruder showed a request from %q", e.ClientID)
			}
			if e.Status == 403 && strings.HasPrefix(e.Reason, "unauthorized (") && e.TLS != nil && *e.TLS {
				n403++
			}
		}
		if n403 == 0 {
			t.Errorf("tap showed no 403 with its reason (unauthorized (rule)) and tls=true among %d requests: %+v", len(ends), ends)
		}
		unmeshed, _ := runLoad(t, load{Namespace: authz, Name: "unmeshed", Service: "server", RPS: 20, Count: 50, Unmeshed: true}, 3*time.Minute)
		t.Logf("default deny, one policy for ServiceAccount client: client %v, intruder (meshed) %v, unmeshed pod %v",
			client.Statuses, intruder.Statuses, unmeshed.Statuses)
		if client.Statuses["200"] != 50 {
			t.Errorf("the authorized client got %v, want 50 × 200", client.Statuses)
		}
		if intruder.Statuses["403"] != 50 {
			t.Errorf("the intruder got %v, want 50 × 403", intruder.Statuses)
		}
		if unmeshed.Statuses["403"] != 50 {
			t.Errorf("the unmeshed pod got %v, want 50 × 403", unmeshed.Statuses)
		}
		// meshctl edges shows the unmeshed pod's 50 requests as an edge of
		// their own, not secured, and says why; the kubelet's probes (also
		// plaintext) are not counted as clients.
		edgesOut, _ := meshctl(t, false, "edges", "deploy/server", "-n", authz, "-t", "0", "-o", "json")
		var edges []struct {
			Src, Dst, Reason string
			Secured          bool
			Requests         float64
		}
		if err := json.Unmarshal([]byte(edgesOut), &edges); err != nil {
			t.Fatalf("edges -o json: %v\n%s", err, edgesOut)
		}
		found := false
		for _, e := range edges {
			if e.Src == "(unmeshed clients)" && e.Dst == "server" {
				found = true
				if e.Secured || e.Requests != 50 || e.Reason != "client not meshed: plaintext" {
					t.Errorf("the unmeshed clients' edge into server: %+v, want 50 requests (the unmeshed pod's; no probe), not secured, and why", e)
				}
			}
		}
		if !found {
			t.Errorf("edges deploy/server shows no edge from unmeshed clients: %s", edgesOut)
		}
		// meshctl authz says what decides on server's port, and what the
		// proxies decided: the client's 50 allowed by the policy, the
		// intruder's and the unmeshed pod's 100 denied by it (it covers the
		// port, so the default does not decide there).
		authzOut, _ := meshctl(t, false, "authz", "deploy/server", "-n", authz, "-t", "0", "-o", "json")
		var report struct {
			Default struct{ Policy, Source string }
			Ports   []struct {
				Port     int
				Policies []string
			}
			Decisions []struct {
				Rule            string
				Allowed, Denied float64
			}
		}
		if err := json.Unmarshal([]byte(authzOut), &report); err != nil {
			t.Fatalf("authz -o json: %v\n%s", err, authzOut)
		}
		decided := map[string][2]float64{}
		for _, d := range report.Decisions {
			decided[d.Rule] = [2]float64{d.Allowed, d.Denied}
		}
		if report.Default.Policy != "deny" || !strings.Contains(report.Default.Source, "namespace "+authz) ||
			len(report.Ports) != 1 || report.Ports[0].Port != 8080 || len(report.Ports[0].Policies) != 1 || report.Ports[0].Policies[0] != authz+"/server-from-client" ||
			decided[authz+"/server-from-client"] != [2]float64{50, 100} || decided["probe"][0] == 0 {
			t.Errorf("authz deploy/server: %+v, want deny from the namespace, port 8080 decided by server-from-client (50 allowed, 100 denied: the intruder's and the unmeshed pod's), probes allowed", report)
		}
		// The same pods chosen by their labels (-l) get the same answer on
		// what decides; labels no pod has are not found (exit 3).
		bySelector, _ := meshctl(t, false, "authz", "pod", "-l", "app=server", "-n", authz, "-t", "0", "-o", "json")
		var selected struct {
			Default struct{ Policy string }
			Ports   []struct {
				Port     int
				Policies []string
			}
		}
		if err := json.Unmarshal([]byte(bySelector), &selected); err != nil {
			t.Fatalf("authz pod -l app=server -o json: %v\n%s", err, bySelector)
		}
		if selected.Default.Policy != "deny" || len(selected.Ports) != 1 || selected.Ports[0].Port != 8080 || !slices.Equal(selected.Ports[0].Policies, []string{authz + "/server-from-client"}) {
			t.Errorf("authz pod -l app=server: %s, want what authz deploy/server said of the default and port 8080", bySelector)
		}
		if _, err := meshctl(t, true, "authz", "pod", "-l", "app=nothing", "-n", authz); err == nil || !strings.Contains(err.Error(), "exit status 3") {
			t.Errorf("authz pod -l app=nothing: %v, want exit status 3", err)
		}
		// The kubelet's probes still pass: the server pods stayed Ready.
		pods, err := cluster.client.CoreV1().Pods(authz).List(context.Background(), metav1.ListOptions{LabelSelector: "app=server"})
		if err != nil {
			t.Fatal(err)
		}
		// diagnostics policy shows what a server proxy holds: port http
		// (8080) decided by server-from-client for the client's identity.
		held, _ := meshctl(t, false, "diagnostics", "policy", "pod/"+pods.Items[0].Name, "-n", authz, "http", "-o", "json")
		var view struct {
			Default string `json:"default"`
			Ports   []struct {
				Port  int `json:"port"`
				Rules []struct {
					Name       string   `json:"name"`
					Identities []string `json:"identities"`
				} `json:"rules"`
			} `json:"ports"`
		}
		if err := json.Unmarshal([]byte(held), &view); err != nil {
			t.Fatalf("diagnostics policy -o json: %v\n%s", err, held)
		}
		if view.Default != "deny" || len(view.Ports) != 1 || view.Ports[0].Port != 8080 || len(view.Ports[0].Rules) != 1 ||
			view.Ports[0].Rules[0].Name != authz+"/server-from-client" || !slices.Equal(view.Ports[0].Rules[0].Identities, []string{"spiffe://cluster.local/ns/" + authz + "/sa/client"}) {
			t.Errorf("diagnostics policy pod/%s http: %+v, want deny, port 8080 decided by server-from-client for sa/client", pods.Items[0].Name, view)
		}
		for _, p := range pods.Items {
			ready := false
			for _, c := range p.Status.Conditions {
				if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
					ready = true
				}
			}
			restarts := int32(0)
			for _, cs := range p.Status.ContainerStatuses {
				restarts += cs.RestartCount
			}
			if !ready || restarts > 0 {
				t.Errorf("server pod %s: ready %v, %d restarts; the probes must pass under deny", p.Name, ready, restarts)
			}
			m, err := proxyMetrics(context.Background(), authz, p.Name)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s: allowed %v (probes %v), denied %v", p.Name, sumMatching(m, "inbound_policy_decisions_total{", "decision=allow"),
				sumMatching(m, "inbound_policy_decisions_total{", "decision=allow", "rule=probe"), sumMatching(m, "inbound_policy_decisions_total{", "decision=deny"))
		}
		// A Service with no endpoint: the client's proxy answers 503, and
		// tap says why.
		if _, err := cluster.client.CoreV1().Services(authz).Create(context.Background(), &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: "nobody", Namespace: authz},
			Spec:       corev1.ServiceSpec{Selector: map[string]string{"app": "nobody"}, Ports: []corev1.ServicePort{{Port: 80}}},
		}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		pod := startLoad(t, load{Namespace: authz, Name: "to-nobody", Service: "nobody", RPS: 5, Count: 100, Concurrency: 4, ServiceAccount: "client"})
		unavailable := startTap(t, "pod/"+pod, "-n", authz, "--to", "svc/nobody")
		eventually(t, "tap to show a 503 with its reason", time.Minute, func(context.Context) error {
			for _, e := range unavailable.ends() {
				if e.Status == 503 && strings.Contains(e.Reason, "no endpoints") && e.Endpoint == "" {
					return nil
				}
			}
			return fmt.Errorf("ends so far: %+v", unavailable.ends())
		})
		unavailable.stop()

		// meshctl check warns about the policy that selects nothing and the
		// route that sends /nowhere to a Service that does not exist.
		out, _ := meshctl(t, true, "check")
		if !strings.Contains(out, authz+"/stale") || !strings.Contains(out, authz+"/dangling") {
			t.Errorf("meshctl check did not name the policy that selects nothing and the route to a missing Service:\n%s", out)
		}
	})

	t.Run("a rate limit answers 429 beyond it", func(t *testing.T) {
		final, _ := runLoad(t, load{Namespace: canary, Name: "load-limited", Service: "limited", RPS: 300, Count: 3000, Concurrency: 4}, 3*time.Minute)
		ok, limited := final.Statuses["200"], final.Statuses["429"]
		rate := float64(ok) / final.DurationS
		t.Logf("300 requests/s for %.1f s against a 100/s limit: %d succeeded (%.1f/s, a 100-request burst included), %d got 429, other %v",
			final.DurationS, ok, rate, limited, final.Statuses)
		want := 100*final.DurationS + 100 // the bucket starts full: one second's burst
		measure(t, "ratelimit.duration_s", final.DurationS, "s", "")
		measure(t, "ratelimit.ok_of_3000_at_300rps", float64(ok), "requests", fmt.Sprintf("%.0f..%.0f, the rest 429", 0.85*want, 1.1*want))
		if ok+limited != final.Requests || float64(ok) < 0.85*want || float64(ok) > 1.1*want {
			t.Errorf("%d × 200 and %d × 429 of %d, want about %.0f × 200 and the rest 429", ok, limited, final.Requests, want)
		}
	})
}

// toIsExact: web-v1 and web-v2 run as the same ServiceAccount behind the
// Service web, and a load sends to both: edges --to deploy/web-v1 and
// deploy/web-v2 tell them apart (by workload), --to svc/web takes both,
// and --to deploy/web (no such Deployment) is refused, not matched as a
// prefix of the two.
func toIsExact(t *testing.T, ns string) {
	t.Helper()
	edgesTo := func(to string) map[string]float64 {
		t.Helper()
		out, _ := meshctl(t, false, "edges", "pod", "-n", ns, "--to", to, "-t", "0", "-o", "json")
		var edges []struct {
			Dst      string  `json:"dst"`
			Requests float64 `json:"requests"`
		}
		if err := json.Unmarshal([]byte(out), &edges); err != nil {
			t.Fatalf("edges -o json: %v\n%s", err, out)
		}
		got := map[string]float64{}
		for _, e := range edges {
			got[e.Dst] += e.Requests
		}
		return got
	}
	v1, v2, both := edgesTo("deploy/web-v1"), edgesTo("deploy/web-v2"), edgesTo("svc/web")
	if len(v1) != 1 || v1["web-v1"] == 0 || len(v2) != 1 || v2["web-v2"] == 0 {
		t.Errorf("edges --to deploy/web-v1: %v; --to deploy/web-v2: %v; want each its own destination only", v1, v2)
	}
	// Read later, under load: at least as many.
	if len(both) != 2 || both["web-v1"] < v1["web-v1"] || both["web-v2"] < v2["web-v2"] {
		t.Errorf("edges --to svc/web: %v, want both versions, with at least the requests of each deploy/ (%v, %v)", both, v1, v2)
	}
	if _, err := meshctl(t, true, "edges", "pod", "-n", ns, "--to", "deploy/web", "-t", "0"); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Errorf("edges --to deploy/web (no such Deployment; web-v1 and web-v2 are): %v, want not found", err)
	}
	// -l selects by the Deployments' own labels; -A adds a NAMESPACE column.
	out, _ := meshctl(t, false, "stat", "deploy", "-n", ns, "-l", "app=web,version=v2", "-t", "1s", "-o", "yaml")
	if !strings.Contains(out, "name: web-v2") || strings.Contains(out, "name: web-v1") || strings.Contains(out, "name: load") {
		t.Errorf("stat deploy -l app=web,version=v2 -o yaml: want web-v2 alone:\n%s", out)
	}
	out, _ = meshctl(t, false, "stat", "deploy", "-A", "-l", "app=web", "-t", "1s")
	lines, mine := strings.Split(strings.TrimSpace(out), "\n"), 0
	for _, l := range lines {
		if strings.HasPrefix(l, ns+" ") {
			mine++
		}
	}
	if !strings.HasPrefix(lines[0], "NAMESPACE") || mine != 2 {
		t.Errorf("stat deploy -A -l app=web: want a NAMESPACE column and web-v1 and web-v2 of %s:\n%s", ns, out)
	}
	if _, err := meshctl(t, true, "stat", "deploy", "-n", ns, "-l", "app=nothing"); err == nil || !strings.Contains(err.Error(), "no deployment with labels app=nothing") {
		t.Errorf("stat -l matching nothing: %v, want it said", err)
	}
	// -l on the other kinds: pods and Services by their own labels, a
	// namespace by its (the API server's kubernetes.io/metadata.name).
	names := func(args ...string) []string {
		t.Helper()
		out, _ := meshctl(t, false, append([]string{"stat"}, append(args, "-t", "1s", "-o", "json")...)...)
		var rows []struct {
			Namespace string `json:"namespace"`
			Name      string `json:"name"`
		}
		if err := json.Unmarshal([]byte(out), &rows); err != nil {
			t.Fatalf("stat %v -o json: %v\n%s", args, err, out)
		}
		var got []string
		for _, r := range rows {
			got = append(got, r.Name)
		}
		slices.Sort(got)
		return got
	}
	if got := names("svc", "-n", ns, "-l", "app=web"); !slices.Equal(got, []string{"web-v1", "web-v2"}) {
		t.Errorf("stat svc -l app=web: %v, want web-v1 and web-v2 (Service web has no labels)", got)
	}
	if got := names("pod", "-n", ns, "-l", "version=v1"); len(got) != 1 || !strings.HasPrefix(got[0], "web-v1-") {
		t.Errorf("stat pod -l version=v1: %v, want web-v1's one pod", got)
	}
	if got := names("ns", "-A", "-l", "kubernetes.io/metadata.name="+ns); !slices.Equal(got, []string{ns}) {
		t.Errorf("stat ns -A -l kubernetes.io/metadata.name=%s: %v, want that namespace alone", ns, got)
	}
}

// tapEnd is what these tests read of tap's events (-o json): an end, with
// the client its start named.
type tapEnd struct {
	Type     string `json:"type"`
	ID       uint64 `json:"id"`
	Pod      string `json:"pod"`
	ClientID string `json:"client_id"`
	Status   int    `json:"status"`
	Endpoint string `json:"endpoint"`
	TLS      *bool  `json:"tls"`
	Retries  int    `json:"retries"`
	Reason   string `json:"reason"`
}

// tapRun is a meshctl tap -o json running in the background.
type tapRun struct {
	cmd     *exec.Cmd
	mu      sync.Mutex
	out     []tapEnd
	clients map[string]string // pod/id → the client of its start event
	done    chan struct{}
}

// startTap runs meshctl tap TARGET -o json with args, and waits until it
// follows every pod.
func startTap(t *testing.T, target string, args ...string) *tapRun {
	t.Helper()
	cmd := exec.Command(filepath.Join(cluster.local.RepoDir, "bin", "meshctl"), append(append([]string{"tap", target, "-o", "json"}, args...), "--kubeconfig", cluster.local.Kubeconfig())...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	r := &tapRun{cmd: cmd, done: make(chan struct{}), clients: map[string]string{}}
	t.Cleanup(func() { r.stop() })
	go func() {
		defer close(r.done)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			var e tapEnd
			if json.Unmarshal(sc.Bytes(), &e) != nil {
				continue
			}
			key := fmt.Sprintf("%s/%d", e.Pod, e.ID)
			r.mu.Lock()
			switch e.Type {
			case "start":
				r.clients[key] = e.ClientID
			case "end":
				e.ClientID = r.clients[key] // the end says no client: its start did
				r.out = append(r.out, e)
			}
			r.mu.Unlock()
		}
	}()
	line, err := bufio.NewReader(stderr).ReadString('\n')
	if err != nil || !strings.Contains(line, "tapping") {
		t.Fatalf("meshctl tap %s did not start: %q %v", target, line, err)
	}
	go func() { _, _ = io.Copy(io.Discard, stderr) }()
	return r
}

func (r *tapRun) ends() []tapEnd {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]tapEnd(nil), r.out...)
}

// stop ends the tap and returns every end event it printed.
func (r *tapRun) stop() []tapEnd {
	if r.cmd.ProcessState == nil {
		_ = r.cmd.Process.Signal(os.Interrupt)
		<-r.done
		_ = r.cmd.Wait()
	}
	return r.ends()
}

// diagnosticsOfTheLoad: the load pod's proxy shows the Service it calls
// with web's endpoints (meshed: each with its identity), and its raw
// metrics; a destination it never called is not found.
func diagnosticsOfTheLoad(t *testing.T, ns, pod string) {
	t.Helper()
	authority := "web." + ns + ".svc.cluster.local:80"
	out, _ := meshctl(t, false, "diagnostics", "endpoints", "pod/"+pod, "-n", ns, authority, "-o", "json")
	var dsts []struct {
		Destination string `json:"destination"`
		Service     string `json:"service"`
		Endpoints   []struct {
			Addr     string `json:"addr"`
			Identity string `json:"identity"`
		} `json:"endpoints"`
	}
	if err := json.Unmarshal([]byte(out), &dsts); err != nil {
		t.Fatalf("diagnostics endpoints -o json: %v\n%s", err, out)
	}
	if len(dsts) != 1 || dsts[0].Service != "web."+ns || len(dsts[0].Endpoints) < 2 {
		t.Fatalf("diagnostics endpoints %s: %+v, want Service web's address only, with web-v1's and web-v2's endpoints", authority, dsts)
	}
	for _, e := range dsts[0].Endpoints {
		if !strings.HasSuffix(e.Identity, "/ns/"+ns+"/sa/default") {
			t.Errorf("endpoint %s has identity %q, want web's (ServiceAccount default of %s)", e.Addr, e.Identity, ns)
		}
	}
	if _, err := meshctl(t, true, "diagnostics", "endpoints", "pod/"+pod, "-n", ns, "10.255.255.1:80"); err == nil || !strings.Contains(err.Error(), "knows no destination 10.255.255.1:80") {
		t.Errorf("diagnostics endpoints for a destination never called: %v", err)
	}
	metrics, _ := meshctl(t, false, "diagnostics", "proxy-metrics", "pod/"+pod, "-n", ns)
	if !strings.HasPrefix(metrics, "# pod "+ns+"/"+pod+"\n") || !strings.Contains(metrics, "response_total{") {
		t.Errorf("diagnostics proxy-metrics: %.300s", metrics)
	}
}

// routesAfterTheShift: meshctl routes shows the route's rule with web-v1
// at weight 0 and web-v2 at 100, accepted, and the load's requests going
// to web-v2 only.
func routesAfterTheShift(t *testing.T, ns string) {
	t.Helper()
	out, _ := meshctl(t, false, "routes", "svc/web", "-n", ns, "-t", "3s", "-o", "json")
	var backends []struct {
		Backend   string   `json:"backend"`
		Weight    int32    `json:"weight"`
		Percent   float64  `json:"percent"`
		Workloads []string `json:"workloads"`
		Accepted  string   `json:"accepted"`
		RPS       float64  `json:"rps"`
	}
	if err := json.Unmarshal([]byte(out), &backends); err != nil {
		t.Fatalf("routes -o json: %v\n%s", err, out)
	}
	got := map[string]float64{}
	for _, b := range backends {
		got[b.Backend] = b.RPS
		if b.Accepted != "True" {
			t.Errorf("backend %s: route accepted %q", b.Backend, b.Accepted)
		}
		want := map[string]int32{ns + "/web-v1:80": 0, ns + "/web-v2:80": 100}[b.Backend]
		if b.Weight != want || len(b.Workloads) != 1 {
			t.Errorf("backend %+v, want weight %d and its workload", b, want)
		}
	}
	if len(backends) != 2 || got[ns+"/web-v1:80"] != 0 || got[ns+"/web-v2:80"] < 50 {
		t.Errorf("routes svc/web after the shift: %+v, want web-v1 at 0 requests/s and web-v2 taking the load's 100/s", backends)
	}
}
