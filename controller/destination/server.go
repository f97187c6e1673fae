package destination

import (
	"encoding/json"
	"errors"
	"net/http"

	"github.com/meshctl/meshctl/internal/api"
)

// ServeHTTP streams a target's destination as JSON lines (GET ?target=host:port).
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
	err := w.Watch(r.Context(), target, func(d api.Destination) error {
		if err := enc.Encode(d); err != nil {
			return err
		}
		return rc.Flush()
	})
	if err != nil && !errors.Is(err, r.Context().Err()) {
		return // the proxy is gone, or the target was refused above
	}
}
