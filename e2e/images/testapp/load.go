package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"slices"
	"time"
)

// loader sends steady GET traffic over one keep-alive client, the way a
// typical application does, and prints per-interval summaries as JSON lines.
type loader struct {
	url   string
	rps   float64
	every time.Duration
	count int // stop after this many requests (0: never)
}

// finalReport is the last line when --count is given: everything sent.
type finalReport struct {
	Final    bool    `json:"final"`
	Requests int     `json:"requests"`
	Errors   int     `json:"errors"`
	P50ms    float64 `json:"p50_ms"`
	P99ms    float64 `json:"p99_ms"`
}

// loadReport is one summary line.
type loadReport struct {
	Requests int            `json:"requests"`
	Errors   int            `json:"errors"`
	Backends map[string]int `json:"backends"`
	P50ms    float64        `json:"p50_ms"`
	MaxMs    float64        `json:"max_ms"`
}

func (l loader) run(ctx context.Context, out io.Writer) error {
	if l.url == "" || l.rps <= 0 || l.every <= 0 {
		return errors.New("load needs --url, and --rps and --report above zero")
	}
	client := &http.Client{Timeout: 5 * time.Second}
	tick := time.NewTicker(time.Duration(float64(time.Second) / l.rps))
	defer tick.Stop()
	report := time.NewTicker(l.every)
	defer report.Stop()
	enc := json.NewEncoder(out)
	cur := loadReport{Backends: map[string]int{}}
	var lat, all []time.Duration
	final := finalReport{Final: true}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-report.C:
			cur.P50ms, cur.MaxMs = summarize(lat)
			if err := enc.Encode(cur); err != nil {
				return err
			}
			cur, lat = loadReport{Backends: map[string]int{}}, lat[:0]
		case <-tick.C:
			start := time.Now()
			pod, err := getPod(ctx, client, l.url)
			took := time.Since(start)
			cur.Requests++
			final.Requests++
			if l.count > 0 {
				all = append(all, took)
			}
			if err != nil {
				cur.Errors++
				final.Errors++
			} else {
				lat = append(lat, took)
				cur.Backends[pod]++
			}
			if l.count > 0 && final.Requests >= l.count {
				cur.P50ms, cur.MaxMs = summarize(lat)
				if err := enc.Encode(cur); err != nil {
					return err
				}
				final.P50ms, final.P99ms = quantileMs(all, 0.5), quantileMs(all, 0.99)
				return enc.Encode(final)
			}
		}
	}
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
