package spiffeid

import (
	"crypto/x509"
	"net/url"
	"strings"
	"testing"
)

func TestParseRoundTrips(t *testing.T) {
	id, err := Parse("spiffe://cluster.local/ns/demo/sa/web")
	if err != nil {
		t.Fatal(err)
	}
	if id != (ID{"cluster.local", "demo", "web"}) || id.String() != "spiffe://cluster.local/ns/demo/sa/web" || id.URL().String() != id.String() {
		t.Errorf("got %+v / %s / %s", id, id, id.URL())
	}
}

func TestParseRejects(t *testing.T) {
	for _, s := range []string{
		"", "http://cluster.local/ns/a/sa/b", "spiffe://cluster.local", "spiffe://cluster.local/ns/a",
		"spiffe://cluster.local/ns/a/sa/b/c", "spiffe://Cluster.Local/ns/a/sa/b", "spiffe:///ns/a/sa/b",
		"spiffe://cluster.local/ns//sa/b", "spiffe://cluster.local/ns/A/sa/b", "spiffe://cluster.local/sa/a/ns/b",
	} {
		if _, err := Parse(s); err == nil {
			t.Errorf("Parse(%q) = nil error", s)
		}
	}
}

func TestFromCertificateWantsExactlyOneID(t *testing.T) {
	u1, _ := url.Parse("spiffe://td/ns/a/sa/b")
	u2, _ := url.Parse("spiffe://td/ns/c/sa/d")
	web, _ := url.Parse("https://example.com")
	if id, err := FromCertificate(&x509.Certificate{URIs: []*url.URL{web, u1}}); err != nil || id.Namespace != "a" {
		t.Errorf("one ID: %v, %v", id, err)
	}
	for _, uris := range [][]*url.URL{nil, {web}, {u1, u2}} {
		if _, err := FromCertificate(&x509.Certificate{URIs: uris}); err == nil {
			t.Errorf("FromCertificate(%v) = nil error", uris)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add("spiffe://cluster.local/ns/demo/sa/web")
	f.Fuzz(func(t *testing.T, s string) {
		id, err := Parse(s)
		if err != nil {
			return
		}
		again, err := Parse(id.String())
		if err != nil || again != id {
			t.Fatalf("%q parsed to %+v, which does not round-trip: %v", s, id, err)
		}
	})
}

// TestValidateErrorIsDeterministic: an ID with two bad parts always gets
// the same error, the first part's (FuzzCompute found a map's random order
// giving the same policy two different errors).
func TestValidateErrorIsDeterministic(t *testing.T) {
	for range 64 {
		_, err := New("cluster.local", " ", " ")
		if err == nil || !strings.HasPrefix(err.Error(), "namespace ") {
			t.Fatalf("New with a bad namespace and a bad service account: %v, want the namespace's error", err)
		}
	}
}
