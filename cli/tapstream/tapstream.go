// Package tapstream follows the proxies' /tap streams of many pods at once
// (through the controller's admin API, admin.meshctl.io, with the user's
// credentials; the caller's Opener opens them), merges
// their events, and aggregates them into the rows `meshctl top` shows. One
// pod failing or vanishing mid-stream is reported and the others go on.
package tapstream

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"sync"

	"github.com/meshctl/meshctl/internal/api"
)

// Event is one line of a proxy's /tap stream.
type Event = api.TapEvent

// PodEvent is an event and the pod whose proxy saw it.
type PodEvent struct {
	Namespace string `json:"namespace"`
	Pod       string `json:"pod"`
	Workload  string `json:"workload,omitempty"`
	Event
}

// Pod is a stream to follow.
type Pod struct {
	Namespace, Name, Workload string
}

// Opener opens a pod's /tap stream with the query given.
type Opener func(ctx context.Context, p Pod, query url.Values) (io.ReadCloser, error)

// Filter narrows what the proxies send.
type Filter struct {
	Authority, Path, Method string
	// ClientIDPath and ServerIDPath keep the requests whose client's or
	// server's SPIFFE ID has this path (/ns/NS/sa/SA), or a path that
	// starts with it when it ends in "/" (/ns/NS/).
	ClientIDPath, ServerIDPath string
	// Direction keeps inbound or outbound requests only.
	Direction string
	MaxRPS    int
	// Keep, if not nil, is asked of each request's start event again here,
	// for proxies that do not know every filter above: a request it
	// refuses is dropped whole (its later events too).
	Keep func(Event) bool
	// KeepEnd, if not nil, decides on each request once it has ended, with
	// its start and end events (the end says which endpoint answered and
	// the identity it proved): the request's events are held until then.
	KeepEnd func(start, end Event) bool
}

func (f Filter) query() url.Values {
	q := url.Values{}
	if f.Authority != "" {
		q.Set("authority", f.Authority)
	}
	if f.Path != "" {
		q.Set("path", f.Path)
	}
	if f.Method != "" {
		q.Set("method", f.Method)
	}
	if f.ClientIDPath != "" {
		q.Set("client_id_path", f.ClientIDPath)
	}
	if f.ServerIDPath != "" {
		q.Set("server_id_path", f.ServerIDPath)
	}
	if f.Direction != "" {
		q.Set("direction", f.Direction)
	}
	if f.MaxRPS > 0 {
		q.Set("max_rps", fmt.Sprint(f.MaxRPS))
	}
	return q
}

// maxKept bounds the requests one stream's Keep remembers.
const maxKept = 1 << 16

// Follow streams every pod's events into events until ctx ends, calling
// failed (from any goroutine, serialized) for each pod whose stream could
// not be opened or broke, and opened (if not nil) once every stream is open
// or has failed to open. It returns when all streams have ended.
func Follow(ctx context.Context, pods []Pod, open Opener, f Filter, events chan<- PodEvent, failed func(Pod, error), opened func()) {
	var mu sync.Mutex
	var opening sync.WaitGroup
	opening.Add(len(pods))
	if opened != nil {
		go func() { opening.Wait(); opened() }()
	}
	report := func(p Pod, err error) {
		mu.Lock()
		defer mu.Unlock()
		failed(p, err)
	}
	var wg sync.WaitGroup
	for _, p := range pods {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rc, err := open(ctx, p, f.query())
			opening.Done()
			if err != nil {
				if ctx.Err() == nil {
					report(p, err)
				}
				return
			}
			defer rc.Close()
			stop := context.AfterFunc(ctx, func() { rc.Close() })
			defer stop()
			s := bufio.NewScanner(rc)
			s.Buffer(make([]byte, 64<<10), 1<<20)
			kept := map[uint64]bool{}    // requests whose start Keep took, until their end
			held := map[uint64][]Event{} // requests waiting for their end (KeepEnd)
			for s.Scan() {
				var e Event
				if err := json.Unmarshal(s.Bytes(), &e); err != nil {
					report(p, fmt.Errorf("a bad line in its tap stream: %w", err))
					return
				}
				if f.KeepEnd != nil && e.ID != 0 {
					switch {
					case e.Type == api.TapStart:
						if len(held) >= maxKept { // ends lost: start again rather than grow
							clear(held)
						}
						held[e.ID] = []Event{e}
						continue
					case held[e.ID] == nil:
						continue
					case e.Type != api.TapEnd:
						held[e.ID] = append(held[e.ID], e)
						continue
					}
					batch := append(held[e.ID], e)
					delete(held, e.ID)
					if !f.KeepEnd(batch[0], e) {
						continue
					}
					for _, ev := range batch[:len(batch)-1] {
						select {
						case events <- PodEvent{Namespace: p.Namespace, Pod: p.Name, Workload: p.Workload, Event: ev}:
						case <-ctx.Done():
							return
						}
					}
				}
				if f.Keep != nil && e.ID != 0 {
					if e.Type == api.TapStart {
						if !f.Keep(e) {
							continue
						}
						if len(kept) >= maxKept { // ends lost: start again rather than grow
							clear(kept)
						}
						kept[e.ID] = true
					} else if !kept[e.ID] {
						continue
					} else if e.Type == api.TapEnd {
						delete(kept, e.ID)
					}
				}
				select {
				case events <- PodEvent{Namespace: p.Namespace, Pod: p.Name, Workload: p.Workload, Event: e}:
				case <-ctx.Done():
					return
				}
			}
			if ctx.Err() == nil {
				err := s.Err()
				if err == nil {
					err = io.ErrUnexpectedEOF
				}
				report(p, fmt.Errorf("its tap stream ended: %w", err))
			}
		}()
	}
	wg.Wait()
}
