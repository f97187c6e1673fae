package adminapi

import (
	"fmt"
	"net/http"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
)

// The API's fixed names (../../shared/DESIGN.md).
const (
	// Group and Version name the API.
	Group   = "admin.meshctl.io"
	Version = "v1alpha1"
	// GroupVersion is Group/Version.
	GroupVersion = Group + "/" + Version
	// APIServiceName names the APIService that registers the API.
	APIServiceName = Version + "." + Group
	// Port is where the controller serves the API (TLS, the webhook's
	// certificate), and PortName its name on the Service and the container.
	Port     = 8089
	PortName = "admin-api"
	// Resource is the resource whose subresources the API serves.
	Resource = "pods"
	// ViewerClusterRole may tap pods and read their proxies' identity and
	// destinations; OperatorClusterRole may also renew their certificates.
	ViewerClusterRole   = "meshctl-admin-viewer"
	OperatorClusterRole = "meshctl-admin-operator"
	// DefaultProxyPort is the proxies' admin port (proxy.AdminPort).
	DefaultProxyPort = 4191
)

// The subresources of a pod.
const (
	// Tap is the proxy's live JSON-lines stream of requests (GET; the
	// watch path keeps the API server from timing it out).
	Tap = "tap"
	// Identity is the proxy's certificate (GET, JSON).
	Identity = "identity"
	// Destinations are what the proxy's discovery follows (GET, JSON).
	Destinations = "destinations"
	// Renew asks the proxy for a new certificate now (POST).
	Renew = "renew"
)

// Verbs a subresource is authorized with, as the API server derives them.
const (
	VerbGet    = "get"
	VerbWatch  = "watch"
	VerbCreate = "create"
)

// subresource is what the API serves of one pod subresource.
type subresource struct {
	name   string
	kind   string
	method string   // the HTTP method it takes
	verbs  []string // for discovery
}

var subresources = []subresource{
	{Tap, "Tap", http.MethodGet, []string{VerbGet, VerbWatch}},
	{Identity, "Identity", http.MethodGet, []string{VerbGet}},
	{Destinations, "Destinations", http.MethodGet, []string{VerbGet}},
	{Renew, "Renew", http.MethodPost, []string{VerbCreate}},
}

func lookup(name string) (subresource, bool) {
	for _, s := range subresources {
		if s.name == name {
			return s, true
		}
	}
	return subresource{}, false
}

// Path is the API server path of a pod's subresource. A tap goes through
// the watch path: the API server counts watches as long-running and never
// cuts them off at its request timeout (a minute by default).
func Path(namespace, pod, sub string) string {
	watch := ""
	if sub == Tap {
		watch = "watch/"
	}
	return fmt.Sprintf("/apis/%s/%snamespaces/%s/pods/%s/%s", GroupVersion, watch, namespace, pod, sub)
}

// target is a request for a pod's subresource.
type target struct {
	namespace, pod string
	sub            subresource
	verb           string
}

// parsePath reads /apis/admin.meshctl.io/v1alpha1/[watch/]namespaces/NS/pods/NAME/SUB
// and the verb the API server authorized it with; ok is false for any
// other path, and err says why a method does not fit.
func parsePath(method, path string) (t target, ok bool, err error) {
	rest, found := strings.CutPrefix(path, "/apis/"+GroupVersion+"/")
	if !found {
		return t, false, nil
	}
	watch := false
	if r, w := strings.CutPrefix(rest, "watch/"); w {
		rest, watch = r, true
	}
	parts := strings.Split(rest, "/")
	if len(parts) != 5 || parts[0] != "namespaces" || parts[2] != Resource || parts[1] == "" || parts[3] == "" {
		return t, false, nil
	}
	sub, known := lookup(parts[4])
	if !known {
		return t, false, nil
	}
	t = target{namespace: parts[1], pod: parts[3], sub: sub}
	if errs := validation.IsDNS1123Label(t.namespace); len(errs) > 0 {
		return t, true, fmt.Errorf("namespace %q: %s", t.namespace, strings.Join(errs, "; "))
	}
	if errs := validation.IsDNS1123Subdomain(t.pod); len(errs) > 0 {
		return t, true, fmt.Errorf("pod name %q: %s", t.pod, strings.Join(errs, "; "))
	}
	if method != sub.method {
		return t, true, fmt.Errorf("%s takes %s, not %s", Resource+"/"+sub.name, sub.method, method)
	}
	switch {
	case watch && sub.name != Tap:
		return t, true, fmt.Errorf("only %s/%s can be watched", Resource, Tap)
	case watch:
		t.verb = VerbWatch
	case method == http.MethodPost:
		t.verb = VerbCreate
	default:
		t.verb = VerbGet
	}
	return t, true, nil
}
