//go:build e2e

package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshctl/meshctl/identity/ca"
)

// resilienceServer is one Deployment of the resilience scenarios.
type resilienceServer struct {
	Replicas int
	Service  string // the value of its "service" label, which Services select
	Args     []string
}

// loadSummary is the final line of `testapp load --count`.
type loadSummary struct {
	Final     bool           `json:"final"`
	Requests  int            `json:"requests"`
	Errors    int            `json:"errors"`
	P50ms     float64        `json:"p50_ms"`
	P99ms     float64        `json:"p99_ms"`
	MaxMs     float64        `json:"max_ms"`
	Backends  map[string]int `json:"backends"`
	Statuses  map[string]int `json:"statuses"`
	DurationS float64        `json:"duration_s"`
}

func (s loadSummary) successRate() float64 {
	return 1 - float64(s.Errors)/float64(s.Requests)
}

// load describes one run of the load generator as a Job.
type load struct {
	Namespace, Name, Service string
	RPS, Count, Concurrency  int
	Linger                   string
	ServiceAccount           string // "": default
	Unmeshed                 bool   // opt the client pod out of injection
}

// startLoad starts the load generator and returns its pod's name.
func startLoad(t *testing.T, l load) string {
	t.Helper()
	if l.Concurrency == 0 {
		l.Concurrency = 1
	}
	if l.Linger == "" {
		l.Linger = "0s"
	}
	applyTemplate(t, "resilience-load.yaml", l)
	return jobPod(t, l.Namespace, l.Name)
}

// jobPod waits for a Job's pod to run (or have run) and returns its name.
func jobPod(t *testing.T, ns, job string) string {
	t.Helper()
	var pod string
	eventually(t, "the load generator "+job+" to run", 2*time.Minute, func(ctx context.Context) error {
		pods, err := cluster.client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "job-name=" + job})
		if err != nil || len(pods.Items) == 0 {
			return fmt.Errorf("no pod yet (%v)", err)
		}
		p := pods.Items[0]
		if p.Status.Phase != corev1.PodRunning && p.Status.Phase != corev1.PodSucceeded {
			return fmt.Errorf("pod %s is %s", p.Name, p.Status.Phase)
		}
		pod = p.Name
		return nil
	})
	return pod
}

// runLoad runs the load generator to its final summary.
func runLoad(t *testing.T, l load, timeout time.Duration) (loadSummary, string) {
	t.Helper()
	pod := startLoad(t, l)
	return waitFinal(t, l.Namespace, pod, timeout), pod
}

// waitFinal waits for a load generator's final summary.
func waitFinal(t *testing.T, ns, pod string, timeout time.Duration) loadSummary {
	t.Helper()
	var final loadSummary
	eventually(t, "the load generator "+pod+" to finish", timeout, func(ctx context.Context) error {
		logs, err := cluster.client.CoreV1().Pods(ns).GetLogs(pod, &corev1.PodLogOptions{Container: "load"}).DoRaw(ctx)
		if err != nil {
			return err
		}
		s := bufio.NewScanner(bytes.NewReader(logs))
		for s.Scan() {
			if json.Unmarshal(s.Bytes(), &final) == nil && final.Final {
				return nil
			}
		}
		return fmt.Errorf("no final summary yet")
	})
	return final
}

// controlPod switches a testapp pod's failing on or off through the API
// server's pods/proxy (its inbound proxy lets the node in).
func controlPod(t *testing.T, ns, pod string, fail bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := cluster.client.CoreV1().RESTClient().Post().Namespace(ns).Resource("pods").Name(pod+":8080").
		SubResource("proxy").Suffix("control").Param("fail", fmt.Sprint(fail)).DoRaw(ctx)
	if err != nil {
		t.Fatalf("switch %s to fail=%v: %v", pod, fail, err)
	}
}

func deleteJob(ns, name string) {
	bg := metav1.DeletePropagationBackground
	_ = cluster.client.BatchV1().Jobs(ns).Delete(context.Background(), name, metav1.DeleteOptions{PropagationPolicy: &bg})
}

// TestResilienceOnTheCluster runs the resilience scenarios against meshed
// servers whose Services ask for balancing, retries, budgets, timeouts and
// failure accrual by annotation; the clients are plain load generators whose
// proxies enforce it.
func TestResilienceOnTheCluster(t *testing.T) {
	anchor := mustCA(t)(ca.NewTrustAnchor("cluster.local", 24*time.Hour))
	issuer := mustCA(t)(ca.NewIssuer(anchor, "cluster.local", 12*time.Hour))
	deployControlPlane(t, "24h", issuer, anchor)
	ns := meshedNamespace(t, "resilience")
	servers := map[string]resilienceServer{
		"fast":   {Replicas: 2, Service: "bal"},
		"slow":   {Replicas: 1, Service: "bal", Args: []string{"--delay", "50ms"}},
		"flaky":  {Replicas: 2, Service: "flaky", Args: []string{"--fail-rate", "0.2"}},
		"down":   {Replicas: 1, Service: "down", Args: []string{"--fail-rate", "1"}},
		"cb":     {Replicas: 3, Service: "cb"},
		"sleepy": {Replicas: 1, Service: "sleepy", Args: []string{"--delay", "2s"}},
		"steady": {Replicas: 3, Service: "steady"},
	}
	services := map[string]map[string]string{
		"bal":         {},
		"flaky-retry": {"retry.meshctl.io/http": "5xx", "retry.meshctl.io/limit": "4", "retry.meshctl.io/budget-ratio": "0.3"},
		"flaky":       {},
		"down":        {"retry.meshctl.io/http": "5xx", "retry.meshctl.io/limit": "4"},
		"cb": {"balancer.meshctl.io/failure-accrual": "consecutive",
			"balancer.meshctl.io/failure-accrual-consecutive-min-penalty": "5s",
			"balancer.meshctl.io/failure-accrual-consecutive-max-penalty": "20s"},
		"sleepy": {"timeout.meshctl.io/request": "500ms"},
		"steady": {"retry.meshctl.io/http": "5xx", "retry.meshctl.io/limit": "3"},
	}
	selectors := map[string]string{"bal": "bal", "flaky-retry": "flaky", "flaky": "flaky", "down": "down", "cb": "cb", "sleepy": "sleepy", "steady": "steady"}
	applyTemplate(t, "resilience-servers.yaml", map[string]any{"Namespace": ns, "Servers": servers, "Services": services, "Selectors": selectors})
	for name := range servers {
		waitReady(t, ns, name, 3*time.Minute)
	}

	t.Run("a slow replica gets less traffic", func(t *testing.T) {
		final, _ := runLoad(t, load{Namespace: ns, Name: "load-balance", Service: "bal", Count: 3000}, 3*time.Minute)
		var fast []int
		slow := 0
		for pod, n := range final.Backends {
			if strings.HasPrefix(pod, "slow-") {
				slow += n
			} else {
				fast = append(fast, n)
			}
		}
		t.Logf("3,000 requests over one keep-alive connection: fast replicas %v, slow (+50 ms) %d; round robin: 1,000 each; %d errors, p50 %.1f ms",
			fast, slow, final.Errors, final.P50ms)
		if final.Errors > 0 || len(fast) != 2 || slow == 0 || fast[0] == 0 || fast[1] == 0 {
			t.Fatalf("want every replica to get some and no errors: %+v", final)
		}
		// Peak-EWMA picks the +50 ms replica only to measure it again (a
		// handful of requests in 3,000; one in the run docs/reliability.md quotes); round robin
		// would give it 1,000 and a latency-blind power of two choices about
		// 333. 1 % catches either, with room for a re-measure or two.
		measure(t, "resilience.slow_replica_requests_of_3000", float64(slow), "requests", "<= 30")
		if slow > 30 {
			t.Errorf("the slow replica got %d of 3,000 requests, want at most 30 (1 %%); fast ones %v", slow, fast)
		}
	})

	t.Run("retries within a budget hide a 20% failure rate", func(t *testing.T) {
		on, _ := runLoad(t, load{Namespace: ns, Name: "load-retry-on", Service: "flaky-retry", Count: 10000, Concurrency: 4}, 5*time.Minute)
		off, _ := runLoad(t, load{Namespace: ns, Name: "load-retry-off", Service: "flaky", Count: 2000, Concurrency: 4}, 3*time.Minute)
		t.Logf("retries on (5xx, limit 4, budget ratio 0.3): %d requests, %d failed (statuses %v): %.3f%% success, p99 %.1f ms; at random, 0.2⁵ × %d = %.1f would fail all five tries",
			on.Requests, on.Errors, on.Statuses, 100*on.successRate(), on.P99ms, on.Requests, 0.00032*float64(on.Requests))
		t.Logf("retries off: %d requests, %d failed: %.2f%% success", off.Requests, off.Errors, 100*off.successRate())
		measure(t, "resilience.retry_success_pct", 100*on.successRate(), "%", ">= 99.9")
		measure(t, "resilience.no_retry_success_pct", 100*off.successRate(), "%", "75..85")
		if on.successRate() < 0.999 {
			t.Errorf("with retries: %.3f%% success, want at least 99.9%%", 100*on.successRate())
		}
		if r := off.successRate(); r < 0.75 || r > 0.85 {
			t.Errorf("without retries: %.2f%% success, want about 80%%", 100*r)
		}
	})

	t.Run("the retry budget holds against a service failing everything", func(t *testing.T) {
		const requests = 800
		clientID := "client_id=spiffe://cluster.local/ns/" + ns + "/sa/default"
		downPods := podsOf(t, ns, "app=down")
		served := func() float64 {
			total := 0.0
			for _, p := range downPods {
				m, err := proxyMetrics(context.Background(), ns, p)
				if err != nil {
					t.Fatal(err)
				}
				total += sumMatching(m, "request_total{", "direction=inbound", clientID)
			}
			return total
		}
		before := served()
		final, pod := runLoad(t, load{Namespace: ns, Name: "load-budget", Service: "down", RPS: 100, Count: requests, Linger: "120s"}, 3*time.Minute)
		defer deleteJob(ns, "load-budget")
		retries := served() - before - requests
		m, err := proxyMetrics(context.Background(), ns, pod)
		if err != nil {
			t.Fatal(err)
		}
		dst := "destination=down." + ns + ":80"
		counted, refused := sumMatching(m, "retry_total{", dst), sumMatching(m, "retry_budget_exhausted_total{", dst)
		// The budget starts when the client's proxy first resolves the
		// Service, after the load generator started its clock.
		bound := 0.2*requests + 10*final.DurationS
		t.Logf("%d requests in %.2f s to a service failing all: %.0f retries reached it (the client's proxy counted %.0f, and %.0f refused by the budget); bound 0.2 × %d + 10/s × %.2f s = %.1f; without a budget: %d",
			final.Requests, final.DurationS, retries, counted, refused, requests, final.DurationS, bound, 4*requests)
		measure(t, "resilience.budget_retries", retries, "retries", fmt.Sprintf("<= %.1f (0.2 × requests + 10/s × duration)", bound))
		if final.Errors != requests {
			t.Errorf("%d of %d requests failed, want all", final.Errors, requests)
		}
		if retries > bound || retries <= 0 {
			t.Errorf("%.0f retries, want some and at most %.0f", retries, bound)
		}
		if counted != retries || refused == 0 {
			t.Errorf("client metrics: %.0f retries, %.0f refused; the servers saw %.0f retries", counted, refused, retries)
		}
	})

	t.Run("a request timeout answers 504", func(t *testing.T) {
		final, _ := runLoad(t, load{Namespace: ns, Name: "load-timeout", Service: "sleepy", RPS: 2, Count: 6}, 2*time.Minute)
		t.Logf("2 s endpoint behind a 500 ms request timeout: statuses %v, latency p50 %.0f ms, max %.0f ms", final.Statuses, final.P50ms, final.MaxMs)
		if final.Statuses["504"] != 6 {
			t.Errorf("statuses %v, want 6 × 504", final.Statuses)
		}
		measure(t, "resilience.timeout_504_max_ms", final.MaxMs, "ms", "450..1500")
		if final.P50ms < 450 || final.MaxMs > 1500 {
			t.Errorf("504s after p50 %.0f ms, max %.0f ms: want about 500 ms", final.P50ms, final.MaxMs)
		}
	})

	t.Run("failure accrual takes a failing replica out and readmits it", func(t *testing.T) {
		pod := startLoad(t, load{Namespace: ns, Name: "load-cb", Service: "cb", RPS: 200, Count: 0, Concurrency: 2})
		defer deleteJob(ns, "load-cb")
		replicas := podsOf(t, ns, "app=cb")
		reports := func(ctx context.Context) []loadReport {
			r, err := loadReports(ctx, ns, pod)
			if err != nil {
				t.Fatal(err)
			}
			return r
		}
		eventually(t, "traffic on every replica", time.Minute, func(ctx context.Context) error {
			r := reports(ctx)
			if len(r) < 3 {
				return fmt.Errorf("%d reports", len(r))
			}
			return backendsSince(r, len(r)-1, len(replicas))
		})
		victim := replicas[0]
		n0 := len(reports(context.Background()))
		controlPod(t, ns, victim, true)
		faulted := time.Now()
		// Once the client's proxy has taken the replica out, the only
		// failures left are its probes (one request each penalty: 5 s, then
		// doubling up to 20 s).
		ejectedGauge := func(ctx context.Context) float64 {
			m, err := proxyMetrics(ctx, ns, pod)
			if err != nil {
				t.Fatal(err)
			}
			return sumMatching(m, "balancer_ejected_endpoints{", "destination=cb."+ns+":80")
		}
		var n1 int
		var ejectedAfter time.Duration
		eventually(t, "the failing replica to be ejected", time.Minute, func(ctx context.Context) error {
			if g := ejectedGauge(ctx); g != 1 {
				return fmt.Errorf("ejected gauge %v", g)
			}
			// Seen now: the load generator's logs, read next, are not part
			// of the time (CI saw them add most of 3.8 s).
			ejectedAfter = time.Since(faulted)
			n1 = len(reports(ctx)) + 1 // from the next whole second
			return nil
		})
		const window = 25 // seconds of reports
		eventually(t, "the fault's reports", time.Minute, func(ctx context.Context) error {
			if n := len(reports(ctx)); n < n1+window {
				return fmt.Errorf("%d reports since the ejection", n-n1)
			}
			return nil
		})
		ejected := ejectedGauge(context.Background())
		controlPod(t, ns, victim, false)
		healed := time.Now()
		r := reports(context.Background())
		firstErrs, firstReqs := errorsSince(r[:n1], n0)
		errs, reqs := errorsSince(r[:n1+window], n1)
		rate := 1 - float64(errs)/float64(reqs)
		victimHits := 0
		for _, rep := range r[n1 : n1+window] {
			victimHits += rep.Backends[victim]
		}
		t.Logf("one of 3 replicas failing everything: ejected within %.1f s, %d of %d requests failed until then; the next %d s: %d of %d failed (%.3f%% success: the probes), %d successes from it; ejected gauge %v",
			ejectedAfter.Seconds(), firstErrs, firstReqs, window, errs, reqs, 100*rate, victimHits, ejected)
		// Consecutive failure accrual ejects after 7 failures in a row; with
		// two requests in flight one more may fail before the ejection shows.
		// That count is the contract (at 200 requests/s it is 35 ms of
		// traffic). The time is what an operator watching the gauge sees: it
		// includes polling the client proxy's metrics through the API server
		// and the kubelet, which on a busy 2-core CI machine took 3.8 s once,
		// so its bound only catches an ejection that waits for something
		// (a resync, a probe period), not the polling's jitter.
		measure(t, "resilience.ejection_s", ejectedAfter.Seconds(), "s", "<= 10")
		measure(t, "resilience.failures_in_25s_after_ejection", float64(errs), "requests", ">= 99.9 % success")
		measure(t, "resilience.failures_before_ejection", float64(firstErrs), "requests", "7..9")
		if firstErrs < 7 || firstErrs > 9 {
			t.Errorf("%d requests failed before the replica was ejected; the accrual limit is 7 in a row (up to 2 more in flight)", firstErrs)
		}
		if ejectedAfter > 10*time.Second {
			t.Errorf("the replica was ejected %.1f s after it began to fail, want within 10 s of polling (7 failures at 200 requests/s take 35 ms)", ejectedAfter.Seconds())
		}
		if rate < 0.999 {
			t.Errorf("success %.3f%% once the replica was out, want at least 99.9%%", 100*rate)
		}
		if ejected != 1 || victimHits != 0 {
			t.Errorf("balancer_ejected_endpoints = %v and %d answers from the failing replica; want 1 and none", ejected, victimHits)
		}
		eventually(t, "the healed replica to be readmitted", time.Minute, func(ctx context.Context) error {
			r := reports(ctx)
			for _, rep := range r[n1+window:] {
				if rep.Backends[victim] > 0 {
					return nil
				}
			}
			return fmt.Errorf("no answer from %s yet", victim)
		})
		// Its probe comes at the end of the current penalty: at most the
		// 20 s maximum (the jitter only shortens it), plus the 1 s reports,
		// the 250 ms polling and reading the logs through the API server.
		readmitted := time.Since(healed)
		measure(t, "resilience.readmission_s", readmitted.Seconds(), "s", "<= 25")
		if readmitted > 25*time.Second {
			t.Errorf("readmitted %.1f s after healing, want within the 20 s maximum penalty (+5 s)", readmitted.Seconds())
		}
	})

	t.Run("killing a replica under 500 rps loses nothing with retries", func(t *testing.T) {
		pod := startLoad(t, load{Namespace: ns, Name: "load-kill", Service: "steady", RPS: 500, Count: 15000, Concurrency: 8})
		eventually(t, "steady load", time.Minute, func(ctx context.Context) error {
			r, err := loadReports(ctx, ns, pod)
			if err != nil || len(r) < 5 {
				return fmt.Errorf("%d reports (%v)", len(r), err)
			}
			return nil
		})
		victim := podsOf(t, ns, "app=steady")[0]
		zero := int64(0)
		if err := cluster.client.CoreV1().Pods(ns).Delete(context.Background(), victim, metav1.DeleteOptions{GracePeriodSeconds: &zero}); err != nil {
			t.Fatal(err)
		}
		final := waitFinal(t, ns, pod, 3*time.Minute)
		t.Logf("pod %s killed under load: %d requests, %d failed (%.3f%% success), statuses %v, p99 %.1f ms",
			victim, final.Requests, final.Errors, 100*final.successRate(), final.Statuses, final.P99ms)
		measure(t, "resilience.killed_replica_lost_requests", float64(final.Errors), "requests", "<= 15 (99.9 %)")
		if final.successRate() < 0.999 {
			t.Errorf("%.3f%% success, want at least 99.9%%", 100*final.successRate())
		}
	})
}
