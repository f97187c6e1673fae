package h2server

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// goroutineID is the ID of the calling goroutine (from its stack's header).
func goroutineID() uint64 {
	buf := make([]byte, 64)
	buf = buf[:runtime.Stack(buf, false)]
	buf, _ = bytes.CutPrefix(buf, []byte("goroutine "))
	id, _ := strconv.ParseUint(string(buf[:bytes.IndexByte(buf, ' ')]), 10, 64)
	return id
}

func get(t *testing.T, rt http.RoundTripper, addr string) string {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/", nil)
	_, body := do(t, rt, req)
	return body
}

// TestHandlersReuseTheirGoroutine: one stream after the other, each handler
// runs on the goroutine the one before ran on (its stack already grown);
// with WorkerIdle negative, each on a new one.
func TestHandlersReuseTheirGoroutine(t *testing.T) {
	for name, idle := range map[string]time.Duration{"workers": 0, "a goroutine per stream": -1} {
		t.Run(name, func(t *testing.T) {
			addr, _, _ := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				io.WriteString(w, strconv.FormatUint(goroutineID(), 10))
			}), func(c *Config) { c.WorkerIdle = idle })
			rt := clients(t)["h2client"]
			seen := map[string]bool{}
			for range 20 {
				seen[get(t, rt, addr)] = true
			}
			if idle >= 0 && len(seen) != 1 {
				t.Errorf("20 streams one after the other ran on %d goroutines, want 1", len(seen))
			}
			if idle < 0 && len(seen) != 20 {
				t.Errorf("20 streams ran on %d goroutines, want one each", len(seen))
			}
		})
	}
}

// TestAStreamNeverWaitsForABusyWorker: with every worker busy in a handler
// that waits for the next stream's, the next stream still runs.
func TestAStreamNeverWaitsForABusyWorker(t *testing.T) {
	second := make(chan struct{})
	var n atomic.Int32
	addr, _, _ := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/warm" {
			return
		}
		if n.Add(1) == 1 {
			select {
			case <-second:
			case <-time.After(10 * time.Second):
				http.Error(w, "the second stream never ran", http.StatusInternalServerError)
				return
			}
		} else {
			close(second)
		}
		io.WriteString(w, "ok")
	}))
	rt := clients(t)["h2client"]
	warm, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/warm", nil)
	do(t, rt, warm) // a worker now waits for a stream
	done := make(chan string, 1)
	go func() {
		req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/", nil)
		res, err := rt.RoundTrip(req)
		if err != nil {
			done <- err.Error()
			return
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		done <- string(b)
	}()
	// Wait until the first takes the worker, then send the second.
	deadline := time.Now().Add(10 * time.Second)
	for n.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if got := get(t, rt, addr); got != "ok" {
		t.Errorf("second stream: %q", got)
	}
	if got := <-done; got != "ok" {
		t.Errorf("first stream: %q", got)
	}
}

// TestIdleWorkersEnd: workers end after WorkerIdle without a stream, and
// at once when the server closes.
func TestIdleWorkersEnd(t *testing.T) {
	for _, closeIt := range []bool{false, true} {
		t.Run("close="+strconv.FormatBool(closeIt), func(t *testing.T) {
			idle := 200 * time.Millisecond
			if closeIt {
				idle = time.Hour
			}
			worker := make(chan uint64, 1)
			addr, srv, _ := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				worker <- goroutineID()
			}), func(c *Config) { c.WorkerIdle = idle })
			rt := clients(t)["h2client"]
			get(t, rt, addr)
			id := <-worker
			if closeIt {
				srv.Close()
			}
			deadline := time.Now().Add(10 * time.Second)
			for goroutineExists(id) {
				if time.Now().After(deadline) {
					t.Fatalf("the worker (goroutine %d) is still there", id)
				}
				time.Sleep(10 * time.Millisecond)
			}
		})
	}
}

// goroutineExists reports whether a goroutine with this ID is alive.
func goroutineExists(id uint64) bool {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	return bytes.Contains(buf, []byte("goroutine "+strconv.FormatUint(id, 10)+" ["))
}

// countWorkers counts the goroutines in workers.work.
func countWorkers() int {
	buf := make([]byte, 16<<20)
	buf = buf[:runtime.Stack(buf, true)]
	return bytes.Count(buf, []byte("h2server.(*workers).work("))
}

// TestSurplusWorkersEndUnderATrickle: after a burst of 100 concurrent
// streams, requests one at a time keep one worker busy and let the other 99
// time out (with the oldest waiting worker taking each stream, the trickle
// kept all 100).
func TestSurplusWorkersEndUnderATrickle(t *testing.T) {
	const burst = 100
	var arrived sync.WaitGroup
	arrived.Add(burst)
	release := make(chan struct{})
	addr, _, _ := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/burst" {
			arrived.Done()
			<-release
		}
		io.WriteString(w, "ok")
	}), func(c *Config) { c.WorkerIdle = 300 * time.Millisecond })
	rt := clients(t)["h2client"]
	var done sync.WaitGroup
	for range burst {
		done.Add(1)
		go func() {
			defer done.Done()
			req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/burst", nil)
			do(t, rt, req)
		}()
	}
	arrived.Wait()
	close(release)
	done.Wait()
	before := countWorkers()
	deadline := time.Now().Add(10 * time.Second)
	for {
		get(t, rt, addr) // the trickle
		n := countWorkers()
		if n <= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d workers (from %d after the burst) still there under a trickle one request at a time", n, before)
		}
	}
	if before < burst/2 {
		t.Errorf("the burst left %d workers; the test needs most of its %d", before, burst)
	}
}

// TestGoroutineLabelsEndWithTheirStream: labels a handler set for profiles
// do not label the next stream's handler on the same worker.
func TestGoroutineLabelsEndWithTheirStream(t *testing.T) {
	addr, _, _ := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/label" {
			pprof.SetGoroutineLabels(pprof.WithLabels(context.Background(), pprof.Labels("tenant", "a")))
			io.WriteString(w, strconv.FormatUint(goroutineID(), 10))
			return
		}
		var buf bytes.Buffer
		_ = pprof.Lookup("goroutine").WriteTo(&buf, 1)
		for _, e := range strings.Split(buf.String(), "\n\n") {
			if strings.Contains(e, "TestGoroutineLabelsEndWithTheirStream") && strings.Contains(e, `"tenant":"a"`) {
				io.WriteString(w, "labelled "+strconv.FormatUint(goroutineID(), 10))
				return
			}
		}
		io.WriteString(w, "clean "+strconv.FormatUint(goroutineID(), 10))
	}))
	rt := clients(t)["h2client"]
	req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/label", nil)
	_, worker := do(t, rt, req)
	if got := get(t, rt, addr); got != "clean "+worker {
		t.Errorf("the next stream on worker %s: %q, want it clean on the same worker", worker, got)
	}
}
