package dashboard

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/singleflight"
	"golang.org/x/time/rate"
)

//go:embed web
var webFiles embed.FS

// contentSecurityPolicy lets the page load nothing but its own files.
const contentSecurityPolicy = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; " +
	"connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"

// Server serves the dashboard: the embedded page and the read-only API.
type Server struct {
	// Collector scrapes the namespaces the page looks at.
	Collector *Collector
	// Source reads what the collector does not keep.
	Source Source
	// Namespace is the one shown first ("" with AllNamespaces).
	Namespace     string
	AllNamespaces bool
	// Version is the CLI's.
	Version string
	// Log receives request failures.
	Log *slog.Logger
	// MaxTaps bounds the live tap streams open at once (default 4).
	MaxTaps int
	// TapWriteTimeout bounds the write of one tap event (default 10s): a
	// page that stops reading loses its stream, and its slot, after it.
	TapWriteTimeout time.Duration
	// Token, when set, is the secret every API request must carry as
	// "Authorization: Bearer" (see TokenParam): another user of the
	// machine can reach a loopback port too, and must not see what the
	// dashboard's user sees.
	Token string

	// hosts are the Host headers served (set by Serve, or by SetHosts).
	hosts []string
	taps  chan struct{}
	once  sync.Once
	// health lets one `check` run at a time.
	health sync.Mutex
	// proxyReads bounds the proxies asked for their certificates at once,
	// across every page being answered.
	proxyReads chan struct{}
	// identityRuns shares one identity page's reads between the requests
	// that ask for it at the same time.
	identityRuns singleflight.Group
	// refused counts the requests refused (Host, origin, token);
	// refusalLog spaces their warnings.
	refused    atomic.Int64
	refusalLog *rate.Sometimes
}

// LoopbackHosts are the Host headers a browser sends for a server on a
// loopback address's port.
func LoopbackHosts(port string) []string {
	return []string{net.JoinHostPort("127.0.0.1", port), net.JoinHostPort("::1", port), net.JoinHostPort("localhost", port)}
}

// AllowedHosts are the Host headers to serve for a listener's address:
// the address itself, and for loopback addresses localhost too. A browser
// that reaches the server under any other name (a DNS-rebinding attack
// makes it send the attacker's name) is refused.
func AllowedHosts(addr net.Addr) []string {
	host, port, err := net.SplitHostPort(addr.String())
	if err != nil {
		return nil
	}
	out := []string{net.JoinHostPort(host, port)}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		out = append(out, LoopbackHosts(port)...)
	}
	return out
}

// SetHosts sets the Host headers served.
func (s *Server) SetHosts(hosts []string) { s.hosts = hosts }

func (s *Server) init() {
	s.once.Do(func() {
		if s.MaxTaps <= 0 {
			s.MaxTaps = 4
		}
		if s.TapWriteTimeout <= 0 {
			s.TapWriteTimeout = 10 * time.Second
		}
		s.taps = make(chan struct{}, s.MaxTaps)
		s.proxyReads = make(chan struct{}, identityConcurrency)
		s.refusalLog = &rate.Sometimes{Interval: refusalLogEvery}
		if s.Log == nil {
			s.Log = slog.New(slog.DiscardHandler)
		}
	})
}

// Handler is the dashboard's HTTP handler: the page at /, the API under
// /api/, only for GET and HEAD requests with an allowed Host.
func (s *Server) Handler() http.Handler {
	s.init()
	mux := http.NewServeMux()
	web, err := fs.Sub(webFiles, "web")
	if err != nil {
		panic(err) // the embedded tree always has web/
	}
	mux.Handle("/", http.FileServerFS(web))
	mux.HandleFunc("/api/config", s.config)
	mux.HandleFunc("/api/namespaces", s.namespaces)
	mux.HandleFunc("/api/graph", s.graph)
	mux.HandleFunc("/api/workload", s.workload)
	mux.HandleFunc("/api/identity", s.identity)
	mux.HandleFunc("/api/health", s.healthPage)
	mux.HandleFunc("/api/tap", s.tap)
	mux.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no such API: %s", r.URL.Path))
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", contentSecurityPolicy)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cross-Origin-Resource-Policy", "same-origin")
		if !slices.Contains(s.hosts, strings.ToLower(r.Host)) {
			msg := fmt.Sprintf("Host %q is not the dashboard's address", r.Host)
			if len(s.hosts) > 0 {
				msg += ": open it as " + s.hosts[0]
			}
			s.refuse(w, http.StatusForbidden, msg, "its Host header does not name the dashboard's address (DNS rebinding?)",
				"host", r.Host, "remote", r.RemoteAddr)
			return
		}
		// Another site's page may send GETs here (an <img>, a no-cors
		// fetch) even if it cannot read the answers: browsers say where a
		// request comes from, and only the dashboard's own page is served.
		if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" && site != "none" {
			s.refuse(w, http.StatusForbidden, "requests from other sites' pages are refused", "it comes from another site's page",
				"sec-fetch-site", site, "origin", r.Header.Get("Origin"))
			return
		}
		if origin := r.Header.Get("Origin"); origin != "" && !slices.Contains(s.hosts, strings.ToLower(strings.TrimPrefix(origin, "http://"))) {
			s.refuse(w, http.StatusForbidden, "requests from other sites' pages are refused", "its Origin is another site", "origin", origin)
			return
		}
		if !s.authenticated(w, r) {
			return
		}
		api := strings.HasPrefix(r.URL.Path, "/api/")
		if r.Method != http.MethodGet && (r.Method != http.MethodHead || api) {
			h.Set("Allow", "GET")
			writeError(w, http.StatusMethodNotAllowed, "the dashboard is read-only: GET only")
			return
		}
		if api {
			h.Set("Cache-Control", "no-store")
		}
		mux.ServeHTTP(w, r)
	})
}

// Serve serves on ln until ctx ends, then shuts down gracefully (within
// 5s; open tap streams are cut).
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	if s.hosts == nil {
		s.hosts = AllowedHosts(ln.Addr())
	}
	srv := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 64 << 10, BaseContext: func(net.Listener) context.Context { return ctx }}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("dashboard server: %w", err)
	case <-ctx.Done():
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdown); err != nil {
		srv.Close()
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("dashboard server: %w", err)
	}
	return nil
}

// writeJSON answers v as JSON.
func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(true)
	_ = enc.Encode(v)
}

// writeError answers {"error": msg} with a status.
func writeError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": msg})
}

// dnsLabel is a Kubernetes namespace or workload name (DNS-1123 subdomain
// characters; workload names may hold dots).
var dnsLabel = regexp.MustCompile(`^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$`)

// namespaceParam is the request's namespace: the dashboard's own when
// absent, "" (every namespace) when empty.
func (s *Server) namespaceParam(r *http.Request) (string, error) {
	q := r.URL.Query()
	if !q.Has("namespace") {
		if s.AllNamespaces {
			return "", nil
		}
		return s.Namespace, nil
	}
	ns := q.Get("namespace")
	if ns != "" && !dnsLabel.MatchString(ns) {
		return "", fmt.Errorf("namespace %q is not a Kubernetes name", ns)
	}
	return ns, nil
}

func (s *Server) config(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, map[string]any{
		"namespace": s.Namespace, "all_namespaces": s.AllNamespaces, "refresh_s": s.Collector.Interval.Seconds(), "version": s.Version,
	})
}

func (s *Server) namespaces(w http.ResponseWriter, r *http.Request) {
	ns, err := s.Source.Namespaces(r.Context())
	if err != nil {
		writeError(w, http.StatusBadGateway, err.Error())
		return
	}
	writeJSON(w, ns)
}

func (s *Server) graph(w http.ResponseWriter, r *http.Request) {
	ns, err := s.namespaceParam(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	g, err := s.Collector.Graph(r.Context(), ns)
	if err != nil {
		writeError(w, http.StatusBadGateway, err.Error())
		return
	}
	g = filterGraph(g, r.URL.Query().Get("filter"))
	switch r.URL.Query().Get("format") {
	case "", "json":
		writeJSON(w, g)
	case "dot":
		w.Header().Set("Content-Type", "text/vnd.graphviz; charset=utf-8")
		_ = WriteDOT(w, g)
	default:
		writeError(w, http.StatusBadRequest, "format: want json or dot")
	}
}
