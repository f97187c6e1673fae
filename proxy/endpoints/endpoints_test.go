package endpoints

import (
	"net/netip"
	"testing"
)

func TestTableMapsDestinationsAndPassesOthersThrough(t *testing.T) {
	tab, err := Parse([]byte(`{"10.96.0.12:80": ["10.244.0.7:8080", {"addr": "10.244.0.9:8080", "identity": "spiffe://cluster.local/ns/demo/sa/web"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	set := tab.Lookup(netip.MustParseAddrPort("10.96.0.12:80"))
	seen := map[string]int{}
	for range 10 {
		ep := set.Pick()
		seen[ep.Addr]++
		if ep.Meshed() != (ep.Addr == "10.244.0.9:8080") {
			t.Errorf("endpoint %s meshed = %v", ep.Addr, ep.Meshed())
		}
	}
	if seen["10.244.0.7:8080"] != 5 || seen["10.244.0.9:8080"] != 5 {
		t.Errorf("round robin picked %v, want 5 each", seen)
	}
	if got := tab.Lookup(netip.MustParseAddrPort("10.1.2.3:443")).Pick(); got.Addr != "10.1.2.3:443" || got.Meshed() {
		t.Errorf("unknown destination picked %s, want itself", got)
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
			if s.Pick().Addr == "" || !dst.IsValid() {
				t.Fatalf("bad entry %v", dst)
			}
		}
	})
}
