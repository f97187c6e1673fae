// Package loadgen sends HTTP load over a fixed number of keep-alive
// connections, either at a constant rate spread evenly in time (each request
// has an intended start time, and its latency is measured from that time, so
// that a stall delays every request queued behind it: no coordinated
// omission) or as fast as the connections allow.
package loadgen

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"
)

// Config describes one load.
type Config struct {
	// URL is requested with GET. Required.
	URL string
	// Rate is the total requests per second; 0 means as fast as possible.
	Rate float64
	// Conns is the number of connections (one worker each). Default: 16.
	Conns int
	// Duration is how long the measured part lasts. Default: 30s.
	Duration time.Duration
	// Warmup runs before the measured part and is not recorded. Default: 2s.
	Warmup time.Duration
	// HTTP2 sends prior-knowledge HTTP/2 (h2c), one connection per worker.
	HTTP2 bool
}

// Result is what a load measured.
type Result struct {
	Requests  int
	Errors    int
	Elapsed   time.Duration
	latencies []time.Duration // sorted
}

// RPS is the measured throughput.
func (r Result) RPS() float64 { return float64(r.Requests) / r.Elapsed.Seconds() }

// Percentile returns the latency below which p (0–100) of the requests fell.
func (r Result) Percentile(p float64) time.Duration {
	if len(r.latencies) == 0 {
		return 0
	}
	i := int(p / 100 * float64(len(r.latencies)))
	return r.latencies[min(i, len(r.latencies)-1)]
}

// Run applies the load.
func Run(ctx context.Context, cfg Config) (Result, error) {
	if cfg.URL == "" {
		return Result{}, errors.New("a URL is required")
	}
	if cfg.Conns == 0 {
		cfg.Conns = 16
	}
	if cfg.Duration == 0 {
		cfg.Duration = 30 * time.Second
	}
	if cfg.Warmup == 0 {
		cfg.Warmup = 2 * time.Second
	}
	start := time.Now().Add(10 * time.Millisecond)
	measureFrom := start.Add(cfg.Warmup)
	end := measureFrom.Add(cfg.Duration)
	var mu sync.Mutex
	var res Result
	var wg sync.WaitGroup
	for i := range cfg.Conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lat, errs := worker(ctx, cfg, i, start, measureFrom, end)
			mu.Lock()
			res.latencies = append(res.latencies, lat...)
			res.Errors += errs
			mu.Unlock()
		}()
	}
	wg.Wait()
	res.Requests = len(res.latencies)
	res.Elapsed = cfg.Duration
	slices.Sort(res.latencies)
	if res.Requests == 0 {
		return res, fmt.Errorf("no request succeeded (%d errors)", res.Errors)
	}
	return res, nil
}

// worker owns one connection and sends its share of the load.
func worker(ctx context.Context, cfg Config, i int, start, measureFrom, end time.Time) ([]time.Duration, int) {
	tr := &http.Transport{
		MaxConnsPerHost: 1, MaxIdleConnsPerHost: 1, DisableCompression: true,
		DialContext: (&net.Dialer{}).DialContext,
	}
	if cfg.HTTP2 {
		var p http.Protocols
		p.SetUnencryptedHTTP2(true)
		tr.Protocols = &p
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, cfg.URL, nil)
	if err != nil {
		return nil, 1
	}
	var interval time.Duration
	next := start
	if cfg.Rate > 0 {
		interval = time.Duration(float64(time.Second) * float64(cfg.Conns) / cfg.Rate)
		next = start.Add(interval * time.Duration(i) / time.Duration(cfg.Conns)) // stagger the workers
	}
	lat := make([]time.Duration, 0, 1024)
	errs := 0
	for {
		if cfg.Rate > 0 {
			if d := time.Until(next); d > 0 {
				time.Sleep(d)
			}
		} else {
			next = time.Now()
		}
		if next.After(end) || ctx.Err() != nil {
			return lat, errs
		}
		intended := next
		resp, err := client.Do(req)
		if err == nil {
			_, err = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if err == nil && resp.StatusCode != http.StatusOK {
				err = fmt.Errorf("status %d", resp.StatusCode)
			}
		}
		done := time.Now()
		if !intended.Before(measureFrom) {
			if err != nil {
				errs++
			} else {
				lat = append(lat, done.Sub(intended))
			}
		}
		if cfg.Rate > 0 {
			next = next.Add(interval)
		}
	}
}
