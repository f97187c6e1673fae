package harness

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
)

// proxies are the setups compared with one another (direct is the baseline).
var proxies = []string{"meshctl", "nginx", "haproxy"}

// Summary is the one-line JSON `make bench` ends with. Every figure is the
// median over all runs of that run's own value (an added latency is the
// setup's percentile minus the direct path's in the same run), with the
// spread across runs beside it, so that no figure is picked from a lucky run.
type Summary struct {
	Runs         int               `json:"runs"`
	P50AddedMs   map[string]Figure `json:"p50_added_ms"`
	P90AddedMs   map[string]Figure `json:"p90_added_ms"`
	P99AddedMs   map[string]Figure `json:"p99_added_ms"`
	RSSMB        map[string]Figure `json:"rss_mb"`
	RPSPerCPUS   map[string]Figure `json:"rps_per_cpu_s"`
	H2P50AddedMs map[string]Figure `json:"h2_p50_added_ms"`
	// The extras are measured once, after the runs: single figures, no
	// median and no spread.
	TapP99Ratio  float64 `json:"tap_p99_ratio_single_run,omitempty"`
	TapCPURatio  float64 `json:"tap_cpu_ratio_single_run,omitempty"`
	IdleRSSMB10k float64 `json:"idle_10k_conns_rss_mb_single_run,omitempty"`
	// Noise names the added latencies ("p99_added_ms.nginx") whose runs do
	// not agree on their sign: the proxy's cost there is below the
	// run-to-run noise, and the median says nothing but that.
	Noise []string `json:"noise,omitempty"`
}

// Figure is one figure over the runs: their median, and their lowest and
// highest values (the spread).
type Figure struct {
	Median float64 `json:"median"`
	Min    float64 `json:"min"`
	Max    float64 `json:"max"`
}

// String is the figure as "median (min–max)".
func (f Figure) String() string {
	return fmt.Sprintf("%.3f (%.3f–%.3f)", f.Median, f.Min, f.Max)
}

// figureOf summarises one value per run.
func figureOf(v []float64, places int) Figure {
	v = slices.Clone(v)
	slices.Sort(v)
	med := v[len(v)/2]
	if len(v)%2 == 0 {
		med = (v[len(v)/2-1] + v[len(v)/2]) / 2
	}
	return Figure{Median: round(med, places), Min: round(v[0], places), Max: round(v[len(v)-1], places)}
}

func round(v float64, places int) float64 {
	p := math.Pow(10, float64(places))
	return math.Round(v*p) / p
}

// Summarize takes, per setup and figure, the median over the runs and the
// spread, and names the added latencies that are below the noise.
func (r *Report) Summarize() Summary {
	s := Summary{
		P50AddedMs: map[string]Figure{}, P90AddedMs: map[string]Figure{}, P99AddedMs: map[string]Figure{},
		RSSMB: map[string]Figure{}, RPSPerCPUS: map[string]Figure{}, H2P50AddedMs: map[string]Figure{},
	}
	for _, name := range proxies {
		var p50, p90, p99, h2, rss, perCPU []float64
		for _, run := range r.Runs {
			res, base := run.Results[name], run.Results["direct"]
			if res == nil || base == nil {
				continue
			}
			p50 = append(p50, res.H1.P50-base.H1.P50)
			p90 = append(p90, res.H1.P90-base.H1.P90)
			p99 = append(p99, res.H1.P99-base.H1.P99)
			h2 = append(h2, res.H2.P50-base.H2.P50)
			rss = append(rss, maxOf(res.RSSMB))
			perCPU = append(perCPU, res.RPSPerCPUSecond)
		}
		if len(p50) == 0 {
			continue
		}
		if s.Runs == 0 || len(p50) < s.Runs {
			s.Runs = len(p50) // the fewest any setup had
		}
		for _, f := range []struct {
			key    string
			m      map[string]Figure
			v      []float64
			places int
			added  bool
		}{
			{"p50_added_ms", s.P50AddedMs, p50, 3, true},
			{"p90_added_ms", s.P90AddedMs, p90, 3, true},
			{"p99_added_ms", s.P99AddedMs, p99, 3, true},
			{"h2_p50_added_ms", s.H2P50AddedMs, h2, 3, true},
			{"rss_mb", s.RSSMB, rss, 1, false},
			{"rps_per_cpu_s", s.RPSPerCPUS, perCPU, 0, false},
		} {
			fig := figureOf(f.v, f.places)
			f.m[name] = fig
			if f.added && (fig.Min < 0 || fig.Median < 0) {
				s.Noise = append(s.Noise, f.key+"."+name)
			}
		}
	}
	slices.Sort(s.Noise)
	if r.Extras != nil {
		s.TapP99Ratio, s.TapCPURatio = round(r.Extras.TapP99Ratio, 2), round(r.Extras.TapCPURatio, 2)
		s.IdleRSSMB10k = round(r.Extras.IdleRSSMB, 1)
	}
	return s
}

func maxOf(v []float64) float64 {
	m := 0.0
	for _, x := range v {
		m = math.Max(m, x)
	}
	return m
}

// JSON is the summary as one line.
func (s Summary) JSON() string {
	b, _ := json.Marshal(s)
	return string(b)
}

// Markdown renders the report for bench/RESULTS.md.
func (r *Report) Markdown(command string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# Proxy benchmark results\n\n")
	fmt.Fprintf(&b, "- Date: %s\n- Machine: %s, %d CPUs, %s\n- Command: `%s`\n- Versions: %s\n\n",
		r.Started.Format("2006-01-02 15:04 UTC"), cpuModel(), runtime.NumCPU(), kernel(), command, versions())
	b.WriteString("Setup: load generator (our own, constant rate with latency measured from each request's intended\n" +
		"start, so stalls are not hidden: no coordinated omission) on CPU 0; both proxy hops and the 1 KiB Go\n" +
		"backend on CPU 1. Two hops with mutual TLS 1.3 between them (meshctl: HTTP/2 over mTLS; nginx and\n" +
		"HAProxy: HTTP/1.1 keep-alive over mTLS). One worker/thread per proxy, GOMAXPROCS=1 for meshctl.\n" +
		"Loads: (1) HTTP/1.1 at 1000 rps over 16 connections; (2) as fast as possible over 32 connections;\n" +
		"(3) h2c at 1000 rps over 16 connections. Added latency = setup minus direct, same run.\n\n")
	for i, run := range r.Runs {
		fmt.Fprintf(&b, "## Run %d (order: %s)\n\n", i+1, strings.Join(run.Order, ", "))
		b.WriteString("| setup | HTTP/1.1 p50 | p90 | p99 | p99.9 | added p50 | added p90 | added p99 | h2c p50 | added h2c p50 | max rps | rps per CPU-s per hop | peak RSS per hop (MB) | errors |\n")
		b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
		base := run.Results["direct"]
		for _, name := range run.Order {
			res := run.Results[name]
			added := func(v, b float64) string {
				if name == "direct" {
					return "—"
				}
				return fmt.Sprintf("%+.3f", v-b)
			}
			rss := make([]string, len(res.RSSMB))
			for j, v := range res.RSSMB {
				rss[j] = fmt.Sprintf("%.1f", v)
			}
			perCPU := "—"
			if res.RPSPerCPUSecond > 0 {
				perCPU = fmt.Sprintf("%.0f", res.RPSPerCPUSecond)
			}
			fmt.Fprintf(&b, "| %s | %.3f | %.3f | %.3f | %.3f | %s | %s | %s | %.3f | %s | %.0f | %s | %s | %d |\n",
				name, res.H1.P50, res.H1.P90, res.H1.P99, res.H1.P999,
				added(res.H1.P50, base.H1.P50), added(res.H1.P90, base.H1.P90), added(res.H1.P99, base.H1.P99),
				res.H2.P50, added(res.H2.P50, base.H2.P50), res.MaxRPS, perCPU, strings.Join(rss, " / "), res.H1.Errors+res.H2.Errors)
		}
		b.WriteString("\nLatencies in milliseconds.\n\n")
	}
	if ex := r.Extras; ex != nil {
		b.WriteString("## meshctl extras (measured once, after the runs)\n\n")
		fmt.Fprintf(&b, "- Tapping both hops at 1000 rps: p99 %.3f → %.3f ms (×%.2f), proxy CPU %.2f → %.2f s (×%.2f).\n",
			ex.P99NoTap, ex.P99Tap, ex.TapP99Ratio, ex.CPUNoTap, ex.CPUTap, ex.TapCPURatio)
		fmt.Fprintf(&b, "- %d idle keep-alive client connections on the outbound proxy: RSS %.1f MB after %v idle (%.1f MB as the last opened, %.1f MB before opening them); %.1f KB per connection. Requests at 1000 rps beside them: p50 %.3f ms, p99 %.3f ms (%.3f and %.3f ms without them).\n\n",
			ex.IdleConns, ex.IdleRSSMB, IdleSettle, ex.IdleRSSOpenMB, ex.IdleRSSBeforeMB,
			(ex.IdleRSSMB-ex.IdleRSSBeforeMB)*1024/float64(max(ex.IdleConns, 1)), ex.P50Idle, ex.P99Idle, ex.P50NoTap, ex.P99NoTap)
	}
	s := r.Summarize()
	fmt.Fprintf(&b, "## Summary: median over the runs (at least %d per setup; lowest–highest)\n\n", s.Runs)
	b.WriteString("| setup | added p50 | added p90 | added p99 | added h2c p50 | rps per CPU-s per hop | peak RSS per hop (MB) |\n|---|---|---|---|---|---|---|\n")
	for _, name := range proxies {
		if _, ok := s.P50AddedMs[name]; !ok {
			continue
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s |\n", name, s.P50AddedMs[name], s.P90AddedMs[name], s.P99AddedMs[name],
			s.H2P50AddedMs[name], s.RPSPerCPUS[name], s.RSSMB[name])
	}
	b.WriteString("\nLatencies in milliseconds.")
	if len(s.Noise) > 0 {
		fmt.Fprintf(&b, " Below the run-to-run noise (the runs disagree on the sign, or the median is negative: the proxy's cost is too small to measure here): %s.", strings.Join(s.Noise, ", "))
	}
	fmt.Fprintf(&b, "\n\n```json\n%s\n```\n", s.JSON())
	return b.String()
}

func cpuModel() string {
	data, _ := os.ReadFile("/proc/cpuinfo")
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "model name"); ok {
			return strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
		}
	}
	return "unknown CPU"
}

func kernel() string {
	out, _ := exec.Command("uname", "-r").Output()
	return "Linux " + strings.TrimSpace(string(out))
}

func versions() string {
	var v []string
	for _, cmd := range [][]string{{"nginx", "-v"}, {"haproxy", "-v"}} {
		out, _ := exec.Command(cmd[0], cmd[1:]...).CombinedOutput()
		line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
		v = append(v, line)
	}
	return strings.Join(append(v, runtime.Version()), "; ")
}
