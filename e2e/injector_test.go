//go:build e2e

package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/retry"

	"github.com/meshctl/meshctl/identity/ca"
	"github.com/meshctl/meshctl/internal/adminclient"
	"github.com/meshctl/meshctl/internal/meshnames"
	"github.com/meshctl/meshctl/internal/pcap"
	"github.com/meshctl/meshctl/proxy/detect"
)

// loadReport is one line of `testapp load`.
type loadReport struct {
	// Final marks the summary of the whole run (`load --count`), whose
	// counts add up every report before it.
	Final    bool           `json:"final"`
	Requests int            `json:"requests"`
	Errors   int            `json:"errors"`
	Backends map[string]int `json:"backends"`
}

// loadReports reads every report the client's load generator printed.
func loadReports(ctx context.Context, ns, pod string) ([]loadReport, error) {
	logs, err := cluster.client.CoreV1().Pods(ns).GetLogs(pod, &corev1.PodLogOptions{Container: "load"}).DoRaw(ctx)
	if err != nil {
		return nil, err
	}
	var out []loadReport
	s := bufio.NewScanner(bytes.NewReader(logs))
	for s.Scan() {
		var r loadReport
		if json.Unmarshal(s.Bytes(), &r) == nil {
			out = append(out, r)
		}
	}
	return out, nil
}

// startCapture runs tcpdump on the pod network's bridge until the test
// stops it; the returned function stops it and returns the TCP streams.
func startCapture(t *testing.T) func() map[string][]byte {
	t.Helper()
	if _, err := exec.LookPath("tcpdump"); err != nil {
		t.Fatal("tcpdump is needed to capture the pod network (make test-deps installs it): ", err)
	}
	file := filepath.Join(t.TempDir(), "pods.pcap")
	dump := exec.Command("tcpdump", "--immediate-mode", "-Z", "root", "-i", "mesh-cni0", "-U", "-s", "0", "-w", file, "tcp")
	stderr, err := dump.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := dump.Start(); err != nil {
		t.Fatal(err)
	}
	if line, err := bufio.NewReader(stderr).ReadString('\n'); err != nil || !strings.Contains(line, "listening") {
		_ = dump.Process.Kill()
		_ = dump.Wait()
		t.Fatalf("tcpdump did not start: %q %v", line, err)
	}
	var once sync.Once
	stop := func() {
		once.Do(func() {
			_ = dump.Process.Signal(os.Interrupt)
			_ = dump.Wait()
		})
	}
	t.Cleanup(stop)
	return func() map[string][]byte {
		stop()
		raw, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		streams, err := pcap.Streams(raw)
		if err != nil {
			t.Fatal(err)
		}
		return streams
	}
}

// TestInjectedPodsAreMeshed is the injector and discovery end to end: in an
// annotated namespace, plain Deployments get the proxy; the client's
// requests to the server's Service go over mutual TLS, spread over the
// replicas, follow scaling with no failed request, survive the controller's
// death; an injected Job completes.
func TestInjectedPodsAreMeshed(t *testing.T) {
	ctx := context.Background()
	anchor := mustCA(t)(ca.NewTrustAnchor("cluster.local", 24*time.Hour))
	issuer := mustCA(t)(ca.NewIssuer(anchor, "cluster.local", 12*time.Hour))
	deployControlPlane(t, "24h", issuer, anchor)

	ns := meshedNamespace(t, "inject")
	capture := startCapture(t)
	applyTemplate(t, "meshed.yaml", map[string]string{"Namespace": ns})
	waitReady(t, ns, "web", 3*time.Minute)
	applyTemplate(t, "meshed-client.yaml", map[string]string{"Namespace": ns})
	waitReady(t, ns, "client", 3*time.Minute)

	// Every pod was injected, the proxy ready before the app started.
	pods, err := cluster.client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var clientPod string
	podIPs := map[string]string{} // IP → pod
	for _, p := range pods.Items {
		if p.Labels["app"] == "client" {
			clientPod = p.Name
		}
		if p.Labels["app"] != "" {
			podIPs[p.Status.PodIP] = p.Name
		}
		checkInjected(t, &p)
	}
	webID := fmt.Sprintf("spiffe://cluster.local/ns/%s/sa/web", ns)
	clientID := fmt.Sprintf("spiffe://cluster.local/ns/%s/sa/client", ns)
	reports := func() []loadReport {
		t.Helper()
		r, err := loadReports(ctx, ns, clientPod)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	// The app's very first requests found the network working.
	eventually(t, "the first load reports", time.Minute, func(context.Context) error {
		if n := len(reports()); n < 3 {
			return fmt.Errorf("%d reports", n)
		}
		return nil
	})
	if r := reports(); r[0].Errors != 0 {
		t.Errorf("the client's first second had %d failed requests of %d: the network was not ready when the app started", r[0].Errors, r[0].Requests)
	}

	// Over mutual TLS, with the right identities on both sides, spread over the three replicas.
	webPods := podsOf(t, ns, "app=web")
	eventually(t, "meshed responses on both sides", time.Minute, func(ctx context.Context) error {
		m, err := proxyMetrics(ctx, ns, clientPod)
		if err != nil {
			return err
		}
		if n := sumMatching(m, "response_total{", "direction=outbound", "tls=true", "server_id="+webID, "status_code=200"); n < 30 {
			return fmt.Errorf("client proxy: %v meshed responses from %s", n, webID)
		}
		for _, p := range webPods {
			m, err := proxyMetrics(ctx, ns, p)
			if err != nil {
				return err
			}
			if n := sumMatching(m, "response_total{", "direction=inbound", "tls=true", "client_id="+clientID, "status_code=200"); n < 1 {
				return fmt.Errorf("server %s: no meshed responses to %s", p, clientID)
			}
		}
		return nil
	})
	checkCapture(t, capture(), podIPs)

	// Scaling: 5 replicas, then 1, followed by the client with no failed request.
	base := len(reports())
	lat := watchUpdates(t, ns, clientPod)
	scale(t, ns, "web", 5)
	eventually(t, "the client to reach all 5 replicas", 2*time.Minute, func(context.Context) error {
		return backendsSince(reports(), base, 5)
	})
	scale(t, ns, "web", 1)
	eventually(t, "the client to reach only the last replica", 2*time.Minute, func(context.Context) error {
		r := reports()
		last := r[len(r)-1]
		if len(last.Backends) != 1 {
			return fmt.Errorf("last report reached %v", last.Backends)
		}
		// Wait for the old pods to be gone, not just terminating, so that
		// the count covers their whole shutdown.
		all, err := cluster.client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
		if err != nil {
			return err
		}
		if n := len(all.Items); n != 1 {
			return fmt.Errorf("%d web pods left", n)
		}
		return nil
	})
	samples, pollEvery := lat.stop()
	if errs, n := errorsSince(reports(), base); errs != 0 {
		t.Errorf("%d of %d requests failed while scaling 1 → 5 → 1", errs, n)
	} else {
		t.Logf("scaling 3 → 5 → 1: %d requests, none failed", n)
	}
	reportLatency(t, samples, pollEvery)

	// The controller dies; traffic goes on, and discovery comes back with the new one.
	base = len(reports())
	ctrl := podsOf(t, "meshctl", controllerSelector)
	zero := int64(0)
	if err := cluster.client.CoreV1().Pods("meshctl").Delete(ctx, ctrl[0], metav1.DeleteOptions{GracePeriodSeconds: &zero}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a new controller", 2*time.Minute, func(context.Context) error {
		now := podsOf(t, "meshctl", controllerSelector)
		if len(now) != 1 || now[0] == ctrl[0] {
			return fmt.Errorf("controller pods %v", now)
		}
		return nil
	})
	waitReady(t, "meshctl", "mesh-controller", 2*time.Minute)
	scale(t, ns, "web", 2)
	eventually(t, "the client to reach the new replica through the new controller", 2*time.Minute, func(context.Context) error {
		r := reports()
		return backendsSince(r, len(r)-1, 2)
	})
	if errs, n := errorsSince(reports(), base); errs != 0 {
		t.Errorf("%d of %d requests failed across the controller's restart", errs, n)
	} else {
		t.Logf("controller killed: %d requests, none failed", n)
	}

	// An injected Job runs to completion (its proxy, a native sidecar, does not hold it up).
	applyTemplate(t, "job.yaml", map[string]string{"Namespace": ns})
	eventually(t, "the injected Job to complete", 3*time.Minute, func(ctx context.Context) error {
		j, err := cluster.client.BatchV1().Jobs(ns).Get(ctx, "once", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if j.Status.Failed > 0 {
			return fmt.Errorf("the Job failed: %+v", j.Status)
		}
		if j.Status.Succeeded != 1 {
			return fmt.Errorf("not yet: %+v", j.Status)
		}
		return nil
	})
	jobPods, err := cluster.client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "job-name=once"})
	if err != nil || len(jobPods.Items) != 1 {
		t.Fatalf("the Job's pods: %v %v", jobPods, err)
	}
	checkInjected(t, &jobPods.Items[0])
}

// checkInjected checks a pod has mesh-init then the proxy as a native
// sidecar, and that its apps started after the proxy.
func checkInjected(t *testing.T, p *corev1.Pod) {
	t.Helper()
	ic := p.Spec.InitContainers
	if len(ic) < 2 || ic[0].Name != "mesh-init" || ic[1].Name != "mesh-proxy" || ic[1].RestartPolicy == nil ||
		*ic[1].RestartPolicy != corev1.ContainerRestartPolicyAlways || ic[1].StartupProbe == nil {
		t.Errorf("pod %s was not injected as expected: init containers %v", p.Name, ic)
		return
	}
	if p.Labels["meshctl.io/proxy-version"] == "" {
		t.Errorf("pod %s lacks the proxy-version label", p.Name)
	}
	var proxyStarted time.Time
	for _, s := range p.Status.InitContainerStatuses {
		if s.Name == "mesh-proxy" && s.State.Running != nil {
			proxyStarted = s.State.Running.StartedAt.Time
		}
		if s.Name == "mesh-proxy" && s.State.Terminated != nil {
			proxyStarted = s.State.Terminated.StartedAt.Time
		}
	}
	for _, s := range p.Status.ContainerStatuses {
		var started time.Time
		if s.State.Running != nil {
			started = s.State.Running.StartedAt.Time
		} else if s.State.Terminated != nil {
			started = s.State.Terminated.StartedAt.Time
		}
		if proxyStarted.IsZero() || started.Before(proxyStarted) {
			t.Errorf("pod %s: container %s started at %v, the proxy at %v", p.Name, s.Name, started, proxyStarted)
		}
	}
}

// checkCapture checks the pod-to-pod TCP the capture holds: every
// connection between the test's pods starts with a ClientHello offering
// meshctl/h2, and no HTTP crossed in plaintext.
func checkCapture(t *testing.T, streams map[string][]byte, podIPs map[string]string) {
	t.Helper()
	hellos := 0
	for flow, data := range streams {
		src, dst, _ := strings.Cut(flow, " → ")
		srcIP, _, _ := strings.Cut(src, ":")
		dstIP, dstPort, _ := strings.Cut(dst, ":")
		if podIPs[srcIP] == "" || podIPs[dstIP] == "" || len(data) == 0 {
			continue // the node's probes, the API server, DNS, the controller
		}
		if bytes.Contains(data, []byte("HTTP/1.1")) || bytes.Contains(data, []byte("GET /")) || bytes.Contains(data, []byte(detect.Preface)) {
			t.Errorf("plaintext HTTP between pods in %s: %q", flow, data[:min(len(data), 120)])
		}
		if dstPort != "8080" {
			continue // the server's answers
		}
		l, ok := detect.TLSRecordLen(data)
		if !ok || len(data) < l {
			t.Errorf("%s does not start with TLS: %q", flow, data[:min(len(data), 40)])
			continue
		}
		protos, err := detect.ClientHelloALPN(data[:l])
		if err != nil || !slices.Contains(protos, "meshctl/h2") {
			t.Errorf("%s: ClientHello offers %v (%v), want meshctl/h2", flow, protos, err)
			continue
		}
		hellos++
	}
	if hellos == 0 {
		t.Errorf("the capture holds no connection from the client to the server pods (%d streams)", len(streams))
	}
	t.Logf("capture: %d meshed connections between the test's pods, all TLS (ALPN meshctl/h2), no plaintext HTTP", hellos)
}

func podsOf(t *testing.T, ns, selector string) []string {
	t.Helper()
	list, err := cluster.client.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, p := range list.Items {
		if p.DeletionTimestamp == nil {
			out = append(out, p.Name)
		}
	}
	return out
}

func scale(t *testing.T, ns, name string, replicas int32) {
	t.Helper()
	// The Deployment controller writes to the object too: retry on conflicts.
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		s, err := cluster.client.AppsV1().Deployments(ns).GetScale(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		s.Spec.Replicas = replicas
		_, err = cluster.client.AppsV1().Deployments(ns).UpdateScale(context.Background(), name, s, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// backendsSince checks the reports after the first `from` reached want backends.
func backendsSince(r []loadReport, from, want int) error {
	seen := map[string]bool{}
	for _, rep := range r[min(from, len(r)):] {
		for b := range rep.Backends {
			seen[b] = true
		}
	}
	if len(seen) < want {
		return fmt.Errorf("reached %d backends, want %d", len(seen), want)
	}
	return nil
}

func errorsSince(r []loadReport, from int) (errs, requests int) {
	for _, rep := range r[min(from, len(r)):] {
		errs += rep.Errors
		requests += rep.Requests
	}
	return errs, requests
}

// updateWatch measures how long an EndpointSlice change takes to reach the
// client's proxy: it watches the Service's EndpointSlices and polls the
// proxy's /destinations, noting when each address appears and disappears in
// each.
type updateWatch struct {
	stop func() (latencies []time.Duration, pollEvery time.Duration)
}

func watchUpdates(t *testing.T, ns, clientPod string) updateWatch {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	// A client of its own, so that polling is not held back by the shared
	// client's rate limit.
	cfg := rest.CopyConfig(cluster.cfg)
	cfg.QPS, cfg.Burst = 500, 1000
	fast, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	svc, err := cluster.client.CoreV1().Services(ns).Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	dst := svc.Spec.ClusterIP + ":80"
	sel := discoveryv1.LabelServiceName + "=web"
	list, err := cluster.client.DiscoveryV1().EndpointSlices(ns).List(ctx, metav1.ListOptions{LabelSelector: sel})
	if err != nil {
		t.Fatal(err)
	}
	w, err := cluster.client.DiscoveryV1().EndpointSlices(ns).Watch(ctx, metav1.ListOptions{LabelSelector: sel, ResourceVersion: list.ResourceVersion})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	events := map[string][2]time.Time{} // "+addr" / "-addr" → [seen in the slices, seen at the proxy]
	note := func(which int, prev, cur map[string]bool, now time.Time) {
		mu.Lock()
		defer mu.Unlock()
		for _, d := range []struct {
			sign     string
			from, to map[string]bool
		}{{"+", prev, cur}, {"-", cur, prev}} {
			for a := range d.to {
				if !d.from[a] {
					e := events[d.sign+a]
					if e[which].IsZero() {
						e[which] = now
					}
					events[d.sign+a] = e
				}
			}
		}
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { // the API server's view, as the controller gets it
		defer wg.Done()
		bySlice := map[string]map[string]bool{}
		last := map[string]bool{}
		for _, s := range list.Items {
			bySlice[s.Name] = readyAddrs(s.Endpoints)
			for a := range bySlice[s.Name] {
				last[a] = true
			}
		}
		for ev := range w.ResultChan() {
			s, ok := ev.Object.(*discoveryv1.EndpointSlice)
			if !ok {
				continue
			}
			bySlice[s.Name] = readyAddrs(s.Endpoints)
			if ev.Type == "DELETED" {
				delete(bySlice, s.Name)
			}
			cur := map[string]bool{}
			for _, r := range bySlice {
				for a := range r {
					cur[a] = true
				}
			}
			note(0, last, cur, time.Now())
			last = cur
		}
	}()
	var polls int
	var pollErr error
	started := time.Now()
	go func() { // the proxy's view
		defer wg.Done()
		var last map[string]bool
		for ctx.Err() == nil {
			raw, err := adminclient.Do(ctx, fast.CoreV1().RESTClient(), ns, clientPod, meshnames.AdminDestinations)
			now := time.Now()
			var dests map[string][]struct {
				Addr string `json:"addr"`
			}
			if err == nil {
				err = json.Unmarshal(raw, &dests)
			}
			if err != nil {
				pollErr = err
				continue
			}
			polls++
			cur := map[string]bool{}
			for _, e := range dests[dst] {
				cur[e.Addr] = true
			}
			if last != nil {
				note(1, last, cur, now)
			}
			last = cur
		}
	}()
	return updateWatch{stop: func() ([]time.Duration, time.Duration) {
		cancel()
		w.Stop()
		wg.Wait()
		mu.Lock()
		defer mu.Unlock()
		var out []time.Duration
		for _, e := range events {
			if !e[0].IsZero() && !e[1].IsZero() {
				out = append(out, e[1].Sub(e[0]))
			}
		}
		if len(out) == 0 {
			t.Logf("%d polls of the proxy's /destinations; last error: %v; events: %v", polls, pollErr, events)
		}
		return out, time.Since(started) / time.Duration(max(polls, 1))
	}}
}

// readyAddrs are the ready endpoints' addresses with the web port.
func readyAddrs(eps []discoveryv1.Endpoint) map[string]bool {
	out := map[string]bool{}
	for _, e := range eps {
		if e.Conditions.Ready == nil || *e.Conditions.Ready {
			for _, a := range e.Addresses {
				out[a+":8080"] = true
			}
		}
	}
	return out
}

// reportLatency reports the update latencies and fails when their median or
// worst is beyond a few times what was measured here.
func reportLatency(t *testing.T, d []time.Duration, pollEvery time.Duration) {
	t.Helper()
	if len(d) == 0 {
		t.Error("no EndpointSlice change was seen reaching the proxy")
		return
	}
	slices.Sort(d)
	t.Logf("EndpointSlice change → client proxy's endpoints: %d changes, min %v, median %v, max %v (the proxy polled every %v)",
		len(d), d[0].Round(time.Millisecond), d[len(d)/2].Round(time.Millisecond), d[len(d)-1].Round(time.Millisecond), pollEvery.Round(time.Millisecond))
	// Measured here: medians of 10 to 41 ms, at most 46 ms. The bounds are a
	// few times that plus the polling, so that a change queued behind a
	// resync or a slow path fails the test.
	median, worst := d[len(d)/2], d[len(d)-1]
	medianBound, worstBound := 200*time.Millisecond+pollEvery, time.Second+pollEvery
	measure(t, "discovery.endpointslice_to_proxy_median_ms", float64(median.Microseconds())/1000, "ms", fmt.Sprintf("<= %d", medianBound.Milliseconds()))
	measure(t, "discovery.endpointslice_to_proxy_max_ms", float64(worst.Microseconds())/1000, "ms", fmt.Sprintf("<= %d", worstBound.Milliseconds()))
	if median > medianBound {
		t.Errorf("updates took %v to reach the proxy (median), want at most %v", median, medianBound)
	}
	if worst > worstBound {
		t.Errorf("an update took %v to reach the proxy, want at most %v", worst, worstBound)
	}
}
