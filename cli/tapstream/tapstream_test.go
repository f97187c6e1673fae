package tapstream

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden files")

func lines(events ...string) string { return strings.Join(events, "\n") + "\n" }

func TestFollowMergesPodsAndReportsTheOnesThatFail(t *testing.T) {
	streams := map[string]string{
		"web-1": lines(`{"type":"start","id":1,"direction":"inbound","method":"GET","path":"/a"}`, `{"type":"end","id":1,"status":200,"latency_ms":3}`),
		"web-2": lines(`{"type":"start","id":7,"direction":"inbound","method":"GET","path":"/b"}`, `not json`),
	}
	var gotQuery url.Values
	var qmu sync.Mutex
	open := func(ctx context.Context, p Pod, q url.Values) (io.ReadCloser, error) {
		qmu.Lock()
		gotQuery = q
		qmu.Unlock()
		if p.Name == "gone" {
			return nil, errors.New("pods \"gone\" not found")
		}
		if p.Name == "web-1" {
			// Stays open after its events, as a live stream does, until ctx ends.
			pr, pw := io.Pipe()
			go func() { io.WriteString(pw, streams[p.Name]); <-ctx.Done(); pw.Close() }()
			return pr, nil
		}
		return io.NopCloser(strings.NewReader(streams[p.Name])), nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	events := make(chan PodEvent, 100)
	failures := map[string]string{}
	failed := make(chan struct{}, 3)
	done := make(chan struct{})
	go func() {
		Follow(ctx, []Pod{{"demo", "web-1", "web"}, {"demo", "web-2", "web"}, {"demo", "gone", "web"}}, open,
			Filter{Path: "/", MaxRPS: 50}, events, func(p Pod, err error) { failures[p.Name] = err.Error(); failed <- struct{}{} }, nil)
		close(done)
	}()
	// Stop only once the three events and the two failures arrived: a
	// failure reported after the cancel would be dropped, by design.
	var got []string
	nfailed := 0
	deadline := time.After(5 * time.Second)
	for len(got) < 3 || nfailed < 2 {
		select {
		case e := <-events:
			got = append(got, e.Pod+":"+e.Type)
		case <-failed:
			nfailed++
		case <-deadline:
			t.Fatalf("events so far: %v, %d failures", got, nfailed)
		}
	}
	cancel()
	<-done
	if !strings.Contains(failures["gone"], "not found") || !strings.Contains(failures["web-2"], "bad line") || failures["web-1"] != "" {
		t.Errorf("failures = %v", failures)
	}
	if gotQuery.Get("max_rps") != "50" || gotQuery.Get("path") != "/" {
		t.Errorf("query = %v", gotQuery)
	}
}

func TestTopCountsScalesSampledRowsAndMatchesGolden(t *testing.T) {
	top := NewTop("inbound")
	add := func(pod string, e Event) {
		top.Add(PodEvent{Namespace: "demo", Pod: pod, Workload: "web", Event: e})
	}
	client := "spiffe://cluster.local/ns/demo/sa/load"
	for i := uint64(1); i <= 10; i++ {
		add("web-1", Event{Type: "start", ID: i, Direction: "inbound", Method: "GET", Path: "/a", ClientID: client})
		status := 200
		if i%5 == 0 {
			status = 503
		}
		add("web-1", Event{Type: "end", ID: i, Status: status, LatencyMs: float64(i)})
	}
	for i := uint64(1); i <= 4; i++ {
		add("web-2", Event{Type: "start", ID: i, Direction: "inbound", Method: "POST", Path: "/b"})
		add("web-2", Event{Type: "end", ID: i, Status: 200, LatencyMs: 2})
	}
	add("web-2", Event{Type: "dropped", Count: 4})
	add("web-1", Event{Type: "start", ID: 99, Direction: "outbound", Method: "GET", Path: "/x"}) // the other side: not counted
	add("web-1", Event{Type: "end", ID: 99, Status: 200})
	rows := top.Rows("count")
	if len(rows) != 2 || rows[0].Count != 10 || rows[0].Successes != 8 || rows[1].Estimated != 8 || !rows[1].Sampled {
		t.Fatalf("rows = %+v", rows)
	}
	var b bytes.Buffer
	if err := WriteTable(&b, rows); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join("testdata", "top.golden")
	if *update {
		os.WriteFile(path, b.Bytes(), 0o644)
	}
	want, _ := os.ReadFile(path)
	if !bytes.Equal(b.Bytes(), want) {
		t.Errorf("top table differs from %s (-update to accept):\n%s", path, b.String())
	}
}

// TestKeepDropsARefusedRequestWhole: a request whose start Keep refuses
// shows nothing (neither its headers nor its end); the others show whole;
// the identity filters go to the proxies in the query.
func TestKeepDropsARefusedRequestWhole(t *testing.T) {
	stream := lines(
		`{"type":"start","id":1,"direction":"outbound","authority":"web:80","server_id":"spiffe://td/ns/demo/sa/web"}`,
		`{"type":"start","id":2,"direction":"outbound","authority":"web-v2:80","server_id":"spiffe://td/ns/demo/sa/web-v2"}`,
		`{"type":"headers","id":2,"status":200}`,
		`{"type":"headers","id":1,"status":200}`,
		`{"type":"end","id":2,"status":200}`,
		`{"type":"end","id":1,"status":200}`,
		`{"type":"dropped","count":3}`,
	)
	var q url.Values
	open := func(ctx context.Context, p Pod, query url.Values) (io.ReadCloser, error) {
		q = query
		return io.NopCloser(strings.NewReader(stream)), nil
	}
	events := make(chan PodEvent, 100)
	f := Filter{Direction: "outbound", ServerIDPath: "/ns/demo/sa/web", Keep: func(e Event) bool { return e.ServerID == "spiffe://td/ns/demo/sa/web" }}
	Follow(context.Background(), []Pod{{"demo", "load-1", "load"}}, open, f, events, func(Pod, error) {}, nil)
	close(events)
	var got []string
	for e := range events {
		got = append(got, fmt.Sprintf("%s:%d", e.Type, e.ID))
	}
	if strings.Join(got, " ") != "start:1 headers:1 end:1 dropped:0" {
		t.Errorf("events %v, want request 1 whole and the dropped count", got)
	}
	if q.Get("server_id_path") != "/ns/demo/sa/web" || q.Get("direction") != "outbound" {
		t.Errorf("query %v", q)
	}
}

// TestKeepEndDecidesOnTheProvenIdentity: with KeepEnd, a request is held
// until its end, then shown whole if the identity its end proved is kept
// (the start knows no endpoint yet), and dropped whole otherwise.
func TestKeepEndDecidesOnTheProvenIdentity(t *testing.T) {
	stream := lines(
		`{"type":"start","id":1,"direction":"outbound","authority":"web:80"}`,
		`{"type":"headers","id":1,"status":200}`,
		`{"type":"start","id":2,"direction":"outbound","authority":"web:80"}`,
		`{"type":"end","id":2,"status":200,"server_id":"spiffe://td/ns/demo/sa/web-v2"}`,
		`{"type":"end","id":1,"status":200,"server_id":"spiffe://td/ns/demo/sa/web"}`,
		`{"type":"headers","id":3,"status":200}`,
	)
	open := func(context.Context, Pod, url.Values) (io.ReadCloser, error) {
		return io.NopCloser(strings.NewReader(stream)), nil
	}
	events := make(chan PodEvent, 100)
	f := Filter{KeepEnd: func(_, end Event) bool { return end.ServerID == "spiffe://td/ns/demo/sa/web" }}
	Follow(context.Background(), []Pod{{"demo", "load-1", "load"}}, open, f, events, func(Pod, error) {}, nil)
	close(events)
	var got []string
	for e := range events {
		got = append(got, fmt.Sprintf("%s:%d", e.Type, e.ID))
	}
	if strings.Join(got, " ") != "start:1 headers:1 end:1" {
		t.Errorf("events %v, want request 1 whole, and nothing of request 2 or of 3 (no start)", got)
	}
}
