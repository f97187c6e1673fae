package metrics

import (
	"bytes"
	"io"
	"slices"
	"strings"
)

// The metric families, their label names and their help (what /metrics says
// of each in its HELP line).
const (
	familyPlaintext      = "plaintext_connections_total"
	familyEvicted        = "metrics_series_evicted_total"
	familyRequests       = "request_total"
	familyResponses      = "response_total"
	familyLatency        = "response_latency_ms"
	familyTCPOpen        = "tcp_open_total"
	familyTCPClose       = "tcp_close_total"
	familyTCPOpenNow     = "tcp_open_connections"
	familyTCPRead        = "tcp_read_bytes_total"
	familyTCPWrite       = "tcp_write_bytes_total"
	familyProtocolErrors = "protocol_error_total"
	familyTLSErrors      = "tls_error_total"
	familyRetries        = "retry_total"
	familyExhausted      = "retry_budget_exhausted_total"
	familyTimeouts       = "request_timeout_total"
	familyUnavailable    = "balancer_unavailable_total"
	familyMirrors        = "mirror_requests_total"
	familyDecisions      = "inbound_policy_decisions_total"
	familyCertExpiry     = "identity_cert_expiration_timestamp_seconds"
	familyEjected        = "balancer_ejected_endpoints"
)

// labelNames are the label names of each family, in the order its values
// are given.
var labelNames = map[string][]string{
	familyPlaintext:      {"direction", "reason"},
	familyRequests:       {"direction", "tls", "client_id", "server_id", "dst_workload", "authority"},
	familyResponses:      {"direction", "tls", "client_id", "server_id", "dst_workload", "authority", "status_code", "classification"},
	familyLatency:        {"direction", "tls", "client_id", "server_id", "dst_workload", "authority", "status_code", "classification"},
	familyTCPOpen:        {"direction", "tls", "client_id", "server_id", "dst_workload"},
	familyTCPClose:       {"direction", "tls", "client_id", "server_id", "dst_workload"},
	familyTCPOpenNow:     {"direction", "tls", "client_id", "server_id", "dst_workload"},
	familyTCPRead:        {"direction", "tls", "client_id", "server_id", "dst_workload"},
	familyTCPWrite:       {"direction", "tls", "client_id", "server_id", "dst_workload"},
	familyProtocolErrors: {"direction", "protocol", "error"},
	familyTLSErrors:      {"direction", "reason"},
	familyRetries:        {"destination"},
	familyExhausted:      {"destination"},
	familyTimeouts:       {"destination", "kind"},
	familyUnavailable:    {"destination", "reason"},
	familyMirrors:        {"destination", "result"},
	familyDecisions:      {"decision", "rule"},
	familyEjected:        {"destination"},
}

var help = map[string]string{
	familyPlaintext:      "Plaintext connections the proxy made to addresses in the cluster's networks, by reason: no_identity (discovery says the endpoint has no proxy), not_in_mesh (discovery says it is no pod or Service of the mesh, or an explicit upstream without an identity).",
	familyEvicted:        "Request metric label sets dropped to stay under the proxy's series cap (the one idle longest goes first).",
	FamilyWindow:         "Seconds the request metrics of this exposition cover (with /metrics?window=: the last minute at most, from snapshots every 15 s).",
	familyRequests:       "HTTP requests received, by destination (authority: the Service name.namespace:port discovery gave, else the address the connection was for).",
	familyResponses:      "HTTP responses completed, by status and classification (failure: 5xx, a non-zero grpc-status, or a broken stream).",
	familyLatency:        "Time from a request's arrival to its response headers, in milliseconds.",
	familyTCPOpen:        "Connections accepted.",
	familyTCPClose:       "Connections closed.",
	familyTCPOpenNow:     "Connections open now.",
	familyTCPRead:        "Bytes received from clients.",
	familyTCPWrite:       "Bytes sent to clients.",
	familyProtocolErrors: "Malformed or abusive client input rejected, by protocol and error.",
	familyTLSErrors:      "Meshed connections that failed: handshakes (identity_mismatch, untrusted, expired, no_certificate, alpn, handshake, handshake_timeout) and plaintext refused on ports that require mutual TLS (plaintext_refused).",
	familyRetries:        "Requests sent again after a failed try, by destination (a Service and port).",
	familyExhausted:      "Retries the destination's policy asked for and its retry budget refused.",
	familyTimeouts:       "Requests (kind=request, answered 504 or DEADLINE_EXCEEDED) and tries (kind=try) that ran out of time.",
	familyUnavailable:    "Requests answered 503 because no endpoint could take them in time (reason: no_endpoints, all_failing, queue_full), or 500 because their route has no backend with a weight (reason: no_backends).",
	familyMirrors:        "Copies of requests for a route's mirrors, by mirror Service and result: sent (answered below 500), failed (no endpoint, an error, a timeout or a 5xx), dropped (not sent: too many in flight, or a request body).",
	familyDecisions:      "Inbound requests and connections let in (allow), refused with 403 or a closed connection (deny) or 429 (rate_limited), by the rule that decided: an AuthorizationPolicy, default:<policy>, probe, rate-limit, rate-limit-per-client.",
	familyCertExpiry:     "When the proxy's workload certificate expires (Unix time).",
	familyEjected:        "Endpoints out of balancing for failing (failure accrual or failed connections), by destination.",
}

// labelOrder lists, for each family, the indexes of its label names in
// alphabetical order: series are written with their labels sorted, as the
// Prometheus client writes them (one text per series, whatever the order
// its values were given in).
var labelOrder = func() map[string][]int {
	order := map[string][]int{}
	for family, names := range labelNames {
		idx := make([]int, len(names))
		for i := range idx {
			idx[i] = i
		}
		slices.SortFunc(idx, func(a, b int) int { return strings.Compare(names[a], names[b]) })
		order[family] = idx
	}
	return order
}()

// seriesName is the name of family's series with these label values (given
// in labelNames' order): family{name="value",...}.
func seriesName(family string, values []string) string {
	return family + labelSet(family, values)
}

// labelSet is the label set of family's series with these label values
// (given in labelNames' order): {name="value",...}, the labels sorted by
// name, the values made valid UTF-8 (one invalid byte would make the whole
// exposition unreadable) and escaped as the text format wants.
func labelSet(family string, values []string) string {
	names := labelNames[family]
	if len(names) != len(values) {
		panic("metrics: " + family + " takes " + strings.Join(names, ", "))
	}
	var b strings.Builder
	b.Grow(2 + 24*len(values))
	b.WriteByte('{')
	for n, i := range labelOrder[family] {
		if n > 0 {
			b.WriteByte(',')
		}
		b.WriteString(names[i])
		b.WriteString(`="`)
		labelEscaper.WriteString(&b, strings.ToValidUTF8(values[i], "\uFFFD"))
		b.WriteByte('"')
	}
	b.WriteByte('}')
	return b.String()
}

// labelEscaper escapes a label value for the text format.
var labelEscaper = strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)

// helpWriter passes the text exposition on to w, adding each family's help
// to the HELP lines the library leaves empty. It expects whole lines, but
// keeps a line cut between two writes for the next.
type helpWriter struct {
	w       io.Writer
	partial []byte
	joined  []byte // partial and the next write, reused
	err     error
}

func (h *helpWriter) Write(p []byte) (int, error) {
	n := len(p)
	if len(h.partial) > 0 {
		h.joined = append(append(h.joined[:0], h.partial...), p...)
		p, h.partial = h.joined, h.partial[:0]
	}
	run := 0 // the start of the bytes not written yet
	for i := 0; i < len(p); {
		j := bytes.IndexByte(p[i:], '\n')
		if j < 0 {
			h.partial = append(h.partial[:0], p[i:]...)
			p = p[:i]
			break
		}
		end := i + j
		if family, ok := bytes.CutPrefix(p[i:end], []byte("# HELP ")); ok {
			if text := help[string(family)]; text != "" {
				h.write(p[run:end])
				h.write([]byte(" " + text))
				run = end // its newline goes with what follows
			}
		}
		i = end + 1
	}
	h.write(p[run:])
	if h.err != nil {
		return 0, h.err
	}
	return n, nil
}

func (h *helpWriter) write(b []byte) {
	if h.err == nil && len(b) > 0 {
		_, h.err = h.w.Write(b)
	}
}

// flush writes what is left of a last line without its newline.
func (h *helpWriter) flush() {
	h.write(h.partial)
	h.partial = nil
}
