package retry

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Policy is what a Service allows to be retried. The zero value retries
// nothing.
type Policy struct {
	// HTTP are the response statuses to retry (502, 500-504, ...).
	HTTP []StatusRange
	// GRPC is the set of gRPC status codes to retry, as a bit mask (bit n:
	// code n).
	GRPC uint32
	// Limit is the most retries of one request. Default: 1 when retries are on.
	Limit int
	// PerTryTimeout bounds each try until its response headers; 0: none.
	PerTryTimeout time.Duration
	// NonIdempotent allows retrying requests whose method is not idempotent
	// (POST, PATCH, CONNECT). gRPC calls (POST) are retried on gRPC
	// conditions regardless: asking for them is asking for this. A route's
	// retry (GEP-1731, which has no method rule) always sets it.
	NonIdempotent bool
	// Budget caps the retries of the destination.
	Budget BudgetConfig
}

// Enabled reports whether anything is retried.
func (p Policy) Enabled() bool { return len(p.HTTP) > 0 || p.GRPC != 0 }

// Status reports whether a response status is to be retried.
func (p Policy) Status(status int) bool {
	for _, r := range p.HTTP {
		if status >= r.From && status <= r.To {
			return true
		}
	}
	return false
}

// GRPCCode reports whether a gRPC status code is to be retried.
func (p Policy) GRPCCode(code int) bool { return code > 0 && code < 32 && p.GRPC&(1<<code) != 0 }

// Method reports whether requests with this method may be retried.
func (p Policy) Method(method string) bool {
	switch method {
	case "GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE":
		return true
	}
	return p.NonIdempotent
}

// StatusRange is an inclusive range of HTTP statuses.
type StatusRange struct{ From, To int }

// ParseHTTP reads a comma-separated list of statuses to retry: "5xx" (500–599),
// "gateway-error" (502–504), a status ("503") or a range ("500-504").
func ParseHTTP(s string) ([]StatusRange, error) {
	var out []StatusRange
	for part := range strings.SplitSeq(s, ",") {
		part = strings.ToLower(strings.TrimSpace(part))
		switch {
		case part == "":
			continue
		case part == "5xx":
			out = append(out, StatusRange{500, 599})
		case part == "gateway-error":
			out = append(out, StatusRange{502, 504})
		default:
			from, to, isRange := strings.Cut(part, "-")
			a, err := parseStatus(from)
			if err != nil {
				return nil, err
			}
			b := a
			if isRange {
				if b, err = parseStatus(to); err != nil {
					return nil, err
				}
				if b < a {
					return nil, fmt.Errorf("status range %q runs backwards", part)
				}
			}
			out = append(out, StatusRange{a, b})
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no status in %q", s)
	}
	return out, nil
}

func parseStatus(s string) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n < 100 || n > 599 {
		return 0, fmt.Errorf("%q is not an HTTP status (100-599, 5xx or gateway-error)", s)
	}
	return n, nil
}

// grpcCodes are the status names of gRPC, by code.
var grpcCodes = []string{"ok", "cancelled", "unknown", "invalid-argument", "deadline-exceeded", "not-found",
	"already-exists", "permission-denied", "resource-exhausted", "failed-precondition", "aborted",
	"out-of-range", "unimplemented", "internal", "unavailable", "data-loss", "unauthenticated"}

// ParseGRPC reads a comma-separated list of gRPC status names to retry
// ("unavailable", "deadline-exceeded", "RESOURCE_EXHAUSTED", ...) into a mask.
func ParseGRPC(s string) (uint32, error) {
	var mask uint32
	for part := range strings.SplitSeq(s, ",") {
		name := strings.ReplaceAll(strings.ToLower(strings.TrimSpace(part)), "_", "-")
		if name == "" {
			continue
		}
		code := -1
		for i, n := range grpcCodes {
			if n == name || (name == "canceled" && i == 1) {
				code = i
			}
		}
		if code <= 0 {
			return 0, fmt.Errorf("%q is not a gRPC status to retry (e.g. unavailable, internal, resource-exhausted)", part)
		}
		mask |= 1 << code
	}
	if mask == 0 {
		return 0, fmt.Errorf("no gRPC status in %q", s)
	}
	return mask, nil
}
