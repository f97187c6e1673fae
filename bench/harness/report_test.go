package harness

import (
	"slices"
	"strings"
	"testing"
)

// runWith is a run whose direct path has the given p99 and whose meshctl and
// nginx setups have theirs; every other figure is fixed.
func runWith(direct, meshctl, nginx float64, rss float64) Run {
	res := func(p99 float64) *SetupResult {
		return &SetupResult{H1: Latencies{P50: 1, P90: 2, P99: p99}, H2: Latencies{P50: 1}, RSSMB: []float64{rss, rss - 1}, RPSPerCPUSecond: rss * 1000}
	}
	return Run{Order: []string{"direct", "meshctl", "nginx"}, Results: map[string]*SetupResult{
		"direct": res(direct), "meshctl": res(meshctl), "nginx": res(nginx)}}
}

func TestSummaryIsTheMedianOfEveryRunWithItsSpread(t *testing.T) {
	r := &Report{Runs: []Run{
		runWith(2.0, 2.5, 1.2, 17), // nginx's p99 below the direct path's in this run
		runWith(2.0, 3.0, 2.3, 19),
		runWith(2.0, 2.1, 2.1, 18),
	}}
	s := r.Summarize()
	if s.Runs != 3 {
		t.Errorf("runs %d, want 3", s.Runs)
	}
	// Added p99 per run: meshctl 0.5, 1.0, 0.1 → median 0.5; nginx −0.8, 0.3, 0.1 → 0.1.
	if got, want := s.P99AddedMs["meshctl"], (Figure{Median: 0.5, Min: 0.1, Max: 1}); got != want {
		t.Errorf("meshctl added p99 %+v, want %+v (the median, not the best run)", got, want)
	}
	if got, want := s.P99AddedMs["nginx"], (Figure{Median: 0.1, Min: -0.8, Max: 0.3}); got != want {
		t.Errorf("nginx added p99 %+v, want %+v", got, want)
	}
	// RSS and throughput are medians of the same runs, not the best of each.
	if got, want := s.RSSMB["meshctl"], (Figure{Median: 18, Min: 17, Max: 19}); got != want {
		t.Errorf("RSS %+v, want %+v", got, want)
	}
	if got := s.RPSPerCPUS["meshctl"].Median; got != 18000 {
		t.Errorf("rps per CPU-s median %v, want 18000", got)
	}
	if !slices.Equal(s.Noise, []string{"p99_added_ms.nginx"}) {
		t.Errorf("noise %v, want only nginx's added p99 (its runs disagree on the sign)", s.Noise)
	}
	md := r.Markdown("make bench")
	for _, want := range []string{"at least 3 per setup", "| meshctl | 0.000 (0.000–0.000) | 0.000 (0.000–0.000) | 0.500 (0.100–1.000)", "Below the run-to-run noise", "p99_added_ms.nginx"} {
		if !strings.Contains(md, want) {
			t.Errorf("the results page lacks %q:\n%s", want, md)
		}
	}
}

func TestFigureOfAnEvenCountAveragesTheMiddleTwo(t *testing.T) {
	if got := figureOf([]float64{4, 1, 3, 2}, 3); got != (Figure{Median: 2.5, Min: 1, Max: 4}) {
		t.Errorf("%+v", got)
	}
}
