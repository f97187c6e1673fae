package destination

import (
	"encoding/json"
	"errors"
	"net/http"

	"github.com/meshctl/meshctl/internal/api"
	"github.com/meshctl/meshctl/internal/spiffeid"
)

// clientNamespace is the namespace in the SPIFFE ID of the client's
// certificate (verified by the control API before this handler runs).
func clientNamespace(r *http.Request) (string, bool) {
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return "", false
	}
	for _, u := range r.TLS.PeerCertificates[0].URIs {
		if id, err := spiffeid.Parse(u.String()); err == nil {
			return id.Namespace, true
		}
	}
	return "", false
}

// ServeHTTP streams a target's destination as JSON lines (GET ?target=host:port).
// A client known by its certificate gets the producer routes and its own
// namespace's consumer routes only; one that is not (no client
// certificate, or none with a SPIFFE ID) gets the producer routes only:
// the control API refuses such clients, but a handler mounted elsewhere
// must not hand every namespace's consumer routes to anyone who asks.
// (Resolve and Watch, for tests and local tools, still give every route.)
func (w *Watcher) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		http.Error(rw, `{"error":"use GET"}`, http.StatusMethodNotAllowed)
		return
	}
	target := r.URL.Query().Get("target")
	if _, err := w.parse(target); err != nil {
		rw.Header().Set("Content-Type", "application/json")
		rw.WriteHeader(http.StatusBadRequest)
		_ = json.NewEncoder(rw).Encode(api.Error{Error: err.Error(), Reason: "bad_target"})
		return
	}
	rc := http.NewResponseController(rw)
	rw.Header().Set("Content-Type", "application/x-ndjson")
	rw.WriteHeader(http.StatusOK)
	enc := json.NewEncoder(rw)
	client, known := clientNamespace(r)
	if !known {
		client = producerOnly // fail closed: no namespace's consumer routes
	}
	err := w.WatchFor(r.Context(), target, client, func(d api.Destination) error {
		if err := enc.Encode(d); err != nil {
			return err
		}
		return rc.Flush()
	})
	if err != nil && !errors.Is(err, r.Context().Err()) {
		return // the proxy is gone, or the target was refused above
	}
}
