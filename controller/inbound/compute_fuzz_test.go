package inbound

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/meshctl/meshctl/internal/api"
	"github.com/meshctl/meshctl/internal/meshnames"
	"github.com/meshctl/meshctl/internal/policyapi"
	"github.com/meshctl/meshctl/internal/spiffeid"
	"github.com/meshctl/meshctl/proxy/authz"
)

// fuzzBytes hands out the fuzzer's bytes one choice at a time; once they
// run out every choice is 0.
type fuzzBytes []byte

// next returns the next byte modulo n.
func (b *fuzzBytes) next(n int) int {
	if len(*b) == 0 {
		return 0
	}
	v := (*b)[0]
	*b = (*b)[1:]
	return int(v) % n
}

// fuzzPolicy is one generated AuthorizationPolicy and what the generator
// knows of it: whether its selector parses and matches the test pod, and
// whether it is invalid (and so must be reported and never widen access).
type fuzzPolicy struct {
	ap      *policyapi.AuthorizationPolicy
	matches bool // in the pod's namespace, selector parses and matches
	invalid bool // selector, port or a client cannot be used
	// cleaned is the policy without its client entries that name no one,
	// when those are all that is wrong with it: such entries are left out,
	// so the policy must admit exactly what cleaned admits, no more.
	cleaned *policyapi.AuthorizationPolicy
}

// genPolicies builds up to eight AuthorizationPolicies from data, drawing
// strings from the fixed tables and the fuzzed s1 and s2.
func genPolicies(data []byte, s1, s2 string) []fuzzPolicy {
	b := fuzzBytes(data)
	strs := []string{"", "web", "db", "client", "shop", "tools", "*", "Bad/Name", s1, s2}
	ids := []string{"*", "spiffe://cluster.local/ns/shop/sa/client", "spiffe://cluster.local/ns/tools/sa/ops", "", "not-an-id",
		"spiffe://cluster.local/ns/shop/sa/client/extra", "spiffe://cluster.local/ns/shop/sa/Client", s1, s2}
	prefixes := []string{"/", "/api", "/admin/", "", "api", "/api/../admin", s1}
	n := b.next(9)
	var out []fuzzPolicy
	for i := range n {
		fp := fuzzPolicy{ap: &policyapi.AuthorizationPolicy{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("p%d", i), Namespace: "shop"}}}
		if b.next(8) == 0 {
			fp.ap.Namespace = "other"
		}
		spec := &fp.ap.Spec
		switch b.next(7) {
		case 0: // every pod
		case 1:
			spec.PodSelector.MatchLabels = map[string]string{"app": "web"}
		case 2:
			spec.PodSelector.MatchLabels = map[string]string{"app": "db"}
		case 3:
			spec.PodSelector.MatchExpressions = []metav1.LabelSelectorRequirement{{Key: "app", Operator: metav1.LabelSelectorOpIn, Values: []string{strs[b.next(len(strs))]}}}
		case 4:
			spec.PodSelector.MatchExpressions = []metav1.LabelSelectorRequirement{{Key: "app", Operator: "Sometimes"}}
		case 5:
			spec.PodSelector.MatchLabels = map[string]string{strs[b.next(len(strs))]: strs[b.next(len(strs))]}
		case 6:
			spec.PodSelector.MatchExpressions = []metav1.LabelSelectorRequirement{{Key: "app", Operator: metav1.LabelSelectorOpNotIn, Values: []string{"db"}}}
		}
		switch b.next(10) {
		case 0, 1:
		case 2:
			p := intstr.FromString("http")
			spec.Port = &p
		case 3:
			p := intstr.FromString("admin")
			spec.Port = &p
		case 4:
			p := intstr.FromString(strs[b.next(len(strs))])
			spec.Port = &p
		case 5:
			p := intstr.FromInt32(8080)
			spec.Port = &p
		default:
			p := intstr.FromInt32([]int32{0, -1, 1, 9000, 65535, 65536, 70000, -65536, 12345}[b.next(9)])
			spec.Port = &p
		}
		for range b.next(4) {
			spec.PathPrefixes = append(spec.PathPrefixes, prefixes[b.next(len(prefixes))])
		}
		for range b.next(4) {
			switch b.next(3) {
			case 0:
				spec.From = append(spec.From, policyapi.Client{SPIFFEID: ids[b.next(len(ids))]})
			case 1:
				spec.From = append(spec.From, policyapi.Client{ServiceAccount: &policyapi.ServiceAccountRef{Name: strs[b.next(len(strs))], Namespace: strs[b.next(len(strs))]}})
			default:
				spec.From = append(spec.From, policyapi.Client{})
			}
		}
		sel, err := metav1.LabelSelectorAsSelector(&spec.PodSelector)
		fp.invalid = err != nil || !validClients(spec.From)
		if spec.Port != nil {
			switch v := *spec.Port; {
			case v.Type == intstr.Int:
				fp.invalid = fp.invalid || v.IntValue() < 1 || v.IntValue() > 65535
			default:
				fp.invalid = fp.invalid || v.StrVal != "http" && v.StrVal != "admin"
			}
		}
		fp.matches = fp.ap.Namespace == "shop" && err == nil && sel.Matches(labels.Set{"app": "web"})
		if fp.invalid && err == nil && !validClients(spec.From) {
			portOK := spec.Port == nil || (spec.Port.Type == intstr.Int && spec.Port.IntValue() >= 1 && spec.Port.IntValue() <= 65535) ||
				(spec.Port.Type != intstr.Int && (spec.Port.StrVal == "http" || spec.Port.StrVal == "admin"))
			if portOK {
				c := *fp.ap // shallow: only From is replaced
				c.Spec.From = nil
				for _, f := range spec.From {
					if validClients([]policyapi.Client{f}) {
						c.Spec.From = append(c.Spec.From, f)
					}
				}
				fp.cleaned = &c
			}
		}
		out = append(out, fp)
	}
	return out
}

// validClients reports whether every client names someone: "*", a valid
// SPIFFE ID, or a ServiceAccount whose (namespace and) name are valid.
func validClients(from []policyapi.Client) bool {
	for _, c := range from {
		switch {
		case c.SPIFFEID == "*":
		case c.SPIFFEID != "":
			if _, err := spiffeid.Parse(c.SPIFFEID); err != nil {
				return false
			}
		case c.ServiceAccount != nil && c.ServiceAccount.Name != "":
			ns := c.ServiceAccount.Namespace
			if ns == "" {
				ns = "shop"
			}
			if _, err := spiffeid.New("cluster.local", ns, c.ServiceAccount.Name); err != nil {
				return false
			}
		default:
			return false
		}
	}
	return true
}

// access is the set of (port, client, request) a policy lets in, as the
// proxy's guard decides: every port and client any policy names, and a
// few others, with HTTP requests on the paths they name and connections
// that are not HTTP. Rate limits are left out: they only narrow.
func access(p api.InboundPolicy, policies []fuzzPolicy) map[string]bool {
	ports := []int{8080, 9000, 1, 12345, 65535}
	clients := []string{"", "spiffe://cluster.local/ns/shop/sa/client", "spiffe://cluster.local/ns/x/sa/other"}
	paths := []string{"/", "/api", "/api/x", "/admin", "/zzz"}
	for _, fp := range policies {
		for _, c := range fp.ap.Spec.From {
			if c.SPIFFEID != "" && !slices.Contains(clients, c.SPIFFEID) {
				clients = append(clients, c.SPIFFEID)
			}
		}
		for _, pre := range fp.ap.Spec.PathPrefixes {
			if !slices.Contains(paths, pre) && strings.HasPrefix(pre, "/") {
				paths = append(paths, pre)
			}
		}
	}
	for _, r := range p.Rules {
		if !slices.Contains(ports, r.Port) && r.Port > 0 && r.Port < 65536 {
			ports = append(ports, r.Port)
		}
		for _, id := range r.Identities {
			if !slices.Contains(clients, id) {
				clients = append(clients, id)
			}
		}
	}
	p.RateLimit, p.RateLimitPerClient = 0, 0
	g := authz.New(meshnames.DefaultDeny)
	g.Update(p)
	allowed := map[string]bool{}
	for _, port := range ports {
		for _, c := range clients {
			if g.Admit(authz.Request{Port: uint16(port), ClientID: c}).Allowed() {
				allowed[fmt.Sprintf("%d %q tcp", port, c)] = true
			}
			for _, path := range paths {
				if g.Admit(authz.Request{Port: uint16(port), HTTP: true, Path: path, ClientID: c}).Allowed() {
					allowed[fmt.Sprintf("%d %q %q", port, c, path)] = true
				}
			}
		}
	}
	return allowed
}

// wider returns an access of a that b does not have.
func wider(a, b map[string]bool) (string, bool) {
	for k := range a {
		if !b[k] {
			return k, true
		}
	}
	return "", false
}

// messages are errs as sorted strings.
func messages(errs []error) []string {
	var out []string
	for _, e := range errs {
		out = append(out, e.Error())
	}
	slices.Sort(out)
	return out
}

// FuzzCompute computes the test pod's inbound policy from generated
// AuthorizationPolicies and default-policy annotations (including unknown
// values). Oracle: the same input gives the same policy and errors, in
// whatever order the policies come; policies whose selector does not match
// the pod, or of another namespace, change nothing; every invalid policy
// (selector that does not parse, port that is no port of the pod or out of
// range, a client that names no one) and an unknown default annotation is
// reported, and never lets in a (port, client, request) that the same
// input without it does not, as the proxy's guard decides.
func FuzzCompute(f *testing.F) {
	f.Add([]byte{}, "", "", "", uint8(0))
	f.Add([]byte{3, 1, 1, 2, 1, 2, 0, 1, 1, 3, 1, 0, 0, 6, 1, 1}, "deny", "", "x", uint8(2))
	f.Add([]byte{2, 1, 4, 2, 0, 1, 0, 1, 1, 1, 0, 0, 2}, "denny", "deny", "", uint8(0))
	f.Add([]byte{4, 1, 4, 9, 6, 0, 1, 0, 1, 1, 3, 2, 1, 5, 2, 1, 0, 1, 2}, "", "", "", uint8(2))
	f.Add([]byte{5, 1, 5, 8, 9, 7, 2, 1, 2, 1, 1, 0, 6, 3, 1, 1, 9, 9, 0, 2, 1, 3, 6}, "all-authenticated", "bogus", "Sa", uint8(1))
	f.Add([]byte{2, 1, 3, 7, 4, 0, 1, 0, 4, 1, 1, 4, 1}, "ALL-UNAUTHENTICATED", "", "", uint8(0))
	f.Add([]byte{1, 1, 4, 2, 0, 1, 0, 1}, "", "", "", uint8(2))    // a bad selector over deny
	f.Add([]byte{1, 1, 1, 2, 0, 2, 0, 1, 2}, "", "", "", uint8(2)) // a client that names no one
	f.Add([]byte{1, 1, 1, 6, 5, 0, 1, 0, 0}, "", "", "", uint8(0)) // port 65536
	f.Fuzz(func(t *testing.T, data []byte, podDefault, nsDefault, s string, cluster uint8) {
		clusterDefault := []string{meshnames.DefaultAllUnauthenticated, meshnames.DefaultAllAuthenticated, meshnames.DefaultDeny}[int(cluster)%3]
		pod := testPod(nil)
		if podDefault != "" {
			pod.Annotations = map[string]string{meshnames.DefaultPolicyAnnotation: podDefault}
		}
		var nsAnn map[string]string
		if nsDefault != "" {
			nsAnn = map[string]string{meshnames.DefaultPolicyAnnotation: nsDefault}
		}
		gen := genPolicies(data, s, strings.ToUpper(s))
		var all []*policyapi.AuthorizationPolicy
		for _, fp := range gen {
			all = append(all, fp.ap)
		}
		compute := func(pod *corev1.Pod, nsAnn map[string]string, ps []*policyapi.AuthorizationPolicy) (api.InboundPolicy, []string) {
			p, errs := Compute(pod, nsAnn, ps, "cluster.local", clusterDefault)
			return p, messages(errs)
		}
		got, errs := compute(pod, nsAnn, all)

		// Deterministic, and independent of the policies' order.
		if again, errs2 := compute(pod, nsAnn, all); !reflect.DeepEqual(got, again) || !reflect.DeepEqual(errs, errs2) {
			t.Fatalf("two computations differ:\n%+v %q\n%+v %q", got, errs, again, errs2)
		}
		rev := slices.Clone(all)
		slices.Reverse(rev)
		if other, errs2 := compute(pod, nsAnn, rev); !reflect.DeepEqual(got, other) || !reflect.DeepEqual(errs, errs2) {
			t.Fatalf("the policies in reverse order give another result:\n%+v %q\n%+v %q", got, errs, other, errs2)
		}

		// Policies that select other pods, or live in another namespace,
		// have no effect, and are not reported.
		var selecting, valid []*policyapi.AuthorizationPolicy
		for _, fp := range gen {
			sel, err := metav1.LabelSelectorAsSelector(&fp.ap.Spec.PodSelector)
			if fp.ap.Namespace == "shop" && (err != nil || sel.Matches(labels.Set(pod.Labels))) {
				selecting = append(selecting, fp.ap)
			}
			if !fp.invalid {
				valid = append(valid, fp.ap)
			} else if fp.cleaned != nil {
				valid = append(valid, fp.cleaned)
			}
		}
		if only, errs2 := compute(pod, nsAnn, selecting); !reflect.DeepEqual(got, only) || !reflect.DeepEqual(errs, errs2) {
			t.Fatalf("policies that do not select the pod changed its policy:\n%+v %q\n%+v %q", got, errs, only, errs2)
		}

		// Every invalid policy that selects the pod (or might: its selector
		// does not parse) is reported by name.
		for _, fp := range gen {
			sel, err := metav1.LabelSelectorAsSelector(&fp.ap.Spec.PodSelector)
			if fp.invalid && fp.ap.Namespace == "shop" && (err != nil || sel.Matches(labels.Set(pod.Labels))) &&
				!slices.ContainsFunc(errs, func(m string) bool { return strings.Contains(m, "shop/"+fp.ap.Name+":") }) {
				t.Fatalf("invalid policy %s %+v not reported: %q", fp.ap.Name, fp.ap.Spec, errs)
			}
		}

		// Fail closed: each invalid policy, and an unknown default
		// annotation, widens nothing.
		a := access(got, gen)
		for i, fp := range gen {
			if !fp.invalid {
				continue
			}
			without := slices.Delete(slices.Clone(all), i, i+1)
			if fp.cleaned != nil {
				without = slices.Clone(all)
				without[i] = fp.cleaned
			}
			p2, _ := compute(pod, nsAnn, without)
			if k, ok := wider(a, access(p2, gen)); ok {
				t.Fatalf("invalid policy %s %+v lets in %s", fp.ap.Name, fp.ap.Spec, k)
			}
		}
		pv, _ := compute(pod, nsAnn, valid)
		if k, ok := wider(a, access(pv, gen)); ok {
			t.Fatalf("the invalid policies together let in %s", k)
		}
		if podDefault != "" && !meshnames.ValidDefaultPolicy(podDefault) {
			if len(errs) == 0 {
				t.Fatalf("the pod's default %q is not reported", podDefault)
			}
			p2, _ := compute(testPod(nil), nsAnn, all)
			if k, ok := wider(a, access(p2, gen)); ok {
				t.Fatalf("the pod's default %q lets in %s", podDefault, k)
			}
		}
		if nsDefault != "" && !meshnames.ValidDefaultPolicy(nsDefault) && podDefault == "" {
			p2, _ := compute(pod, nil, all)
			if k, ok := wider(a, access(p2, gen)); ok {
				t.Fatalf("the namespace's default %q lets in %s", nsDefault, k)
			}
		}
	})
}

// TestInvalidPoliciesAdmitNoOne: a policy whose selector does not parse
// covers its port on every pod of the namespace but admits no one there
// (it may have been meant for other pods), and a port out of range or a
// client that names no one is reported.
func TestInvalidPoliciesAdmitNoOne(t *testing.T) {
	http := intstr.FromString("http")
	bad := policy("bad-selector", nil, &http, policyapi.Client{ServiceAccount: &policyapi.ServiceAccountRef{Name: "client"}})
	bad.Spec.PodSelector = metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "app", Operator: "Sometimes"}}}
	got, errs := Compute(testPod(nil), nil, []*policyapi.AuthorizationPolicy{bad}, "cluster.local", meshnames.DefaultDeny)
	if len(got.Rules) != 1 || got.Rules[0].Port != 8080 || len(got.Rules[0].Identities) != 0 || len(errs) != 1 {
		t.Errorf("a policy with a bad selector over deny: rules %+v (errors %v); want port 8080 covered, no one admitted", got.Rules, errs)
	}
	far := intstr.FromInt32(70000)
	for _, ap := range []*policyapi.AuthorizationPolicy{
		policy("far-port", nil, &far, policyapi.Client{SPIFFEID: "*"}),
		policy("no-one", nil, &http, policyapi.Client{}),
		policy("bad-id", nil, &http, policyapi.Client{SPIFFEID: "spiffe://cluster.local/ns/shop"}),
		policy("bad-sa", nil, &http, policyapi.Client{ServiceAccount: &policyapi.ServiceAccountRef{Name: "Client/x"}}),
	} {
		if _, errs := Compute(testPod(nil), nil, []*policyapi.AuthorizationPolicy{ap}, "cluster.local", meshnames.DefaultDeny); len(errs) != 1 {
			t.Errorf("%s: errors %v, want one", ap.Name, errs)
		}
	}
	// A client entry that names no one is left out; the policy's valid
	// clients still get in, and no one else does.
	mixed := policy("mixed", nil, &http, policyapi.Client{SPIFFEID: "spiffe://cluster.local/ns/shop"},
		policyapi.Client{ServiceAccount: &policyapi.ServiceAccountRef{Name: "client"}})
	got, errs = Compute(testPod(nil), nil, []*policyapi.AuthorizationPolicy{mixed}, "cluster.local", meshnames.DefaultDeny)
	if len(got.Rules) != 1 || len(errs) != 1 || len(got.Rules[0].Identities) != 1 || !strings.HasSuffix(got.Rules[0].Identities[0], "/sa/client") {
		t.Errorf("a policy with one bad client and one good: rules %+v (errors %v); want only the good client admitted", got.Rules, errs)
	}
}
