package metrics

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// parseText parses an exposition as Prometheus would, failing on error.
func parseText(t *testing.T, b []byte) map[string]*dto.MetricFamily {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("invalid exposition: %v\n%s", err, b)
	}
	return fams
}

// checkHistograms fails on buckets that are not cumulative or exceed their
// count.
func checkHistograms(t *testing.T, fams map[string]*dto.MetricFamily) {
	t.Helper()
	f := fams["response_latency_ms"]
	if f == nil {
		return
	}
	for _, m := range f.GetMetric() {
		h := m.GetHistogram()
		prev := uint64(0)
		for _, b := range h.GetBucket() {
			if b.GetCumulativeCount() < prev {
				t.Errorf("buckets not cumulative: %v", h)
			}
			if b.GetCumulativeCount() > h.GetSampleCount() {
				t.Errorf("bucket above count: %v", h)
			}
			prev = b.GetCumulativeCount()
		}
	}
}

// duplicates lists the series written twice (same name and labels) in one text.
func duplicates(b []byte) []string {
	seen := map[string]bool{}
	var dup []string
	for line := range strings.Lines(string(b)) {
		if strings.HasPrefix(line, "#") {
			continue
		}
		name := line[:strings.LastIndexByte(line, ' ')]
		if seen[name] {
			dup = append(dup, name)
		}
		seen[name] = true
	}
	return dup
}

// TestInvalidUTF8LabelsMakeOneSeries: two destinations that differ only in
// their invalid bytes become one series text, written twice.
func TestInvalidUTF8LabelsMakeOneSeries(t *testing.T) {
	m := New(Config{})
	c := m.Open(ConnLabels{Direction: Inbound})
	for _, d := range []string{"d\xff", "d\xfe"} {
		r := c.Route(d)
		r.Request()
		r.Response(200, Success, 1)
	}
	var buf bytes.Buffer
	m.WritePrometheus(&buf)
	if d := duplicates(buf.Bytes()); len(d) > 0 {
		t.Errorf("duplicate series in one scrape: %q", d)
	}
	gather(t, m)
}

// TestScrapesUnderLoadAreValid: every scrape under concurrent responses and
// eviction parses, with cumulative buckets never above their count, and no
// duplicate series.
func TestScrapesUnderLoadAreValid(t *testing.T) {
	m := New(Config{MaxRoutes: 8, MaxStatusesPerRoute: 2})
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := m.Open(ConnLabels{Direction: Inbound})
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				r := c.Route(fmt.Sprintf("d%d", (g*7+i)%12))
				r.Request()
				r.Response(200+i%5, Success, float64(i%3000))
			}
		}()
	}
	for range 300 {
		var buf bytes.Buffer
		m.WritePrometheus(&buf)
		checkHistograms(t, parseText(t, buf.Bytes()))
		if d := duplicates(buf.Bytes()); len(d) > 0 {
			t.Fatalf("duplicate series: %q", d)
		}
	}
	close(stop)
	wg.Wait()
}

type failAfter struct {
	n   int
	out bytes.Buffer
}

func (f *failAfter) Write(p []byte) (int, error) {
	if f.n <= 0 {
		return 0, errors.New("broken")
	}
	f.n--
	return f.out.Write(p)
}

func TestHelpWriterStopsAtAWriteError(t *testing.T) {
	for n := range 5 {
		fw := &failAfter{n: n}
		h := &helpWriter{w: fw}
		in := "# HELP retry_total\n# TYPE retry_total counter\nretry_total 1\n# HELP go_goroutines\ngo_goroutines 5\n"
		var werr error
		for i := 0; i < len(in); i += 7 {
			if _, err := h.Write([]byte(in[i:min(i+7, len(in))])); err != nil {
				werr = err
			}
		}
		h.flush()
		if !strings.HasPrefix(in, strings.Replace(fw.out.String(), " "+help[familyRetries], "", 1)) {
			t.Errorf("after %d writes: output is not a prefix: %q", n, fw.out.String())
		}
		if werr == nil {
			t.Errorf("after %d writes: no error reported", n)
		}
	}
}

func TestConcurrentLatenciesSumExactly(t *testing.T) {
	m := New(Config{})
	r := m.Open(ConnLabels{Direction: Inbound}).Route("a")
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 50000 {
				r.Response(200, Success, 1)
			}
		}()
	}
	wg.Wait()
	for _, s := range r.responses {
		if got := math.Float64frombits(s.sumBits.Load()); got != 400000 || s.count.Load() != 400000 {
			t.Errorf("sum %v count %d, want 400000", got, s.count.Load())
		}
	}
}

// TestABucketNeverExceedsItsCount: a scrape between a response's bucket
// and its count (observe adds the count last) says no more in any bucket
// than in count.
func TestABucketNeverExceedsItsCount(t *testing.T) {
	m := New(Config{})
	r := m.Open(ConnLabels{Direction: Inbound}).Route("a")
	r.Response(200, Success, 1)
	for _, s := range r.responses {
		s.buckets[0].Add(1) // as if caught between the two adds
	}
	var buf bytes.Buffer
	m.WritePrometheus(&buf)
	if !strings.Contains(buf.String(), `le="1"} 1`+"\n") || !strings.Contains(buf.String(), `le="+Inf"} 1`+"\n") {
		t.Errorf("a bucket above its count:\n%s", buf.String())
	}
	checkHistograms(t, parseText(t, buf.Bytes()))
}
