package tapstream

import (
	"fmt"
	"io"
	"math"
	"sort"
	"strings"
	"text/tabwriter"
)

// Key groups requests in `meshctl top`.
type Key struct {
	Source      string `json:"source"`
	Destination string `json:"destination"`
	Method      string `json:"method"`
	Path        string `json:"path"`
}

// Row is one line of `meshctl top`.
type Row struct {
	Key
	// Count is the requests seen; Estimated scales it up by what the proxies
	// dropped (equal to Count unless Sampled).
	Count     int     `json:"count"`
	Estimated float64 `json:"estimated"`
	Sampled   bool    `json:"sampled"`
	Successes int     `json:"successes"`
	BestMs    float64 `json:"best_ms"`
	WorstMs   float64 `json:"worst_ms"`
	LastMs    float64 `json:"last_ms"`
}

// SuccessRate is 0..1.
func (r Row) SuccessRate() float64 {
	if r.Count == 0 {
		return math.NaN()
	}
	return float64(r.Successes) / float64(r.Count)
}

type reqID struct {
	ns, pod string
	id      uint64
}

// Top aggregates tap events into rows. Its zero value is not usable: use NewTop.
type Top struct {
	// Direction is the side counted: "inbound" (what the pods served) or
	// "outbound" (what they sent).
	Direction string
	started   map[reqID]Key
	rows      map[Key]*Row
	ended     map[string]int    // per pod
	dropped   map[string]uint64 // per pod
	podRows   map[string]map[Key]bool
}

// NewTop counts one direction.
func NewTop(direction string) *Top {
	return &Top{Direction: direction, started: map[reqID]Key{}, rows: map[Key]*Row{},
		ended: map[string]int{}, dropped: map[string]uint64{}, podRows: map[string]map[Key]bool{}}
}

// Add takes one event.
func (t *Top) Add(e PodEvent) {
	pod := e.Namespace + "/" + e.Pod
	id := reqID{e.Namespace, e.Pod, e.ID}
	switch e.Type {
	case "dropped":
		t.dropped[pod] += e.Count
	case "start":
		if e.Direction != t.Direction {
			return
		}
		k := Key{Method: e.Method, Path: e.Path}
		if e.Direction == "inbound" {
			k.Source, k.Destination = identityName(e.ClientID), e.Workload
		} else {
			k.Source, k.Destination = e.Workload, e.Authority
		}
		t.started[id] = k
	case "end":
		k, ok := t.started[id]
		if !ok {
			return
		}
		delete(t.started, id)
		r := t.rows[k]
		if r == nil {
			r = &Row{Key: k, BestMs: math.Inf(1)}
			t.rows[k] = r
		}
		r.Count++
		if e.Status > 0 && e.Status < 500 && (e.GRPCStatus == "" || e.GRPCStatus == "0") {
			r.Successes++
		}
		r.BestMs = math.Min(r.BestMs, e.LatencyMs)
		r.WorstMs = math.Max(r.WorstMs, e.LatencyMs)
		r.LastMs = e.LatencyMs
		t.ended[pod]++
		if t.podRows[pod] == nil {
			t.podRows[pod] = map[Key]bool{}
		}
		t.podRows[pod][k] = true
	}
}

// identityName shortens a SPIFFE ID to ns/sa; "-" for an unmeshed client.
func identityName(id string) string {
	if _, rest, ok := strings.Cut(id, "/ns/"); ok {
		ns, sa, _ := strings.Cut(rest, "/sa/")
		return ns + "/" + sa
	}
	if id == "" {
		return "-"
	}
	return id
}

// Rows returns the rows, sorted by count (or "best", "worst", "success",
// "path"), the largest first.
func (t *Top) Rows(sortBy string) []Row {
	// A pod that dropped requests scales its rows by (seen + dropped) / seen.
	scale := map[Key]float64{}
	sampled := map[Key]bool{}
	for pod, keys := range t.podRows {
		d := t.dropped[pod]
		if d == 0 {
			continue
		}
		f := float64(t.ended[pod]+int(d)) / float64(t.ended[pod])
		for k := range keys {
			scale[k] = math.Max(scale[k], f)
			sampled[k] = true
		}
	}
	out := make([]Row, 0, len(t.rows))
	for k, r := range t.rows {
		row := *r
		row.Estimated = float64(row.Count)
		if sampled[k] {
			row.Sampled, row.Estimated = true, math.Round(float64(row.Count)*scale[k])
		}
		out = append(out, row)
	}
	less := map[string]func(a, b Row) bool{
		"count":   func(a, b Row) bool { return a.Estimated > b.Estimated },
		"best":    func(a, b Row) bool { return a.BestMs < b.BestMs },
		"worst":   func(a, b Row) bool { return a.WorstMs > b.WorstMs },
		"success": func(a, b Row) bool { return a.SuccessRate() < b.SuccessRate() },
		"path":    func(a, b Row) bool { return a.Path < b.Path },
	}[sortBy]
	if less == nil {
		less = func(a, b Row) bool { return a.Estimated > b.Estimated }
	}
	sort.SliceStable(out, func(i, j int) bool {
		if less(out[i], out[j]) != less(out[j], out[i]) {
			return less(out[i], out[j])
		}
		return fmt.Sprint(out[i].Key) < fmt.Sprint(out[j].Key)
	})
	return out
}

// SortKeys are what Rows sorts by: the first is the default.
var SortKeys = []string{"count", "best", "worst", "success", "path"}

// WriteTable prints the rows as `meshctl top` does, their fields made
// Printable: they come from the clients' requests.
func WriteTable(w io.Writer, rows []Row) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SOURCE\tDESTINATION\tMETHOD\tPATH\tCOUNT\tBEST\tWORST\tLAST\tSUCCESS")
	for _, r := range rows {
		count := fmt.Sprint(r.Count)
		if r.Sampled {
			count = fmt.Sprintf("~%.0f (sampled)", r.Estimated)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%.2f%%\n",
			Printable(r.Source), Printable(r.Destination), Printable(r.Method), Printable(r.Path), count,
			ms(r.BestMs), ms(r.WorstMs), ms(r.LastMs), 100*r.SuccessRate())
	}
	return tw.Flush()
}

func ms(v float64) string {
	if math.IsInf(v, 0) || math.IsNaN(v) {
		return "-"
	}
	return fmt.Sprintf("%.1fms", v)
}

// WriteJSON prints the rows for scripts, indented, with every control
// character escaped.
func WriteJSON(w io.Writer, rows []Row) error { return writeJSON(w, rows, true) }
