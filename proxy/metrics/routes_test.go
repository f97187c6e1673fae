package metrics

import (
	"fmt"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
)

// series counts the label sets of a family in the registry.
func series(t *testing.T, m *Metrics, family string) int {
	t.Helper()
	mfs := gather(t, m)
	for _, mf := range mfs {
		if mf.GetName() == family {
			return len(mf.GetMetric())
		}
	}
	return 0
}

func counterValue(t *testing.T, m *Metrics, family string) float64 {
	t.Helper()
	mfs := gather(t, m)
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() == family {
			for _, x := range mf.GetMetric() {
				sum += x.GetCounter().GetValue()
			}
		}
	}
	return sum
}

func TestRouteSeriesStayUnderTheCapWith100000Destinations(t *testing.T) {
	const max = 500 // the default
	m := New(Config{})
	conn := m.Open(ConnLabels{Direction: Inbound})
	for i := range 100_000 {
		r := conn.Route(fmt.Sprintf("10.0.%d.%d:%d", i/65536, i%256, i%65536))
		r.Request()
		r.Response(200+i%3, Success, 1)
	}
	for _, family := range []string{"request_total", "response_total", "response_latency_ms"} {
		if n := series(t, m, family); n > max*5 || (family == "request_total" && n > max) {
			t.Errorf("%s has %d series; the cap is %d routes", family, n, max)
		}
	}
	// Every route but those still in the table was evicted, and counted.
	if got, want := counterValue(t, m, "metrics_series_evicted_total"), float64(100_000-series(t, m, "request_total")); got != want {
		t.Errorf("evictions counted: %v, want %v", got, want)
	}
}

func TestTheIdlestRouteIsEvictedFirst(t *testing.T) {
	m := New(Config{MaxRoutes: 2})
	conn := m.Open(ConnLabels{Direction: Outbound})
	a := conn.Route("a:80")
	a.Request()
	b := m.Open(ConnLabels{Direction: Outbound}).Route("b:80")
	b.Request()
	a.Request() // a is now the most recent; b the idlest
	m.Open(ConnLabels{Direction: Outbound}).Route("c:80").Request()
	if !b.evicted.Load() || a.evicted.Load() {
		t.Fatalf("evicted: a=%v b=%v; want only b (idle longest)", a.evicted.Load(), b.evicted.Load())
	}
	// The connection that held a keeps counting on it; one that held an
	// evicted route gets a new one rather than counting into nothing.
	if conn.Route("a:80") != a {
		t.Error("a live route was not reused")
	}
}

func TestAnEvictedRouteMakesNoSeriesAgain(t *testing.T) {
	m := New(Config{MaxRoutes: 1})
	conn := m.Open(ConnLabels{Direction: Outbound})
	inFlight := conn.Route("a:80")
	inFlight.Request()
	m.Open(ConnLabels{Direction: Outbound}).Route("b:80").Request() // evicts a
	inFlight.Response(200, Success, 1)                              // its answer arrives late
	mfs := gather(t, m)
	for _, mf := range mfs {
		for _, x := range mf.GetMetric() {
			if hasLabel(x, "authority", "a:80") {
				t.Errorf("%s still has a series for the evicted route", mf.GetName())
			}
		}
	}
	if got := conn.Route("a:80"); got == inFlight {
		t.Error("the connection kept the evicted route")
	}
}

func TestStatusesBeyondTheCapAreOther(t *testing.T) {
	m := New(Config{MaxStatusesPerRoute: 3})
	r := m.Open(ConnLabels{Direction: Outbound}).Route("a:80")
	for status := 200; status < 300; status++ {
		r.Request()
		r.Response(status, Success, 1)
	}
	if n := series(t, m, "response_total"); n != 4 {
		t.Errorf("response_total has %d series, want 3 statuses + other", n)
	}
	var sb strings.Builder
	mfs := gather(t, m)
	for _, mf := range mfs {
		if mf.GetName() == "response_total" {
			for _, x := range mf.GetMetric() {
				if hasLabel(x, "status_code", "other") {
					fmt.Fprint(&sb, x.GetCounter().GetValue())
				}
			}
		}
	}
	if sb.String() != "97" {
		t.Errorf("status_code=other counted %q, want 97", sb.String())
	}
}

func hasLabel(m *dto.Metric, name, value string) bool {
	for _, l := range m.GetLabel() {
		if l.GetName() == name && l.GetValue() == value {
			return true
		}
	}
	return false
}

func TestDestinationLabelsStayUnderTheirCap(t *testing.T) {
	m := New(Config{MaxDestinations: 10})
	c := m.Open(ConnLabels{Direction: Outbound})
	for i := range 1000 {
		c.Unavailable(fmt.Sprintf("203.0.113.%d:%d", i%256, i), "no_endpoints")
		c.Timeout(fmt.Sprintf("203.0.113.%d:%d", i%256, i), "request")
	}
	if n := series(t, m, "balancer_unavailable_total"); n != 11 {
		t.Errorf("balancer_unavailable_total has %d series, want 10 destinations and other", n)
	}
	if got := counterValue(t, m, "request_timeout_total"); got != 1000 {
		t.Errorf("request_timeout_total counted %v, want every one of 1000", got)
	}
}
