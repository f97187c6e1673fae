package admin

import (
	"compress/gzip"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/pprof"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/meshctl/meshctl/internal/api"
	"github.com/meshctl/meshctl/internal/certs"
	"github.com/meshctl/meshctl/internal/spiffeid"
	"github.com/meshctl/meshctl/proxy/endpoints"
	"github.com/meshctl/meshctl/proxy/tap"
)

// Config configures the admin endpoints.
type Config struct {
	// Metrics writes what /metrics serves, in Prometheus's text format.
	// Required.
	Metrics func(w io.Writer)
	// MetricsWindow, when set, writes them with the request metrics of the
	// last window only, for /metrics?window=DURATION (at most an hour;
	// what is kept decides: a minute).
	MetricsWindow func(w io.Writer, window time.Duration)
	// Ready reports whether the proxy can serve; /ready answers 503 until it
	// does. Default: always ready.
	Ready func() bool
	// Identity is the workload certificate /identity describes and the admin
	// port serves TLS with; nil means the proxy has none (/identity answers
	// 404, and TLS clients are turned away).
	Identity certs.Source
	// ControllerID is the control plane's SPIFFE ID: over mutual TLS, the
	// only client that may use the sensitive endpoints. Zero: none may, only
	// loopback in plaintext.
	ControllerID spiffeid.ID
	// Tap is the hub /tap subscribes to; nil disables /tap.
	Tap *tap.Hub
	// DefaultTapRPS is a tap's event limit unless ?max_rps= says otherwise. Default: 1000.
	DefaultTapRPS int
	// Pprof serves Go's profiles under /debug/pprof/ (sensitive).
	Pprof bool
	// Renew, when set, asks for a new workload certificate now (POST
	// /renew, sensitive): `meshctl identity rotate-issuer` moves proxies to
	// a new issuer with it.
	Renew func()
	// Destinations, when set, lists the outbound destinations the proxy
	// follows and their endpoints, for /destinations (sensitive).
	Destinations endpoints.Lister
	// Policy, when set, is the pod's inbound policy the proxy enforces,
	// for /policy (sensitive); ok is false until the controller sent it.
	Policy func() (policy api.InboundPolicy, ok bool)
	// Log receives refusals (warn). Default: discard.
	Log *slog.Logger
}

// Handler returns the admin endpoints. The sensitive ones answer loopback
// plaintext clients, and the controller over the mutual TLS that only
// Server's connections carry; everyone else gets 403.
func Handler(cfg Config) http.Handler {
	if cfg.DefaultTapRPS == 0 {
		cfg.DefaultTapRPS = 1000
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	only := access{controller: cfg.ControllerID, log: cfg.Log, warnings: &rate.Sometimes{First: 5, Interval: 10 * time.Second}}.only
	mux := http.NewServeMux()
	mux.HandleFunc("GET /live", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("live\n"))
	})
	mux.HandleFunc("GET /ready", func(w http.ResponseWriter, _ *http.Request) {
		if cfg.Ready != nil && !cfg.Ready() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
		write := cfg.Metrics
		if q := r.URL.Query().Get("window"); q != "" && cfg.MetricsWindow != nil {
			d, err := time.ParseDuration(q)
			if err != nil || d <= 0 || d > time.Hour {
				http.Error(w, "window: want a duration over 0 and at most 1h, such as 60s", http.StatusBadRequest)
				return
			}
			write = func(w io.Writer) { cfg.MetricsWindow(w, d) }
		}
		serveMetrics(w, r, write)
	})
	mux.Handle("GET /identity", only(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		serveIdentity(w, cfg.Identity)
	})))
	if cfg.Renew != nil {
		mux.Handle("POST /renew", only(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			cfg.Renew()
			w.WriteHeader(http.StatusAccepted)
			_, _ = w.Write([]byte("renewing\n"))
		})))
	}
	if cfg.Destinations != nil {
		mux.Handle("GET /destinations", only(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			serveDestinations(w, cfg.Destinations)
		})))
	}
	if cfg.Policy != nil {
		mux.Handle("GET /policy", only(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			servePolicy(w, cfg.Policy)
		})))
	}
	mux.Handle("GET /tap", only(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		serveTap(w, r, cfg.Tap, cfg.DefaultTapRPS)
	})))
	if cfg.Pprof {
		mux.Handle("/debug/pprof/", only(http.HandlerFunc(pprof.Index)))
		mux.Handle("/debug/pprof/profile", only(http.HandlerFunc(pprof.Profile)))
		mux.Handle("/debug/pprof/heap", only(pprof.Handler("heap")))
		mux.Handle("/debug/pprof/allocs", only(pprof.Handler("allocs")))
		mux.Handle("/debug/pprof/goroutine", only(pprof.Handler("goroutine")))
	}
	return mux
}

// serveMetrics writes the metrics in Prometheus's text format, gzipped
// when the client takes it (as Prometheus does: at the series cap the text
// is megabytes).
func serveMetrics(w http.ResponseWriter, r *http.Request, write func(io.Writer)) {
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	if !acceptsGzip(r.Header["Accept-Encoding"]) {
		write(w)
		return
	}
	w.Header().Set("Content-Encoding", "gzip")
	w.Header().Add("Vary", "Accept-Encoding")
	zw := gzips.Get().(*gzip.Writer)
	zw.Reset(w)
	write(zw)
	_ = zw.Close()
	zw.Reset(nil)
	gzips.Put(zw)
}

// gzips keeps the compressors between scrapes (each holds about 800 KB).
var gzips = sync.Pool{New: func() any { return gzip.NewWriter(nil) }}

// acceptsGzip reports whether Accept-Encoding lists gzip, with a weight
// above zero if it has one ("gzip", "gzip;q=0.5"; not "gzip;q=0").
func acceptsGzip(values []string) bool {
	for _, v := range values {
		for part := range strings.SplitSeq(v, ",") {
			coding, params, _ := strings.Cut(strings.TrimSpace(part), ";")
			if !strings.EqualFold(strings.TrimSpace(coding), "gzip") {
				continue
			}
			q, found := strings.CutPrefix(strings.ToLower(strings.ReplaceAll(params, " ", "")), "q=")
			if !found {
				return true
			}
			if w, err := strconv.ParseFloat(q, 64); err == nil && w > 0 {
				return true
			}
		}
	}
	return false
}

func serveDestinations(w http.ResponseWriter, l endpoints.Lister) {
	out := map[string][]api.DestinationEndpoint{}
	for dst, eps := range l.List() {
		list := make([]api.DestinationEndpoint, 0, len(eps))
		for _, e := range eps {
			d := api.DestinationEndpoint{Addr: e.Addr, Opaque: e.Opaque}
			if e.Meshed() {
				d.Identity = e.Identity.String()
			}
			list = append(list, d)
		}
		out[dst] = list
	}
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(out)
}

// servePolicy answers the inbound policy, or 503 while the proxy waits
// for it.
func servePolicy(w http.ResponseWriter, policy func() (api.InboundPolicy, bool)) {
	p, ok := policy()
	if !ok {
		http.Error(w, "the proxy has not received its pod's inbound policy from the controller yet: it admits nothing until then", http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(p)
}

func serveIdentity(w http.ResponseWriter, src certs.Source) {
	if src == nil {
		http.Error(w, "this proxy has no identity", http.StatusNotFound)
		return
	}
	b := src.Bundle()
	leaf := b.Leaf()
	info := api.IdentityInfo{
		SPIFFEID:  b.ID.String(),
		Serial:    hex.EncodeToString(leaf.SerialNumber.Bytes()),
		NotBefore: leaf.NotBefore.UTC(),
		NotAfter:  leaf.NotAfter.UTC(),
	}
	if issuer := b.Issuer(); issuer != nil {
		info.IssuerFingerprint = certs.Fingerprint(issuer)
	}
	for _, r := range b.RootCerts {
		info.TrustRootFingerprints = append(info.TrustRootFingerprints, certs.Fingerprint(r))
	}
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(info)
}

// TapFlushInterval is how often a /tap stream sends the events queued for
// it; a tap holds up to tap.Buffer of them meanwhile.
const TapFlushInterval = 25 * time.Millisecond

func serveTap(w http.ResponseWriter, r *http.Request, hub *tap.Hub, defaultRPS int) {
	if hub == nil {
		http.Error(w, "tap is disabled", http.StatusNotFound)
		return
	}
	q := r.URL.Query()
	maxRPS := defaultRPS
	if v := q.Get("max_rps"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			http.Error(w, "max_rps must be a positive integer", http.StatusBadRequest)
			return
		}
		maxRPS = n
	}
	f := tap.Filter{Authority: q.Get("authority"), PathPrefix: q.Get("path"), Method: q.Get("method"),
		Direction: q.Get("direction"), ClientIDPath: q.Get("client_id_path"), ServerIDPath: q.Get("server_id_path")}
	switch f.Direction {
	case "", "inbound", "outbound":
	default:
		http.Error(w, "direction must be inbound or outbound", http.StatusBadRequest)
		return
	}
	t := hub.Subscribe(f, maxRPS)
	defer hub.Unsubscribe(t)
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	_ = rc.Flush()
	enc := json.NewEncoder(w)
	// Events are sent in batches, one write a TapFlushInterval at most: at
	// 1000 tapped requests a second, a write per event was 3000 system
	// calls a second on the proxy's one CPU.
	tick := time.NewTicker(TapFlushInterval)
	defer tick.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-tick.C:
		}
		wrote := false
		for drained := false; !drained; {
			select {
			case e := <-t.Events():
				if err := enc.Encode(e); err != nil {
					return
				}
				wrote = true
			default:
				drained = true
			}
		}
		if n := t.TakeDropped(); n > 0 {
			if err := enc.Encode(api.TapEvent{Type: api.TapDropped, Time: time.Now().UTC(), Count: n}); err != nil {
				return
			}
			wrote = true
		}
		if !wrote {
			continue
		}
		if err := rc.Flush(); err != nil {
			return
		}
	}
}
