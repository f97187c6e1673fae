//go:build e2e

package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"math"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meshctl/meshctl/identity/ca"
	"github.com/meshctl/meshctl/proxy/metrics"
)

// statRow is the part of `meshctl stat -o json` checked here.
type statRow struct {
	Name        string   `json:"name"`
	Requests    float64  `json:"requests"`
	SuccessRate *float64 `json:"success_rate"`
	P50         *float64 `json:"latency_p50_ms"`
	P99         *float64 `json:"latency_p99_ms"`
}

// bucketOf is the upper bound of the latency bucket holding v ms.
func bucketOf(v float64) float64 {
	for _, b := range metrics.LatencyBucketsMs {
		if v <= b {
			return b
		}
	}
	return math.Inf(1)
}

// TestStatMatchesWhatTheLoadGeneratorSaw: a load generator that knows
// exactly what it sent (1,000 requests, the server failing every 10th and
// answering in 25 ms, every 50th in 150 ms) runs inside `meshctl stat`'s
// window; stat's request count, success rate and percentiles must match.
func TestStatMatchesWhatTheLoadGeneratorSaw(t *testing.T) {
	anchor := mustCA(t)(ca.NewTrustAnchor("cluster.local", 24*time.Hour))
	issuer := mustCA(t)(ca.NewIssuer(anchor, "cluster.local", 12*time.Hour))
	deployControlPlane(t, "24h", issuer, anchor)
	ns := meshedNamespace(t, "stat")
	applyTemplate(t, "accuracy.yaml", map[string]string{"Namespace": ns})
	waitReady(t, ns, "web", 3*time.Minute)

	// meshctl stat starts measuring; once it has its first sample, the load runs.
	bin := filepath.Join(cluster.local.RepoDir, "bin", "meshctl")
	stat := exec.Command(bin, "stat", "deploy", "web", "-n", ns, "-t", "70s", "-o", "json", "--kubeconfig", cluster.local.Kubeconfig())
	var statOut bytes.Buffer
	stat.Stdout = &statOut
	stderr, err := stat.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := stat.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = stat.Process.Kill() })
	statErr := bufio.NewReader(stderr)
	line, err := statErr.ReadString('\n')
	if err != nil || !strings.Contains(line, "measuring") {
		t.Fatalf("meshctl stat did not start measuring: %q %v", line, err)
	}
	go func() { _, _ = io.Copy(io.Discard, statErr) }()
	// meshctl top follows the same traffic from the proxies' tap streams.
	top := exec.Command(bin, "top", "deploy/web", "-n", ns, "--once", "--duration", "65s", "-o", "json", "--kubeconfig", cluster.local.Kubeconfig())
	var topOut bytes.Buffer
	top.Stdout = &topOut
	topErr, err := top.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := top.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = top.Process.Kill() })
	topErrLines := bufio.NewReader(topErr)
	if line, err := topErrLines.ReadString('\n'); err != nil || !strings.Contains(line, "collecting") {
		t.Fatalf("meshctl top did not start: %q %v", line, err)
	}
	go func() { _, _ = io.Copy(io.Discard, topErrLines) }()
	applyTemplate(t, "accuracy-load.yaml", map[string]string{"Namespace": ns})
	final := waitFinal(t, ns, jobPod(t, ns, "load"), 2*time.Minute)
	if err := stat.Wait(); err != nil {
		t.Fatalf("meshctl stat: %v\n%s", err, statOut.String())
	}
	var rows []statRow
	if err := json.Unmarshal(statOut.Bytes(), &rows); err != nil || len(rows) != 1 {
		t.Fatalf("meshctl stat -o json: %v\n%s", err, statOut.String())
	}
	got := rows[0]
	trueRate := 1 - float64(final.Errors)/float64(final.Requests)
	t.Logf("load generator: %d requests, %d failed (success %.2f%%), p50 %.1f ms, p99 %.1f ms", final.Requests, final.Errors, 100*trueRate, final.P50ms, final.P99ms)
	t.Logf("meshctl stat:   %.0f requests, success %.2f%%, p50 ≤ %v ms, p99 ≤ %v ms", got.Requests, 100*deref(got.SuccessRate), deref(got.P50), deref(got.P99))
	if math.Abs(got.Requests-float64(final.Requests)) > 0.02*float64(final.Requests) {
		t.Errorf("stat counted %.0f requests, the load generator sent %d (more than 2%% apart)", got.Requests, final.Requests)
	}
	if got.SuccessRate == nil || math.Abs(*got.SuccessRate-trueRate) > 0.01 {
		t.Errorf("stat's success rate %v, the truth %.4f (more than 1 point apart)", got.SuccessRate, trueRate)
	}
	// The server answers 98 % of requests after 25 ms and 2 % after 150 ms:
	// at the server's proxy, where stat measures, the true p50 is 25 ms and
	// the true p99 150 ms (plus microseconds). The client, one more hop
	// away, sees a little more (logged above).
	if got.P50 == nil || *got.P50 != bucketOf(25) {
		t.Errorf("stat's p50 bucket %v, the true p50 (25 ms) is in the bucket up to %v", got.P50, bucketOf(25))
	}
	if got.P99 == nil || *got.P99 != bucketOf(150) {
		t.Errorf("stat's p99 bucket %v, the true p99 (150 ms) is in the bucket up to %v", got.P99, bucketOf(150))
	}

	// Without -t, stat answers at once with the proxies' last minute (their
	// own snapshots): a part of the same load, its success rate alike.
	instant := exec.Command(bin, "stat", "deploy", "web", "-n", ns, "-o", "json", "--kubeconfig", cluster.local.Kubeconfig())
	var instantOut, instantErr bytes.Buffer
	instant.Stdout, instant.Stderr = &instantOut, &instantErr
	if err := instant.Run(); err != nil {
		t.Fatalf("meshctl stat (last minute): %v\n%s", err, instantErr.String())
	}
	var last []struct {
		statRow
		WindowSeconds float64 `json:"window_seconds"`
		RPS           float64 `json:"rps"`
	}
	if err := json.Unmarshal(instantOut.Bytes(), &last); err != nil || len(last) != 1 {
		t.Fatalf("meshctl stat -o json (last minute): %v\n%s", err, instantOut.String())
	}
	l := last[0]
	t.Logf("meshctl stat, last minute: %.0f requests over %.1f s (%.1f/s), success %.2f%%; stderr %q", l.Requests, l.WindowSeconds, l.RPS, 100*deref(l.SuccessRate), instantErr.String())
	measure(t, "stat.last_minute_window_s", l.WindowSeconds, "s", "45..60 (snapshots every 15 s)")
	if strings.Contains(instantErr.String(), "measuring") || !strings.Contains(instantErr.String(), "the last minute") {
		t.Errorf("stat without -t measured a window instead of answering with the last minute: %q", instantErr.String())
	}
	if l.WindowSeconds < 44 || l.WindowSeconds > 61 || l.Requests > float64(final.Requests) ||
		(l.Requests >= 200 && math.Abs(deref(l.SuccessRate)-trueRate) > 0.03) {
		t.Errorf("stat's last minute: %.0f requests over %.1f s at %.2f/s, success %v; want a 45–60 s window, at most the %d sent, success near %.4f",
			l.Requests, l.WindowSeconds, l.RPS, l.SuccessRate, final.Requests, trueRate)
	}

	if err := top.Wait(); err != nil {
		t.Fatalf("meshctl top: %v\n%s", err, topOut.String())
	}
	var topRows []struct {
		Path      string `json:"path"`
		Method    string `json:"method"`
		Count     int    `json:"count"`
		Successes int    `json:"successes"`
		Sampled   bool   `json:"sampled"`
	}
	if err := json.Unmarshal(topOut.Bytes(), &topRows); err != nil {
		t.Fatalf("meshctl top -o json: %v\n%s", err, topOut.String())
	}
	t.Logf("meshctl top: %+v", topRows)
	if len(topRows) != 1 || topRows[0].Path != "/" || topRows[0].Method != "GET" || topRows[0].Count != final.Requests ||
		topRows[0].Successes != final.Requests-final.Errors || topRows[0].Sampled {
		t.Errorf("meshctl top saw %+v; the load generator sent %d GET / (%d failed)", topRows, final.Requests, final.Errors)
	}
}

func deref(p *float64) float64 {
	if p == nil {
		return math.NaN()
	}
	return *p
}
