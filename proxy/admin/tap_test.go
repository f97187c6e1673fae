package admin

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/meshctl/meshctl/internal/api"
	"github.com/meshctl/meshctl/proxy/tap"
)

// flushCounter is a ResponseWriter that counts flushes and lines written.
type flushCounter struct {
	*httptest.ResponseRecorder
	mu      sync.Mutex
	flushes int
}

func (f *flushCounter) Write(b []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.ResponseRecorder.Write(b)
}

func (f *flushCounter) Flush() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.flushes++
}

func (f *flushCounter) counts() (flushes, lines int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	sc := bufio.NewScanner(bytes.NewReader(f.Body.Bytes()))
	for sc.Scan() {
		var e api.TapEvent
		if json.Unmarshal(sc.Bytes(), &e) == nil && e.Type == api.TapStart {
			lines++
		}
	}
	return f.flushes, lines
}

// A busy tap writes its events in batches, not one write each: 300 events
// over about 150 ms take a handful of flushes.
func TestTapBatchesItsWrites(t *testing.T) {
	hub := tap.NewHub()
	w := &flushCounter{ResponseRecorder: httptest.NewRecorder()}
	ctx, cancel := context.WithCancel(context.Background())
	req := httptest.NewRequest(http.MethodGet, "/tap", nil).WithContext(ctx)
	done := make(chan struct{})
	go func() { defer close(done); serveTap(w, req, hub, 10000) }()
	deadline := time.Now().Add(5 * time.Second)
	for !hub.Active() {
		if time.Now().After(deadline) {
			t.Fatal("the tap did not subscribe")
		}
		time.Sleep(time.Millisecond)
	}
	const events = 300
	for i := range events {
		hub.Publish(api.TapEvent{Type: api.TapStart, ID: uint64(i + 1), Path: "/"})
		time.Sleep(500 * time.Microsecond)
	}
	for {
		if _, lines := w.counts(); lines == events {
			break
		}
		if time.Now().After(deadline) {
			_, lines := w.counts()
			t.Fatalf("%d of %d events reached the stream", lines, events)
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	<-done
	flushes, _ := w.counts()
	// One at the start, then about one per TapFlushInterval of publishing
	// (slow machines publish for longer); a flush per event would be 300.
	if flushes > events/10 {
		t.Errorf("%d flushes for %d events: not batched", flushes, events)
	}
	t.Logf("%d events in %d flushes", events, flushes)
}
