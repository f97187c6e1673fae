package metrics

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
)

// TestOddLabelValuesRoundTrip: whatever a label value holds (quotes,
// backslashes, newlines, invalid UTF-8), /metrics stays readable, and a
// valid value reads back as it was.
func TestOddLabelValuesRoundTrip(t *testing.T) {
	for _, v := range []string{`q"uote`, `back\slash`, `trail\`, "new\nline", "cr\rret", "tab\tx", "nul\x00x", "ünïcödé-名前", "bad\xff\xfeutf8", `}{,=`, "\u2028ls"} {
		m := New(Config{})
		c := m.Open(ConnLabels{Direction: Inbound, TLS: true, ClientID: v, DstWorkload: v})
		r := c.Route(v)
		r.Request()
		r.Response(200, Success, 1)
		m.WatchEjected(func(y func(string, int)) { y(v, 1) })
		c.Retry(v)
		want := strings.ToValidUTF8(v, "\uFFFD")
		found := false
		for _, f := range gather(t, m) { // fails the test if unreadable
			for _, x := range f.GetMetric() {
				if f.GetName() == "request_total" && hasLabel(x, "authority", want) && hasLabel(x, "client_id", want) {
					found = true
				}
			}
		}
		if !found {
			t.Errorf("label value %q did not read back as %q", v, want)
		}
	}
}

// TestEjectedFromTwoSourcesIsOneFamily: a family is written once, whatever
// the number of sources, with their counts summed.
func TestEjectedFromTwoSourcesIsOneFamily(t *testing.T) {
	m := New(Config{})
	m.WatchEjected(func(y func(string, int)) { y("a", 1); y("b", 2) })
	m.WatchEjected(func(y func(string, int)) { y("a", 3) })
	var buf bytes.Buffer
	m.WritePrometheus(&buf)
	if n := strings.Count(buf.String(), "# TYPE balancer_ejected_endpoints"); n != 1 {
		t.Errorf("balancer_ejected_endpoints described %d times", n)
	}
	if !strings.Contains(buf.String(), "balancer_ejected_endpoints{destination=\"a\"} 4\nbalancer_ejected_endpoints{destination=\"b\"} 2\n") {
		t.Errorf("ejected counts not summed and sorted:\n%s", buf.String())
	}
	gather(t, m)
}

// TestCountingAllocatesNothing: what is counted on every request (and the
// rarer counters once their series exist) allocates nothing.
func TestCountingAllocatesNothing(t *testing.T) {
	m := New(Config{})
	c := m.Open(ConnLabels{Direction: Inbound, TLS: true, ClientID: "spiffe://cluster.local/ns/a/sa/b"})
	count := func() {
		r := c.Route("web.default:80")
		r.Request()
		r.Response(200, Success, 3)
		c.Read(10)
		c.Write(10)
		c.Retry("web.default:80")
		c.Timeout("web.default:80", "try")
		c.Mirror("shadow.default:80", MirrorSent)
		m.InboundDecision("allow", "default:all-authenticated")
	}
	count()
	if n := testing.AllocsPerRun(100, count); n != 0 {
		t.Errorf("counting a request allocates %v times", n)
	}
}

// TestEvictionRacesWithRequestsAndScrapes: routes evicted under requests,
// responses and scrapes leave no series behind, and every scrape reads.
func TestEvictionRacesWithRequestsAndScrapes(t *testing.T) {
	m := New(Config{MaxRoutes: 16, MaxStatusesPerRoute: 3})
	var workers, scraper sync.WaitGroup
	stop := make(chan struct{})
	for g := range 4 {
		workers.Add(1)
		go func() {
			defer workers.Done()
			conns := []*Conn{m.Open(ConnLabels{Direction: Inbound}), m.Open(ConnLabels{Direction: Outbound})}
			for i := range 5000 {
				r := conns[i%2].Route(fmt.Sprintf("d%d-%d", g, i%97))
				r.Request()
				r.Response(200+i%7, Success, float64(i%50))
			}
		}()
	}
	scraper.Add(1)
	go func() {
		defer scraper.Done()
		for {
			select {
			case <-stop:
				return
			default:
				m.WritePrometheus(io.Discard)
			}
		}
	}()
	workers.Wait()
	close(stop)
	scraper.Wait()
	live := map[string]bool{}
	m.routes.mu.Lock()
	for _, r := range m.routes.byKey {
		live[r.labels[5]] = true
	}
	m.routes.mu.Unlock()
	for _, f := range gather(t, m) {
		for _, x := range f.GetMetric() {
			for _, l := range x.GetLabel() {
				if l.GetName() == "authority" && !live[l.GetValue()] {
					t.Errorf("%s has a series of the evicted route %s", f.GetName(), l.GetValue())
				}
			}
		}
	}
}

// BenchmarkRouteChurn: a new route on every request at the cap, with 5
// statuses each and 10,000 client identities' connection series besides;
// eviction is a map delete, whatever the series count.
func BenchmarkRouteChurn(b *testing.B) {
	m := New(Config{})
	for i := range 10_000 {
		m.Open(ConnLabels{Direction: Inbound, TLS: true, ClientID: fmt.Sprintf("spiffe://cluster.local/ns/n/sa/client-%d", i)})
	}
	c := m.Open(ConnLabels{Direction: Inbound})
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		r := c.Route(fmt.Sprintf("10.%d.%d.%d:80", i>>16&255, i>>8&255, i&255))
		r.Request()
		for s := range 5 {
			r.Response(200+s, Success, 1)
		}
	}
}

// BenchmarkScrape: /metrics at the series cap (500 routes, 5 statuses).
func BenchmarkScrape(b *testing.B) {
	m := New(Config{})
	c := m.Open(ConnLabels{Direction: Inbound})
	for i := range 500 {
		r := c.Route(fmt.Sprintf("10.0.%d.%d:80", i>>8, i&255))
		for s := range 5 {
			r.Request()
			r.Response(200+s, Success, float64(s))
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		m.WritePrometheus(io.Discard)
	}
}

// TestHelpIsAddedWhereverWritesAreCut: the HELP lines get their text even
// when a line arrives in pieces.
func TestHelpIsAddedWhereverWritesAreCut(t *testing.T) {
	in := "# HELP retry_total\n# TYPE retry_total counter\nretry_total{destination=\"a\"} 1\n# HELP go_goroutines\ngo_goroutines 5\n"
	want := strings.Replace(in, "# HELP retry_total\n", "# HELP retry_total "+help[familyRetries]+"\n", 1)
	for size := 1; size <= len(in); size++ {
		var out bytes.Buffer
		h := &helpWriter{w: &out}
		for i := 0; i < len(in); i += size {
			h.Write([]byte(in[i:min(i+size, len(in))]))
		}
		h.flush()
		if out.String() != want {
			t.Fatalf("written %d bytes at a time:\n%s\nwant:\n%s", size, out.String(), want)
		}
	}
}
