package adminapi

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshctl/meshctl/internal/meshnames"
	"github.com/meshctl/meshctl/internal/spiffeid"
	"github.com/meshctl/meshctl/proxy/meshtls"
)

// relay reaches proxies' admin ports over mutual TLS.
type relay struct {
	dialer      *meshtls.Dialer
	port        int
	trustDomain string
}

// proxyID is the SPIFFE ID a pod's proxy must prove: its ServiceAccount's.
func (rl relay) proxyID(pod *corev1.Pod) (spiffeid.ID, error) {
	sa := pod.Spec.ServiceAccountName
	if sa == "" {
		sa = "default"
	}
	return spiffeid.New(rl.trustDomain, pod.Namespace, sa)
}

// errRelay is a failure to get an answer from the proxy.
type errRelay struct {
	code int // the status to answer with
	msg  string
}

func (e *errRelay) Error() string { return e.msg }

// serve asks pod's proxy for t and copies its answer to w as it comes,
// flushing after every read, until the proxy ends it or the client goes
// (r's context). Errors before anything was written are *errRelay.
func (rl relay) serve(w http.ResponseWriter, r *http.Request, pod *corev1.Pod, t target) error {
	want, err := rl.proxyID(pod)
	if err != nil {
		return &errRelay{http.StatusInternalServerError, fmt.Sprintf("pod %s/%s: %v", pod.Namespace, pod.Name, err)}
	}
	addr := net.JoinHostPort(pod.Status.PodIP, strconv.Itoa(rl.port))
	tr := &http.Transport{
		DialTLSContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
			return rl.dialer.Dial(ctx, addr, want, meshtls.ALPNAdmin)
		},
		DisableKeepAlives:      true, // a pod's IP may belong to another pod tomorrow
		ResponseHeaderTimeout:  15 * time.Second,
		MaxResponseHeaderBytes: 64 << 10,
	}
	defer tr.CloseIdleConnections()
	u := "https://" + addr + "/" + t.sub.name
	if t.sub.name == meshnames.AdminTap && r.URL.RawQuery != "" {
		u += "?" + r.URL.RawQuery
	}
	req, err := http.NewRequestWithContext(r.Context(), t.sub.method, u, nil)
	if err != nil {
		return &errRelay{http.StatusBadRequest, err.Error()}
	}
	resp, err := tr.RoundTrip(req)
	if err != nil {
		var me *meshtls.Error
		if errors.As(err, &me) && me.Reason == "identity_mismatch" {
			return &errRelay{http.StatusBadGateway, fmt.Sprintf("the proxy at %s is not pod %s/%s's: %v", addr, pod.Namespace, pod.Name, err)}
		}
		return &errRelay{http.StatusBadGateway, fmt.Sprintf("the proxy of pod %s/%s at %s did not answer: %v", pod.Namespace, pod.Name, addr, err)}
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		line, _ := bufio.NewReader(io.LimitReader(resp.Body, 1024)).ReadString('\n')
		code := resp.StatusCode
		if code == http.StatusUnauthorized || code == http.StatusForbidden {
			// The proxy refused the controller itself: not the user's doing.
			code = http.StatusBadGateway
		}
		return &errRelay{code, fmt.Sprintf("%s%s/%s answered %s: %s", meshnames.AdminProxyAnswered, pod.Namespace, pod.Name, resp.Status, trimNewline(line))}
	}
	if ct := resp.Header.Get("Content-Type"); ct != "" {
		w.Header().Set("Content-Type", ct)
	}
	w.WriteHeader(resp.StatusCode)
	rc := http.NewResponseController(w)
	_ = rc.Flush()
	buf := make([]byte, 32<<10)
	for {
		n, err := resp.Body.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return nil // the client went away
			}
			if ferr := rc.Flush(); ferr != nil {
				return nil
			}
		}
		if err != nil {
			return nil // the proxy ended the stream, or the client's context did
		}
	}
}

func trimNewline(s string) string {
	for len(s) > 0 && (s[len(s)-1] == '\n' || s[len(s)-1] == '\r') {
		s = s[:len(s)-1]
	}
	return s
}

// status writes a Kubernetes Status, as the API server's own errors are, so
// clients (client-go, kubectl) show its message.
func status(w http.ResponseWriter, code int, reason metav1.StatusReason, msg string, details *metav1.StatusDetails) {
	writeJSON(w, code, metav1.Status{
		TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"},
		Status:   metav1.StatusFailure, Code: int32(code), Reason: reason, Message: msg, Details: details,
	})
}
