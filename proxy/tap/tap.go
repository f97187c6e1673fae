// Package tap streams the requests a proxy handles, live, to whoever asks on
// the admin port's /tap: an event when a request starts, when its response
// headers come, and when it ends. Tapping must never hurt traffic: publishing
// never blocks, each tap has a bounded buffer and an event rate limit, and
// what does not fit is dropped and counted in the stream.
package tap

import (
	"net"
	"strings"
	"sync"
	"sync/atomic"

	"golang.org/x/time/rate"

	"github.com/meshctl/meshctl/internal/api"
	"github.com/meshctl/meshctl/internal/spiffeid"
)

// Buffer is how many events a tap holds for its reader: at the default
// limit of 1000 requests a second (3000 events), about 170 ms of them.
const Buffer = 512

// Filter selects requests; empty fields match everything.
type Filter struct {
	Authority  string
	PathPrefix string
	Method     string
	// Direction is inbound or outbound.
	Direction string
	// ClientIDPath and ServerIDPath match the path of the client's or
	// server's SPIFFE ID (/ns/NS/sa/SA) exactly, or as a prefix when they
	// end in "/" (/ns/NS/: a namespace).
	ClientIDPath, ServerIDPath string
}

func (f Filter) match(e *api.TapEvent) bool {
	return authorityMatches(f.Authority, e.Authority) &&
		(f.Method == "" || strings.EqualFold(f.Method, e.Method)) &&
		(f.Direction == "" || f.Direction == e.Direction) &&
		spiffeid.PathMatches(f.ClientIDPath, e.ClientID) && spiffeid.PathMatches(f.ServerIDPath, e.ServerID) &&
		strings.HasPrefix(e.Path, f.PathPrefix)
}

// authorityMatches: want is the authority, or (without a port) its host;
// case does not matter.
func authorityMatches(want, authority string) bool {
	if want == "" || strings.EqualFold(want, authority) {
		return true
	}
	if strings.Contains(want, ":") && !strings.HasPrefix(want, "[") {
		return false // host:port, not equal
	}
	host, _, err := net.SplitHostPort(authority)
	if err != nil {
		host = authority
	}
	return strings.EqualFold(strings.Trim(want, "[]"), host)
}

// Tap is one subscriber.
type Tap struct {
	filter  Filter
	limit   *rate.Limiter
	events  chan api.TapEvent
	dropped atomic.Uint64
	// ids are the requests this tap took the start of; later events of other
	// requests are skipped so every request shows whole or not at all. Only
	// Publish touches it, under the hub's lock.
	ids map[uint64]struct{}
}

// Events delivers the tap's events.
func (t *Tap) Events() <-chan api.TapEvent { return t.events }

// TakeDropped returns and resets the count of events dropped.
func (t *Tap) TakeDropped() uint64 { return t.dropped.Swap(0) }

// Hub fans request events out to taps.
type Hub struct {
	active atomic.Int32
	nextID atomic.Uint64

	// mu guards taps and each tap's ids.
	mu   sync.Mutex
	taps map[*Tap]struct{}
}

// NewHub returns a hub with no taps.
func NewHub() *Hub { return &Hub{taps: map[*Tap]struct{}{}} }

// Active reports whether anyone is tapping; when not, callers skip building events.
func (h *Hub) Active() bool { return h.active.Load() > 0 }

// NextID numbers a request.
func (h *Hub) NextID() uint64 { return h.nextID.Add(1) }

// Subscribe adds a tap taking up to maxRPS events a second (at least 1).
func (h *Hub) Subscribe(f Filter, maxRPS int) *Tap {
	maxRPS = max(maxRPS, 1)
	t := &Tap{filter: f, limit: rate.NewLimiter(rate.Limit(maxRPS), maxRPS), events: make(chan api.TapEvent, Buffer), ids: map[uint64]struct{}{}}
	h.mu.Lock()
	h.taps[t] = struct{}{}
	h.mu.Unlock()
	h.active.Add(1)
	return t
}

// Unsubscribe removes a tap.
func (h *Hub) Unsubscribe(t *Tap) {
	h.mu.Lock()
	if _, ok := h.taps[t]; ok {
		delete(h.taps, t)
		h.active.Add(-1)
	}
	h.mu.Unlock()
}

// Publish offers an event to every tap whose filter matches. Start events
// carry the request's fields; Headers and End events need only ID and type
// and reach the taps that took the start.
func (h *Hub) Publish(e api.TapEvent) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for t := range h.taps {
		if e.Type == api.TapStart {
			if !t.filter.match(&e) {
				continue
			}
			if !t.limit.Allow() {
				t.dropped.Add(1)
				continue
			}
			t.ids[e.ID] = struct{}{}
		} else if _, ok := t.ids[e.ID]; !ok {
			continue
		}
		if e.Type == api.TapEnd {
			delete(t.ids, e.ID)
		}
		select {
		case t.events <- e:
		default:
			t.dropped.Add(1)
		}
	}
}
