package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// loader sends steady GET traffic, the way a typical application does: each
// of its workers keeps one keep-alive connection (one worker: one
// connection). It prints per-interval summaries as JSON lines, and with
// --count a final one.
type loader struct {
	url         string
	rps         float64 // 0 with --count: as fast as the workers go
	every       time.Duration
	count       int // stop after this many requests (0: never)
	concurrency int
	timeout     time.Duration
	linger      time.Duration // stay up this long after the final report
}

// finalReport is the last line when --count is given: everything sent.
type finalReport struct {
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

// loadReport is one summary line.
type loadReport struct {
	Requests int            `json:"requests"`
	Errors   int            `json:"errors"`
	Backends map[string]int `json:"backends"`
	Statuses map[string]int `json:"statuses"`
	P50ms    float64        `json:"p50_ms"`
	MaxMs    float64        `json:"max_ms"`
}

// result is one request's outcome.
type result struct {
	took   time.Duration
	pod    string
	status string // the HTTP status, or "error"
	err    error
}

func (l loader) run(ctx context.Context, out io.Writer) error {
	if l.url == "" || l.rps < 0 || (l.rps == 0 && l.count == 0) || l.every <= 0 || l.concurrency < 1 {
		return errors.New("load needs --url, --rps above zero (or 0 with --count: as fast as possible), --report above zero and --concurrency of at least 1")
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	client := &http.Client{Timeout: l.timeout, Transport: &http.Transport{
		MaxIdleConnsPerHost: l.concurrency, MaxConnsPerHost: l.concurrency, DisableCompression: true,
	}}
	defer client.CloseIdleConnections()

	// Pacing: with a rate, a ticker hands out turns (a turn no worker is free
	// for is skipped, as a real client would fall behind); without, workers
	// go back to back.
	var turns chan struct{}
	if l.rps > 0 {
		turns = make(chan struct{})
		go func() {
			tick := time.NewTicker(time.Duration(float64(time.Second) / l.rps))
			defer tick.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
					select {
					case turns <- struct{}{}:
					default:
					}
				}
			}
		}()
	}
	start := time.Now() // before the first request
	var issued atomic.Int64
	results := make(chan result, 64)
	var wg sync.WaitGroup
	for range l.concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				if turns != nil {
					select {
					case <-ctx.Done():
						return
					case <-turns:
					}
				}
				if ctx.Err() != nil || (l.count > 0 && issued.Add(1) > int64(l.count)) {
					return
				}
				results <- l.one(ctx, client)
			}
		}()
	}
	go func() { wg.Wait(); close(results) }()

	report := time.NewTicker(l.every)
	defer report.Stop()
	enc := json.NewEncoder(out)
	cur := loadReport{Backends: map[string]int{}, Statuses: map[string]int{}}
	final := finalReport{Final: true, Backends: map[string]int{}, Statuses: map[string]int{}}
	var lat, all []time.Duration
	for {
		select {
		case <-report.C:
			cur.P50ms, cur.MaxMs = summarize(lat)
			if err := enc.Encode(cur); err != nil {
				return err
			}
			cur, lat = loadReport{Backends: map[string]int{}, Statuses: map[string]int{}}, lat[:0]
		case r, ok := <-results:
			if !ok {
				if l.count == 0 || ctx.Err() != nil && final.Requests < l.count {
					return nil // stopped
				}
				cur.P50ms, cur.MaxMs = summarize(lat)
				if err := enc.Encode(cur); err != nil {
					return err
				}
				final.P50ms, final.P99ms = quantileMs(all, 0.5), quantileMs(all, 0.99)
				_, final.MaxMs = summarize(all)
				final.DurationS = time.Since(start).Seconds()
				if err := enc.Encode(final); err != nil {
					return err
				}
				select {
				case <-time.After(l.linger):
				case <-ctx.Done():
				}
				return nil
			}
			cur.Requests++
			final.Requests++
			cur.Statuses[r.status]++
			final.Statuses[r.status]++
			if l.count > 0 {
				all = append(all, r.took)
			}
			if r.err != nil {
				cur.Errors++
				final.Errors++
			} else {
				lat = append(lat, r.took)
				cur.Backends[r.pod]++
				final.Backends[r.pod]++
			}
		}
	}
}

// one sends a request.
func (l loader) one(ctx context.Context, client *http.Client) result {
	start := time.Now()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, l.url, nil)
	if err != nil {
		return result{status: "error", err: err}
	}
	res, err := client.Do(req)
	if err != nil {
		return result{took: time.Since(start), status: "error", err: err}
	}
	defer res.Body.Close()
	r := result{status: strconv.Itoa(res.StatusCode)}
	var rep reply
	if res.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, res.Body)
		r.err = fmt.Errorf("status %s", res.Status)
	} else if err := json.NewDecoder(res.Body).Decode(&rep); err != nil {
		r.err = fmt.Errorf("decode reply: %w", err)
	}
	r.took, r.pod = time.Since(start), rep.Pod
	return r
}

// quantileMs returns the q quantile of the latencies in milliseconds.
func quantileMs(lat []time.Duration, q float64) float64 {
	if len(lat) == 0 {
		return 0
	}
	sorted := slices.Clone(lat)
	slices.Sort(sorted)
	i := int(q * float64(len(sorted)))
	if i >= len(sorted) {
		i = len(sorted) - 1
	}
	return float64(sorted[i].Microseconds()) / 1000
}

// summarize returns the median and maximum in milliseconds.
func summarize(lat []time.Duration) (p50, maxMs float64) {
	if len(lat) == 0 {
		return 0, 0
	}
	sorted := slices.Clone(lat)
	slices.Sort(sorted)
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	return ms(sorted[len(sorted)/2]), ms(sorted[len(sorted)-1])
}
