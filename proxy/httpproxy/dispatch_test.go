package httpproxy

import (
	"errors"
	"net/http"
	"testing"

	"github.com/meshctl/meshctl/proxy/retry"
)

func TestRetryableOutcomes(t *testing.T) {
	codes, _ := retry.ParseHTTP("gateway-error")
	grpcCodes, _ := retry.ParseGRPC("unavailable")
	pol := retry.Policy{HTTP: codes, GRPC: grpcCodes}
	res := func(status int, grpcStatus string) *http.Response {
		h := http.Header{}
		if grpcStatus != "" {
			h.Set("Grpc-Status", grpcStatus)
		}
		return &http.Response{StatusCode: status, Header: h}
	}
	for _, tc := range []struct {
		name                   string
		grpc                   bool
		res                    *http.Response
		err                    error
		connectFailed, timeout bool
		want                   bool
	}{
		{name: "503", res: res(503, ""), want: true},
		{name: "500 not in gateway-error", res: res(500, "")},
		{name: "200", res: res(200, "")},
		{name: "connection refused", err: errors.New("refused"), connectFailed: true, want: true},
		{name: "per-try timeout", err: errors.New("deadline"), timeout: true, want: true},
		{name: "broken mid-request", err: errors.New("reset"), want: true},
		{name: "gRPC unavailable, trailers-only", grpc: true, res: res(200, "14"), want: true},
		{name: "gRPC internal", grpc: true, res: res(200, "13")},
		{name: "gRPC ok", grpc: true, res: res(200, "0")},
		{name: "grpc-status on a plain HTTP answer", res: res(200, "14")},
	} {
		if got := retryable(pol, tc.grpc, tc.res, tc.err, tc.connectFailed, tc.timeout); got != tc.want {
			t.Errorf("%s: retryable = %v", tc.name, got)
		}
	}
	if retryable(retry.Policy{GRPC: grpcCodes}, false, nil, errors.New("reset"), false, false) != true {
		t.Error("a broken connection is not retried under gRPC unavailable")
	}
}
