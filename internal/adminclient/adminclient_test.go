package adminclient

import (
	"net/http"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshctl/meshctl/internal/meshnames"
)

func statusError(code int, reason metav1.StatusReason, msg string, details *metav1.StatusDetails) error {
	return &apierrors.StatusError{ErrStatus: metav1.Status{Status: metav1.StatusFailure, Code: int32(code), Reason: reason, Message: msg, Details: details}}
}

// TestExplainSaysWhatToDo: each failure of an admin API request is
// explained by who failed it — the user's RBAC, the aggregator, the pod, or
// the proxy itself (relayed: its own words, and for a 404 that the proxy
// predates the subresource).
func TestExplainSaysWhatToDo(t *testing.T) {
	pod := &metav1.StatusDetails{Group: meshnames.AdminGroup, Kind: meshnames.AdminResource, Name: "web-1"}
	for _, tc := range []struct {
		name string
		err  error
		sub  string
		want []string
	}{
		{"forbidden", statusError(403, metav1.StatusReasonForbidden, "no", pod), meshnames.AdminPolicy, []string{meshnames.AdminViewerClusterRole, "get pods/policy"}},
		{"renew forbidden", statusError(403, metav1.StatusReasonForbidden, "no", pod), meshnames.AdminRenew, []string{meshnames.AdminOperatorClusterRole, "create pods/renew"}},
		{"the pod is gone", statusError(404, metav1.StatusReasonNotFound, "pod demo/web-1 not found", pod), meshnames.AdminTap, []string{"the pod is gone"}},
		{"no APIService", statusError(404, metav1.StatusReasonNotFound, "the server could not find the requested resource", nil), meshnames.AdminTap, []string{"is meshctl installed", "meshctl check"}},
		{"aggregator down", statusError(503, metav1.StatusReasonServiceUnavailable, "service unavailable", nil), meshnames.AdminTap, []string{"is not available", "meshctl check"}},
		{"the proxy waits for its policy", statusError(http.StatusServiceUnavailable, metav1.StatusReasonServiceUnavailable,
			meshnames.AdminProxyAnswered+"demo/web-1 answered 503 Service Unavailable: the proxy has not received its pod's inbound policy from the controller yet", pod),
			meshnames.AdminPolicy, []string{"has not received its pod's inbound policy"}},
		{"an older proxy", statusError(http.StatusNotFound, metav1.StatusReasonNotFound,
			meshnames.AdminProxyAnswered+"demo/web-1 answered 404 Not Found: 404 page not found", pod),
			meshnames.AdminPolicy, []string{"older than this meshctl", "restart the pod"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Explain(tc.err, tc.sub).Error()
			for _, w := range tc.want {
				if !strings.Contains(got, w) {
					t.Errorf("Explain: %q, want it to say %q", got, w)
				}
			}
			if strings.HasPrefix(tc.name, "the proxy") && strings.Contains(got, "APIService") {
				t.Errorf("Explain blames the APIService for the proxy's own answer: %q", got)
			}
		})
	}
}

// TestStatusOfKeepsWhatTheRefusalSaid: a raw request's error becomes the
// API server's Status when the body is one, and stays as it was otherwise.
func TestStatusOfKeepsWhatTheRefusalSaid(t *testing.T) {
	raw := []byte(`{"kind":"Status","apiVersion":"v1","status":"Failure","message":"services \"x\" is forbidden: User \"alice\" cannot get resource \"services/proxy\"","reason":"Forbidden","code":403}`)
	opaque := &apierrors.StatusError{ErrStatus: metav1.Status{Code: 403, Message: "unknown"}}
	err := StatusOf(raw, opaque)
	if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), `User "alice" cannot get resource`) {
		t.Errorf("StatusOf(a Status body) = %v", err)
	}
	if got := StatusOf([]byte("forbidden, says the app"), opaque); got != opaque {
		t.Errorf("StatusOf(a plain body) = %v, want the error as it was", got)
	}
	if StatusOf(raw, nil) != nil {
		t.Error("StatusOf(no error) is an error")
	}
}
