package adminclient

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	"github.com/meshctl/meshctl/internal/meshnames"
)

// Request is a request for a pod's subresource through the API server, with
// the caller's credentials: c is any REST client of that API server (e.g.
// kubernetes.Interface's CoreV1().RESTClient()). A tap is a stream (Stream);
// the others answer at once (Do).
func Request(c rest.Interface, namespace, pod, sub string) *rest.Request {
	return c.Verb(Method(sub)).AbsPath(Path(namespace, pod, sub))
}

// Method is the HTTP method a subresource takes: POST to renew, GET for
// the others.
func Method(sub string) string {
	if sub == meshnames.AdminRenew {
		return http.MethodPost
	}
	return http.MethodGet
}

// Path is the API server path of a pod's subresource. A tap goes through
// the watch path: the API server counts watches as long-running and never
// cuts them off at its request timeout (a minute by default).
func Path(namespace, pod, sub string) string {
	watch := ""
	if sub == meshnames.AdminTap {
		watch = "watch/"
	}
	return fmt.Sprintf("/apis/%s/%snamespaces/%s/pods/%s/%s", meshnames.AdminGroupVersion, watch, namespace, pod, sub)
}

// Do sends a request that answers at once (anything but a tap) and returns
// the answer; an error carries the server's Status, its message included
// (DoRaw would drop it).
func Do(ctx context.Context, c rest.Interface, namespace, pod, sub string) ([]byte, error) {
	res := Request(c, namespace, pod, sub).Do(ctx)
	if err := res.Error(); err != nil {
		return nil, err
	}
	return res.Raw()
}

// Explain says what to do about a failed Request for sub: which ClusterRole
// grants it, or that the API is unavailable.
func Explain(err error, sub string) error {
	if err == nil {
		return nil
	}
	var st apierrors.APIStatus
	code := 0
	if errors.As(err, &st) {
		code = int(st.Status().Code)
	}
	if st != nil && strings.HasPrefix(st.Status().Message, meshnames.AdminProxyAnswered) {
		// The proxy's own answer, relayed: it says why.
		if code == http.StatusNotFound {
			return fmt.Errorf("%s: a proxy older than this meshctl serves no %s; restart the pod for this version's proxy", st.Status().Message, sub)
		}
		return errors.New(st.Status().Message)
	}
	role, verb := meshnames.AdminViewerClusterRole, meshnames.VerbGet
	switch sub {
	case meshnames.AdminRenew:
		role, verb = meshnames.AdminOperatorClusterRole, meshnames.VerbCreate
	case meshnames.AdminTap:
		verb = meshnames.VerbWatch
	}
	switch {
	case apierrors.IsForbidden(err):
		return fmt.Errorf("you may not %s pods/%s in API group %s there; a cluster admin can grant it with the ClusterRole %s "+
			"(kubectl create rolebinding NAME -n NAMESPACE --clusterrole=%s --user=YOU): %w", verb, sub, meshnames.AdminGroup, role, role, err)
	case apierrors.IsNotFound(err):
		if d := st.Status().Details; d != nil && d.Group == meshnames.AdminGroup && d.Kind == meshnames.AdminResource && d.Name != "" {
			return fmt.Errorf("the pod is gone: %w", err)
		}
		return fmt.Errorf("the API server does not serve %s (APIService %s): is meshctl installed? run 'meshctl check': %w", meshnames.AdminGroupVersion, meshnames.AdminAPIServiceName, err)
	case code == http.StatusServiceUnavailable || apierrors.IsServiceUnavailable(err):
		return fmt.Errorf("the admin API (APIService %s) is not available: run 'meshctl check': %w", meshnames.AdminAPIServiceName, err)
	case apierrors.IsUnauthorized(err):
		return fmt.Errorf("unauthorized (if your credentials work elsewhere, the controller does not accept the API server's front proxy: run 'meshctl check'): %w", err)
	case code == http.StatusBadGateway:
		return fmt.Errorf("its proxy did not answer the controller: %w", err)
	case apierrors.IsBadRequest(err):
		return err
	}
	return fmt.Errorf("the admin API: %w", err)
}

// StatusOf is err, the error of a raw request (DoRaw) whose body is raw,
// as the API server's Status when raw is one: a raw request's error keeps
// the Status's message as "unknown", and with it what the refusal said (a
// 403's "User … cannot get …").
func StatusOf(raw []byte, err error) error {
	var st metav1.Status
	if err == nil || json.Unmarshal(raw, &st) != nil || st.Kind != "Status" || st.Code == 0 {
		return err
	}
	return &apierrors.StatusError{ErrStatus: st}
}

// Available reads the APIService's Available condition: whether the API
// server's aggregator reaches the controller's API. why is the condition's
// reason and message when it is not; err is set when the APIService could
// not be read (apierrors.IsNotFound: it does not exist).
func Available(ctx context.Context, api rest.Interface) (ok bool, why string, err error) {
	c := api
	if c == nil {
		return false, "", errors.New("no REST client to read the APIService with")
	}
	raw, err := c.Get().AbsPath("/apis/apiregistration.k8s.io/v1/apiservices/" + meshnames.AdminAPIServiceName).DoRaw(ctx)
	if err != nil {
		return false, "", fmt.Errorf("APIService %s: %w", meshnames.AdminAPIServiceName, StatusOf(raw, err))
	}
	var svc struct {
		Status struct {
			Conditions []struct{ Type, Status, Reason, Message string }
		}
	}
	if err := json.Unmarshal(raw, &svc); err != nil {
		return false, "", fmt.Errorf("APIService %s: %w", meshnames.AdminAPIServiceName, err)
	}
	for _, c := range svc.Status.Conditions {
		if c.Type == "Available" {
			if c.Status == "True" {
				// The aggregator marks it available before the API server
				// routes to it: ask through it, as tap and top will.
				if _, err := api.Get().AbsPath("/apis/" + meshnames.AdminGroupVersion).DoRaw(ctx); err != nil {
					return false, fmt.Sprintf("available, but the API server does not answer for %s yet: %v", meshnames.AdminGroupVersion, err), nil
				}
				return true, "", nil
			}
			return false, fmt.Sprintf("%s: %s", c.Reason, c.Message), nil
		}
	}
	return false, "the aggregator has not checked it yet", nil
}
