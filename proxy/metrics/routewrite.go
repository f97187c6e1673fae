package metrics

import (
	"bufio"
	"cmp"
	"io"
	"math"
	"slices"
	"strconv"
)

// writeRoutes writes the request metrics of every live route: request_total,
// response_total and the response_latency_ms histogram. A route evicted while
// it is written may appear one last time.
func (m *Metrics) writeRoutes(w io.Writer) {
	t := &m.routes
	t.mu.Lock()
	routes := make([]*Route, 0, len(t.byKey))
	for _, r := range t.byKey {
		routes = append(routes, r)
	}
	t.mu.Unlock()
	if len(routes) == 0 {
		return
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
		num = writeSample(bw, num, familyRequests, r.series, r.requests.Load())
	}
	if len(stats) > 0 {
		writeHead(bw, familyLatency, "histogram")
		for _, s := range stats {
			count := s.count.Load()
			var cumulative uint64
			for i := range latencyBounds {
				cumulative += s.buckets[i].Load()
				num = writeBucket(bw, num, s.series, latencyLe[i], min(cumulative, count))
			}
			num = writeBucket(bw, num, s.series, "+Inf", count)
			bw.WriteString(familyLatency + "_sum" + s.series + " ")
			bw.Write(strconv.AppendFloat(num[:0], math.Float64frombits(s.sumBits.Load()), 'g', -1, 64))
			bw.WriteByte('\n')
			num = writeSample(bw, num, familyLatency+"_count", s.series, count)
		}
		writeHead(bw, familyResponses, "counter")
		for _, s := range stats {
			num = writeSample(bw, num, familyResponses, s.series, s.count.Load())
		}
	}
	_ = bw.Flush()
}

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
