// Package proxystats reads the proxies' own metrics (their /metrics through
// the API server's pods/proxy subresource) and turns two samples into what
// `meshctl stat` and `meshctl edges` print: request rates, success rates,
// latency percentiles from the histogram buckets, open connections, and
// who talks to whom. Counters that went backwards (a restarted proxy)
// count from zero.
package proxystats

import (
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Series are the labels of one response series.
type Series struct {
	Direction   string
	TLS         bool
	ClientID    string
	ServerID    string
	DstWorkload string
	Authority   string
	Status      string
	Success     bool
}

// Histogram is a latency histogram: cumulative counts per upper bound (ms).
type Histogram struct {
	Bounds []float64 // ascending, +Inf last
	Counts []float64 // cumulative
}

// Sample is one proxy's metrics at one moment.
type Sample struct {
	// Started is the proxy process's start time (Unix seconds): a change means a restart.
	Started float64
	// Responses counts completed responses per series.
	Responses map[Series]float64
	// Latency holds the latency histogram per series.
	Latency map[Series]Histogram
	// OpenConns is the number of open connections per direction.
	OpenConns map[string]float64
	// Plaintext counts the plaintext connections the proxy made into the
	// cluster's networks, by reason (no_identity, not_in_mesh).
	Plaintext map[string]float64
	// Decisions counts the inbound policy's decisions by rule and decision
	// (allow, deny, rate_limited).
	Decisions map[Decision]float64
	// Window is the seconds the request metrics cover when the proxy was
	// asked for a window (/metrics?window=); 0: since it started.
	Window float64
}

// Decision is a rule of the inbound policy (an AuthorizationPolicy's
// namespace/name, default:<policy>, probe, rate-limit, ...) and what it
// decided.
type Decision struct {
	Rule, Decision string
}

// Parse reads a proxy's Prometheus text exposition.
func Parse(r io.Reader) (*Sample, error) {
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(r)
	if err != nil {
		return nil, fmt.Errorf("parse the proxy's metrics: %w", err)
	}
	s := &Sample{Responses: map[Series]float64{}, Latency: map[Series]Histogram{}, OpenConns: map[string]float64{}, Plaintext: map[string]float64{}, Decisions: map[Decision]float64{}}
	if f := fams["process_start_time_seconds"]; f != nil && len(f.Metric) > 0 {
		s.Started = f.Metric[0].GetGauge().GetValue()
	}
	if f := fams["metrics_window_seconds"]; f != nil && len(f.Metric) > 0 {
		s.Window = f.Metric[0].GetGauge().GetValue()
	}
	if f := fams["response_total"]; f != nil {
		for _, m := range f.Metric {
			s.Responses[series(m)] += m.GetCounter().GetValue()
		}
	}
	if f := fams["response_latency_ms"]; f != nil {
		for _, m := range f.Metric {
			h := m.GetHistogram()
			var hist Histogram
			for _, b := range h.GetBucket() {
				hist.Bounds = append(hist.Bounds, b.GetUpperBound())
				hist.Counts = append(hist.Counts, float64(b.GetCumulativeCount()))
			}
			if len(hist.Bounds) == 0 || !math.IsInf(hist.Bounds[len(hist.Bounds)-1], 1) {
				hist.Bounds = append(hist.Bounds, math.Inf(1))
				hist.Counts = append(hist.Counts, float64(h.GetSampleCount()))
			}
			key := series(m)
			s.Latency[key] = add(s.Latency[key], hist)
		}
	}
	if f := fams["plaintext_connections_total"]; f != nil {
		for _, m := range f.Metric {
			s.Plaintext[label(m, "reason")] += m.GetCounter().GetValue()
		}
	}
	if f := fams["inbound_policy_decisions_total"]; f != nil {
		for _, m := range f.Metric {
			s.Decisions[Decision{Rule: label(m, "rule"), Decision: label(m, "decision")}] += m.GetCounter().GetValue()
		}
	}
	if f := fams["tcp_open_connections"]; f != nil {
		for _, m := range f.Metric {
			s.OpenConns[label(m, "direction")] += m.GetGauge().GetValue()
		}
	}
	return s, nil
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

func series(m *dto.Metric) Series {
	return Series{
		Direction: label(m, "direction"), TLS: label(m, "tls") == "true",
		ClientID: label(m, "client_id"), ServerID: label(m, "server_id"), DstWorkload: label(m, "dst_workload"),
		Authority: label(m, "authority"), Status: label(m, "status_code"), Success: label(m, "classification") == "success",
	}
}

// add sums two histograms with the same bounds (or returns b when a is empty).
func add(a, b Histogram) Histogram {
	if len(a.Bounds) == 0 {
		return Histogram{Bounds: append([]float64(nil), b.Bounds...), Counts: append([]float64(nil), b.Counts...)}
	}
	out := Histogram{Bounds: a.Bounds, Counts: append([]float64(nil), a.Counts...)}
	for i := range out.Counts {
		if i < len(b.Counts) {
			out.Counts[i] += b.Counts[i]
		}
	}
	return out
}

// Delta is what happened between two samples of one proxy. When the proxy
// restarted in between (its start time changed, or a counter went
// backwards), everything in end happened in the window.
func Delta(start, end *Sample) *Sample {
	if start == nil || restarted(start, end) {
		return end
	}
	d := &Sample{Started: end.Started, Responses: map[Series]float64{}, Latency: map[Series]Histogram{}, OpenConns: end.OpenConns}
	for k, v := range end.Responses {
		if n := v - start.Responses[k]; n > 0 {
			d.Responses[k] = n
		}
	}
	for k, h := range end.Latency {
		prev, ok := start.Latency[k]
		out := Histogram{Bounds: h.Bounds, Counts: append([]float64(nil), h.Counts...)}
		if ok && len(prev.Counts) == len(h.Counts) {
			for i := range out.Counts {
				out.Counts[i] -= prev.Counts[i]
			}
		}
		d.Latency[k] = out
	}
	return d
}

// Interpolate estimates the sample the proxy showed at the fraction frac
// (0..1) of the time from start to end, its counters growing evenly in
// between: the Start of a window that begins after start was taken (the
// proxy's read at the window's beginning failed). A proxy that restarted
// in between has no such estimate: start is returned, and Delta counts
// end whole.
func Interpolate(start, end *Sample, frac float64) *Sample {
	if start == nil || restarted(start, end) || frac <= 0 {
		return start
	}
	frac = min(frac, 1)
	at := func(a, b float64) float64 { return a + (b-a)*frac }
	s := &Sample{Started: end.Started, Responses: map[Series]float64{}, Latency: map[Series]Histogram{}, OpenConns: start.OpenConns, Plaintext: start.Plaintext}
	for k, v := range end.Responses {
		s.Responses[k] = at(start.Responses[k], v)
	}
	for k, h := range end.Latency {
		prev, ok := start.Latency[k]
		out := Histogram{Bounds: h.Bounds, Counts: make([]float64, len(h.Counts))}
		for i, c := range h.Counts {
			if ok && len(prev.Counts) == len(h.Counts) {
				out.Counts[i] = at(prev.Counts[i], c)
			} else {
				out.Counts[i] = at(0, c)
			}
		}
		s.Latency[k] = out
	}
	return s
}

func restarted(start, end *Sample) bool {
	if start.Started != 0 && end.Started != 0 && start.Started != end.Started {
		return true
	}
	for k, v := range start.Responses {
		if end.Responses[k] < v {
			return true
		}
	}
	return false
}

// Quantile returns the upper bound of the bucket holding quantile q (0..1)
// of the histogram: the true value is at most that, and above the previous
// bound. NaN when the histogram is empty.
func (h Histogram) Quantile(q float64) float64 {
	if len(h.Counts) == 0 {
		return math.NaN()
	}
	total := h.Counts[len(h.Counts)-1]
	if total <= 0 {
		return math.NaN()
	}
	rank := q * total
	i := sort.Search(len(h.Counts), func(i int) bool { return h.Counts[i] >= rank })
	if i >= len(h.Bounds) {
		i = len(h.Bounds) - 1
	}
	return h.Bounds[i]
}

// FormatMs prints a latency bound: "-" for none, "≤10ms", ">10000ms" for the overflow bucket.
func FormatMs(v float64, bounds []float64) string {
	switch {
	case math.IsNaN(v):
		return "-"
	case math.IsInf(v, 1):
		if len(bounds) > 1 {
			return ">" + strconv.FormatFloat(bounds[len(bounds)-2], 'f', -1, 64) + "ms"
		}
		return "-"
	}
	return strings.TrimSuffix(strconv.FormatFloat(v, 'f', -1, 64), ".0") + "ms"
}

// AddHistograms sums two latency histograms of the proxies' buckets.
func AddHistograms(a, b Histogram) Histogram { return add(a, b) }
