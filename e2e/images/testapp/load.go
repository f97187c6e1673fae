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
	var lat []time.Duration
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
			cur.Requests++
			if err != nil {
				cur.Errors++
				continue
			}
			lat = append(lat, time.Since(start))
			cur.Backends[pod]++
		}
	}
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
