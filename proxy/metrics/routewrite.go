package metrics

import (
	"bufio"
	"cmp"
	"io"
	"math"
	"slices"
	"strconv"
)

// liveRoutes are the routes in the table now.
func (m *Metrics) liveRoutes() []*Route {
	t := &m.routes
	t.mu.Lock()
	defer t.mu.Unlock()
	routes := make([]*Route, 0, len(t.byKey))
	for _, r := range t.byKey {
		routes = append(routes, r)
	}
	return routes
}

// writeRoutes writes the request metrics of every live route: request_total,
// response_total and the response_latency_ms histogram; with a base (one
// of the windows' slots), what was counted since it. A route evicted while
// it is written may appear one last time.
func (m *Metrics) writeRoutes(w io.Writer, base *windowBase) {
	routes := m.liveRoutes()
	if len(routes) == 0 {
		return
	}
	slot := -1
	if base != nil {
		slot = base.slot
	}
	slices.SortFunc(routes, func(a, b *Route) int { return cmp.Compare(a.series, b.series) })
	var stats []*responseStats
	for _, r := range routes {
		r.mu.Lock()
		for _, s := range r.responses {
			stats = append(stats, s)
		}
		r.mu.Unlock()
	}
	slices.SortFunc(stats, func(a, b *responseStats) int { return cmp.Compare(a.series, b.series) })

	bw := bufio.NewWriterSize(w, 32<<10)
	var num []byte
	writeHead(bw, familyRequests, "counter")
	for _, r := range routes {
		v := r.requests.Load()
		if slot >= 0 {
			v = since(v, r.past[slot].Load())
		}
		num = writeSample(bw, num, familyRequests, r.series, v)
	}
	if len(stats) > 0 {
		writeHead(bw, familyLatency, "histogram")
		counts := make([]uint64, len(stats))
		for j, s := range stats {
			count, sum := s.count.Load(), s.sum()
			var past *snapshot
			if slot >= 0 {
				past = &s.past[slot]
				count, sum = since(count, past.count.Load()), sum-math.Float64frombits(past.sumBits.Load())
			}
			counts[j] = count
			var cumulative uint64
			for i := range latencyBounds {
				b := s.buckets[i].Load()
				if past != nil {
					b = since(b, past.buckets[i].Load())
				}
				cumulative += b
				num = writeBucket(bw, num, s.series, latencyLe[i], min(cumulative, count))
			}
			num = writeBucket(bw, num, s.series, "+Inf", count)
			bw.WriteString(familyLatency + "_sum" + s.series + " ")
			bw.Write(strconv.AppendFloat(num[:0], max(sum, 0), 'g', -1, 64))
			bw.WriteByte('\n')
			num = writeSample(bw, num, familyLatency+"_count", s.series, count)
		}
		writeHead(bw, familyResponses, "counter")
		for j, s := range stats {
			num = writeSample(bw, num, familyResponses, s.series, counts[j])
		}
	}
	_ = bw.Flush()
}

// since is what a counter now at v counted after a snapshot of it (kept in
// 32 bits: the difference is taken modulo 2³²).
func since(v uint64, past uint32) uint64 { return uint64(uint32(v) - past) }

// latencyLe are the latency buckets' bounds as their le labels say them.
var latencyLe = func() (le [len(latencyBounds)]string) {
	for i, b := range latencyBounds {
		le[i] = strconv.FormatFloat(b, 'g', -1, 64)
	}
	return le
}()

// writeHead writes a family's HELP and TYPE lines.
func writeHead(w *bufio.Writer, family, typ string) {
	w.WriteString("# HELP " + family + " " + help[family] + "\n# TYPE " + family + " " + typ + "\n")
}

// writeSample writes one sample: name, its label set, a value.
func writeSample(w *bufio.Writer, num []byte, name, series string, v uint64) []byte {
	w.WriteString(name)
	w.WriteString(series)
	w.WriteByte(' ')
	num = strconv.AppendUint(num[:0], v, 10)
	w.Write(num)
	w.WriteByte('\n')
	return num
}

// writeBucket writes one histogram bucket: series with le="bound" added.
func writeBucket(w *bufio.Writer, num []byte, series, le string, v uint64) []byte {
	w.WriteString(familyLatency + "_bucket")
	w.WriteString(series[:len(series)-1])
	w.WriteString(`,le="`)
	w.WriteString(le)
	w.WriteString(`"} `)
	num = strconv.AppendUint(num[:0], v, 10)
	w.Write(num)
	w.WriteByte('\n')
	return num
}
