package metrics

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meshctl/meshctl/internal/spiffeid"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// TestExpositionIsAsBefore pins what /metrics says of the proxy's own
// families: names, help, types, labels sorted by name, values escaped
// (the Go runtime's and process series vary, and are left out).
func TestExpositionIsAsBefore(t *testing.T) {
	m := New(Config{})
	c := m.Open(ConnLabels{Direction: Inbound, TLS: true, ClientID: "spiffe://cluster.local/ns/a/sa/b"})
	r := c.Route("web.default:80")
	r.Request()
	r.Response(200, Success, 3.5)
	r.Request()
	r.Response(503, Failure, 12)
	c.Read(10)
	c.Write(20)
	c.Retry("web.default:80")
	c.RetryBudgetExhausted("web.default:80")
	c.Timeout("web.default:80", "try")
	c.Unavailable("web.default:80", "no_endpoints")
	c.Mirror("shadow.default:80", MirrorSent)
	c.TLSError("untrusted")
	c.Plaintext(PlaintextNoIdentity)
	c.ProtocolError("http1", "bad_request")
	c.Close()
	out := m.Open(ConnLabels{Direction: Outbound})
	out.RouteTo("api.default:8080", spiffeidFor(t, "spiffe://cluster.local/ns/api/sa/api"), "api").Request()
	m.InboundDecision("allow", "default:all-authenticated")
	m.WatchEjected(func(yield func(string, int)) { yield(`odd"name\`, 2) })
	m.WatchCertificate(func() time.Time { return time.Unix(1700000000, 0) })

	var buf bytes.Buffer
	m.WritePrometheus(&buf)
	var own strings.Builder
	for line := range strings.Lines(buf.String()) {
		family := strings.Fields(strings.TrimPrefix(strings.TrimPrefix(line, "# HELP "), "# TYPE "))[0]
		if !strings.HasPrefix(family, "go_") && !strings.HasPrefix(family, "process_") {
			own.WriteString(line)
		}
	}
	golden := filepath.Join("testdata", "exposition.golden")
	if *update {
		if err := os.WriteFile(golden, []byte(own.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if own.String() != string(want) {
		t.Errorf("/metrics changed (go test -update to accept):\n%s", own.String())
	}
	if !strings.Contains(buf.String(), "\nprocess_resident_memory_bytes ") || !strings.Contains(buf.String(), "\ngo_goroutines ") {
		t.Error("/metrics lacks the process's and the Go runtime's series")
	}
	gather(t, m) // and the Prometheus parser reads it
}

func spiffeidFor(t *testing.T, s string) spiffeid.ID {
	t.Helper()
	id, err := spiffeid.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return id
}
