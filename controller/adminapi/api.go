package adminapi

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/meshctl/meshctl/internal/meshnames"
	"k8s.io/apimachinery/pkg/util/validation"
)

// subresource is what the API serves of one pod subresource.
type subresource struct {
	name   string
	kind   string
	method string   // the HTTP method it takes
	verbs  []string // for discovery
}

var subresources = []subresource{
	{meshnames.AdminTap, "Tap", http.MethodGet, []string{meshnames.VerbGet, meshnames.VerbWatch}},
	{meshnames.AdminIdentity, "Identity", http.MethodGet, []string{meshnames.VerbGet}},
	{meshnames.AdminDestinations, "Destinations", http.MethodGet, []string{meshnames.VerbGet}},
	{meshnames.AdminPolicy, "Policy", http.MethodGet, []string{meshnames.VerbGet}},
	{meshnames.AdminRenew, "Renew", http.MethodPost, []string{meshnames.VerbCreate}},
}

// subresourceNames lists the subresources, comma-separated.
func subresourceNames() string {
	names := make([]string, len(subresources))
	for i, s := range subresources {
		names[i] = s.name
	}
	return strings.Join(names, ",")
}

func lookup(name string) (subresource, bool) {
	for _, s := range subresources {
		if s.name == name {
			return s, true
		}
	}
	return subresource{}, false
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
	rest, found := strings.CutPrefix(path, "/apis/"+meshnames.AdminGroupVersion+"/")
	if !found {
		return t, false, nil
	}
	watch := false
	if r, w := strings.CutPrefix(rest, "watch/"); w {
		rest, watch = r, true
	}
	parts := strings.Split(rest, "/")
	if len(parts) != 5 || parts[0] != "namespaces" || parts[2] != meshnames.AdminResource || parts[1] == "" || parts[3] == "" {
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
		return t, true, fmt.Errorf("%s takes %s, not %s", meshnames.AdminResource+"/"+sub.name, sub.method, method)
	}
	switch {
	case watch && sub.name != meshnames.AdminTap:
		return t, true, fmt.Errorf("only %s/%s can be watched", meshnames.AdminResource, meshnames.AdminTap)
	case watch:
		t.verb = meshnames.VerbWatch
	case method == http.MethodPost:
		t.verb = meshnames.VerbCreate
	default:
		t.verb = meshnames.VerbGet
	}
	return t, true, nil
}
