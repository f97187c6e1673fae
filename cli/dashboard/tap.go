package dashboard

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/meshctl/meshctl/cli/tapstream"
)

// tapMaxRPS is the requests a second each proxy sends the page at most.
const tapMaxRPS = 50

// tapMaxPods bounds the pods one page follows.
const tapMaxPods = 50

// tap streams a workload's requests as server-sent events: a default
// event per tap event (TapEvent JSON), "info" and "failure" events about
// the streams. At most MaxTaps streams are open at once.
func (s *Server) tap(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	ns, name := q.Get("namespace"), q.Get("name")
	if !dnsLabel.MatchString(ns) || !dnsLabel.MatchString(name) {
		writeError(w, http.StatusBadRequest, "give a workload's namespace and name: /api/tap?namespace=NS&name=NAME")
		return
	}
	if _, err := s.Collector.Graph(r.Context(), ns); err != nil {
		writeError(w, http.StatusBadGateway, err.Error())
		return
	}
	var pods []tapstream.Pod
	if snap := s.Collector.snapshot(ns); snap != nil {
		for _, wl := range snap.Workloads {
			if wl.Namespace != ns || wl.Name != name {
				continue
			}
			for _, p := range wl.Pods {
				if p.Meshed && len(pods) < tapMaxPods {
					pods = append(pods, tapstream.Pod{Namespace: p.Namespace, Name: p.Name, Workload: name})
				}
			}
		}
	}
	if len(pods) == 0 {
		writeError(w, http.StatusNotFound, fmt.Sprintf("workload %s/%s has no running meshed pod to tap", ns, name))
		return
	}
	select {
	case s.taps <- struct{}{}:
		defer func() { <-s.taps }()
	default:
		writeError(w, http.StatusTooManyRequests, fmt.Sprintf("%d live taps are open already: close one", s.MaxTaps))
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	ctx, cancel := context.WithCancel(r.Context())
	events := make(chan tapstream.PodEvent, 256)
	failures := make(chan failure, len(pods))
	done := make(chan struct{})
	defer func() { cancel(); <-done }() // the streams end with the page's request
	go func() {
		defer close(done)
		s.Source.Tap(ctx, pods, tapstream.Filter{Path: q.Get("path"), Method: q.Get("method"), MaxRPS: tapMaxRPS}, events,
			func(p tapstream.Pod, err error) {
				select {
				case failures <- failure{Pod: p.Namespace + "/" + p.Name, Error: err.Error()}:
				default:
				}
			})
	}()
	rc := http.NewResponseController(w)
	deadline := func() { _ = rc.SetWriteDeadline(time.Now().Add(s.TapWriteTimeout)) }
	send := func(event string, v any) bool {
		b, err := json.Marshal(v)
		if err != nil {
			return false
		}
		deadline()
		if event != "" {
			fmt.Fprintf(w, "event: %s\n", event)
		}
		if _, err := fmt.Fprintf(w, "data: %s\n\n", b); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	send("info", map[string]string{"message": fmt.Sprintf("tapping %d pods of %s/%s", len(pods), ns, name)})
	keepalive := time.NewTicker(15 * time.Second)
	defer keepalive.Stop()
	for {
		select {
		case <-done:
			send("info", map[string]string{"message": "every stream ended"})
			return
		case f := <-failures:
			if !send("failure", f) {
				return
			}
		case e := <-events:
			if !send("", TapEvent{Namespace: e.Namespace, Pod: e.Pod, TapEvent: e.Event}) {
				return
			}
		case <-keepalive.C:
			deadline()
			if _, err := fmt.Fprint(w, ": keepalive\n\n"); err != nil || rc.Flush() != nil {
				return
			}
		}
	}
}

// failure is a pod whose stream failed.
type failure struct {
	Pod   string `json:"pod"`
	Error string `json:"error"`
}
