//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meshctl/meshctl/controller/identitysvc"
	"github.com/meshctl/meshctl/internal/api"
)

// countingReviewer counts and times the TokenReviews its reviewer makes,
// and keeps the most that were in flight at once.
type countingReviewer struct {
	r identitysvc.Reviewer
	n atomic.Int64

	inFlight, peak atomic.Int64
	mu             sync.Mutex
	took           []time.Duration
}

func (c *countingReviewer) Review(ctx context.Context, token, audience string) (string, error) {
	c.n.Add(1)
	now := c.inFlight.Add(1)
	for p := c.peak.Load(); now > p && !c.peak.CompareAndSwap(p, now); p = c.peak.Load() {
	}
	start := time.Now()
	user, err := c.r.Review(ctx, token, audience)
	took := time.Since(start)
	c.inFlight.Add(-1)
	c.mu.Lock()
	c.took = append(c.took, took)
	c.mu.Unlock()
	return user, err
}

// reset forgets the timings and the peak.
func (c *countingReviewer) reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.took = nil
	c.peak.Store(0)
}

// durations returns the timings, sorted.
func (c *countingReviewer) durations() []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Sorted(slices.Values(c.took))
}

// measureConcurrentIssuance sends 100 certificate requests at once, each
// with its own token (the API server caches a token's review for 10 s, so
// one token would measure its cache), and reports their latency next to
// that of the TokenReviews behind them, as the service saw them and as the
// API server measured them.
//
// The client does what the proxy's identity client does with a 503 "busy"
// (every review slot taken for longer than ReviewWait): it retries after
// Retry-After. A request's latency runs from its first try to its
// certificate, retries included. Tokens, keys, CSRs and bodies are made
// before the clock starts, and the clock starts once the node is quiet:
// after the dashboard's scale test the node spends most of a minute at
// 100 % CPU tearing down 200 pods, and the same TokenReviews took about 10
// times as long (p50 483 ms against 27 to 58 ms; issuance p99 3.2 s in a CI
// run that failed on it).
func measureConcurrentIssuance(t *testing.T, base string, reviewer *countingReviewer, mintToken func() string, id string) {
	const n = 100
	bodies := make([][]byte, n)
	for i := range bodies {
		csr := csrPEMFor(t, newKey(t), &x509.CertificateRequest{URIs: []*url.URL{mustURL(id)}})
		bodies[i], _ = json.Marshal(api.CertificateRequest{CSR: csr, Token: mintToken()})
	}
	// The previous test may have left the node tearing down its pods.
	waited := waitForQuietNode(t, 3*time.Minute)
	ctx := context.Background()
	before, err := apiserverTokenReviewSeconds(ctx)
	if err != nil {
		t.Fatalf("read the API server's metrics: %v", err)
	}
	reviewer.reset()
	reviewsBefore := reviewer.n.Load()

	var (
		mu     sync.Mutex
		lat    []time.Duration
		busy   atomic.Int64
		failed atomic.Int64
		wg     sync.WaitGroup
		go_    = make(chan struct{})
	)
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: n}}
	defer client.CloseIdleConnections()
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-go_
			start := time.Now()
			for try := 1; ; try++ {
				status, body := postBody(t, client, base, bodies[i])
				if status == http.StatusServiceUnavailable && try < 10 {
					var e api.Error
					if json.Unmarshal(body, &e) == nil && e.Reason == "busy" {
						busy.Add(1)
						time.Sleep(time.Second) // the service's Retry-After
						continue
					}
				}
				if status != 200 {
					failed.Add(1)
					t.Errorf("concurrent request, try %d: %d %s", try, status, body)
				}
				break
			}
			mu.Lock()
			lat = append(lat, time.Since(start))
			mu.Unlock()
		}()
	}
	close(go_)
	wg.Wait()
	slices.Sort(lat)
	reviews := reviewer.durations()
	after, err := apiserverTokenReviewSeconds(ctx)
	if err != nil {
		t.Fatalf("read the API server's metrics: %v", err)
	}
	// Every certificate cost exactly one review of its own token: a service
	// that skipped or repeated reviews fails here.
	if got := reviewer.n.Load() - reviewsBefore; got != n || failed.Load() > 0 {
		t.Fatalf("%d TokenReviews for %d requests (%d failed), want exactly one each", got, n, failed.Load())
	}
	// The API server saw them all (and perhaps the cluster's own controller's).
	served := after.count - before.count
	if served < n {
		t.Fatalf("the API server counted %.0f TokenReviews during the burst, fewer than the service's %d", served, n)
	}
	serverMean := time.Duration((after.sum - before.sum) / served * float64(time.Second))
	q := func(d []time.Duration, f float64) time.Duration {
		return d[int(f*float64(len(d)-1))].Round(time.Millisecond)
	}
	maxReviews := int64(identitysvc.DefaultMaxConcurrentReviews)
	t.Logf("issuance, %d concurrent requests: p50 %s, p99 %s; %d busy answers retried", n, q(lat, 0.5), q(lat, 0.99), busy.Load())
	t.Logf("their %d TokenReviews as the service saw them: p50 %s, p99 %s, at most %d at once (of %d slots); as the API server measured %.0f of them: mean %s",
		len(reviews), q(reviews, 0.5), q(reviews, 0.99), reviewer.peak.Load(), maxReviews, served, serverMean.Round(time.Microsecond))

	measure(t, "identity.issuance_100_concurrent_p50_ms", float64(q(lat, 0.5).Milliseconds()), "ms", "")
	measure(t, "identity.issuance_100_concurrent_p99_ms", float64(q(lat, 0.99).Milliseconds()), "ms", "<= 1500")
	measure(t, "identity.issuance_100_concurrent_busy_retries", float64(busy.Load()), "answers", "")
	measure(t, "identity.issuance_100_concurrent_quiet_wait_s", waited.Seconds(), "s", "")
	measure(t, "identity.issuance_100_concurrent_tokenreview_p99_ms", float64(q(reviews, 0.99).Milliseconds()), "ms", "")
	measure(t, "identity.issuance_100_concurrent_tokenreview_apiserver_mean_us", float64(serverMean.Microseconds()), "µs", "")
	// Each request is a TokenReview and a signature; 100 at once queue on
	// two cores. On a quiet node the p99 was 128 to 571 ms here; the bound
	// is a few times that, so that it holds on a slower machine and still
	// catches a service that stalls requests (a review lost to a timeout
	// costs 10 s). One review at a time is what the peak below catches: at
	// 30 to 100 ms a review, 100 of them in a row still fit in 1.5 s.
	if q(lat, 0.99) > 1500*time.Millisecond {
		t.Errorf("issuance p99 %s under %d concurrent requests, want at most 1.5 s (128 to 571 ms measured here on a quiet node)", q(lat, 0.99), n)
	}
	// The service takes reviews in parallel, and at most its slots at once.
	if p := reviewer.peak.Load(); p < 2 || p > maxReviews {
		t.Errorf("%d TokenReviews were in flight at most, want between 2 and the service's %d slots", p, maxReviews)
	}
}

// postBody posts a certificate request body and returns the answer.
func postBody(t *testing.T, client *http.Client, base string, body []byte) (int, []byte) {
	t.Helper()
	resp, err := client.Post(base+api.CertificatePath, "application/json", bytes.NewReader(body))
	if err != nil {
		t.Error(err)
		return 0, nil
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// histogramTotal is a Prometheus histogram's sum and count.
type histogramTotal struct{ sum, count float64 }

// apiserverTokenReviewSeconds reads from the API server's own metrics how
// many TokenReviews it has served and how long they took in all.
func apiserverTokenReviewSeconds(ctx context.Context) (histogramTotal, error) {
	raw, err := cluster.client.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		return histogramTotal{}, err
	}
	fams, err := parseMetrics(raw)
	if err != nil {
		return histogramTotal{}, err
	}
	var out histogramTotal
	for _, m := range fams["apiserver_request_duration_seconds"].GetMetric() {
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		if labels["resource"] == "tokenreviews" && labels["verb"] == "POST" && m.GetHistogram() != nil {
			out.sum += m.GetHistogram().GetSampleSum()
			out.count += float64(m.GetHistogram().GetSampleCount())
		}
	}
	return out, nil
}
