package endpoints

import (
	"context"
	"net/netip"
	"testing"

	"github.com/meshctl/meshctl/internal/spiffeid"
)

func TestTableMapsDestinationsAndPassesOthersThrough(t *testing.T) {
	tab, err := Parse([]byte(`{"10.96.0.12:80": ["10.244.0.7:8080", {"addr": "10.244.0.9:8080", "identity": "spiffe://cluster.local/ns/demo/sa/web"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	set := tab.Resolve(context.Background(), netip.MustParseAddrPort("10.96.0.12:80"))
	seen := map[string]int{}
	for range 100 {
		ep, _ := set.Pick()
		seen[ep.Addr]++
		if ep.Meshed() != (ep.Addr == "10.244.0.9:8080") {
			t.Errorf("endpoint %s meshed = %v", ep.Addr, ep.Meshed())
		}
	}
	if seen["10.244.0.7:8080"] < 25 || seen["10.244.0.9:8080"] < 25 {
		t.Errorf("picked %v, want both about evenly (nothing tells them apart)", seen)
	}
	if got, _ := tab.Resolve(context.Background(), netip.MustParseAddrPort("10.1.2.3:443")).Pick(); got.Addr != "10.1.2.3:443" || got.Meshed() {
		t.Errorf("unknown destination picked %+v, want itself", got)
	}
}

func TestParseRejectsBadTables(t *testing.T) {
	for _, in := range []string{`[]`, `{"nonsense": ["1.2.3.4:5"]}`, `{"1.2.3.4:80": []}`, `{"1.2.3.4:80": ["no-port"]}`, `{"1.2.3.4:80": [{"addr": "1.2.3.4:80", "identity": "spiffe://x"}]}`} {
		if _, err := Parse([]byte(in)); err == nil {
			t.Errorf("Parse(%s) = nil error", in)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(`{"10.96.0.12:80": ["10.244.0.7:8080"]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		tab, err := Parse(b)
		if err != nil {
			return
		}
		for dst, s := range tab.sets {
			if ep, ok := s.Pick(); !ok || ep.Addr == "" || !dst.IsValid() {
				t.Fatalf("bad entry %v", dst)
			}
		}
	})
}

func TestSetUpdatesWhileInUse(t *testing.T) {
	s := NewSet()
	if _, ok := s.Pick(); ok {
		t.Fatal("an empty set picked an endpoint")
	}
	s.Update([]Endpoint{{Addr: "10.0.0.1:80", Opaque: true}, {Addr: "10.0.0.2:80", Opaque: true}})
	if !s.Opaque() {
		t.Error("Opaque() = false for opaque endpoints")
	}
	seen := map[string]bool{}
	for range 100 {
		ep, ok := s.Pick()
		if !ok {
			t.Fatal("no pick after Update")
		}
		seen[ep.Addr] = true
	}
	if len(seen) != 2 {
		t.Errorf("picked %v, want both endpoints", seen)
	}
	s.Update(nil)
	if _, ok := s.Pick(); ok || s.Identity() != (spiffeid.ID{}) {
		t.Error("a set emptied by Update still picks")
	}
}
