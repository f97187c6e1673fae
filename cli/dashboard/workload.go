package dashboard

import (
	"context"
	"net/http"
	"slices"
	"sync"

	corev1 "k8s.io/api/core/v1"

	"github.com/meshctl/meshctl/controller/inbound"
	"github.com/meshctl/meshctl/internal/meshnames"
)

// maxIdentityReads bounds the proxies asked for their certificate for one
// workload page, and identityConcurrency those asked at once by every page
// together.
const (
	maxIdentityReads    = 50
	identityConcurrency = 8
)

func (s *Server) workload(w http.ResponseWriter, r *http.Request) {
	ns, name := r.URL.Query().Get("namespace"), r.URL.Query().Get("name")
	if !dnsLabel.MatchString(ns) || !dnsLabel.MatchString(name) {
		writeError(w, http.StatusBadRequest, "give a workload's namespace and name: /api/workload?namespace=NS&name=NAME")
		return
	}
	page, status, err := s.workloadPage(r.Context(), ns, name)
	if err != nil {
		writeError(w, status, err.Error())
		return
	}
	writeJSON(w, page)
}

// workloadPage gathers a workload's page: its node and edges from the
// namespace's latest graph, its history, pods, policies and routes.
func (s *Server) workloadPage(ctx context.Context, ns, name string) (*Workload, int, error) {
	g, err := s.Collector.Graph(ctx, ns)
	if err != nil {
		return nil, http.StatusBadGateway, err
	}
	id := workloadID(ns, name)
	i := slices.IndexFunc(g.Nodes, func(n Node) bool { return n.ID == id && n.Kind != KindWorkload })
	if i < 0 {
		return nil, http.StatusNotFound, errorf("no workload %s with a running pod", id)
	}
	page := &Workload{Node: g.Nodes[i], Pods: []PodInfo{}, Inbound: []Edge{}, Outbound: []Edge{}, Policies: []PolicyInfo{}, Routes: []RouteInfo{}}
	page.History = s.Collector.History(ns, id)
	for _, e := range g.Edges {
		if e.Target == id {
			page.Inbound = append(page.Inbound, e)
		}
		if e.Source == id {
			page.Outbound = append(page.Outbound, e)
		}
	}
	page.Routes = routesTo(g.Splits, id)
	objs, err := s.Source.Workload(ctx, ns, name)
	if err != nil {
		page.Errors = append(page.Errors, err.Error())
		return page, 0, nil
	}
	page.Errors = append(page.Errors, objs.Errors...)
	page.Pods = s.podInfos(ctx, objs.Pods)
	if len(objs.Pods) > 0 {
		p := running(objs.Pods)
		policy, errs := inbound.Compute(p, objs.NamespaceAnnotations, objs.Policies, objs.TrustDomain, objs.ClusterDefault)
		page.DefaultPolicy, page.RateLimit, page.RateLimitPerClient = policy.Default, policy.RateLimit, policy.RateLimitPerClient
		for _, rule := range policy.Rules {
			page.Policies = append(page.Policies, PolicyInfo{Name: rule.Name, Port: rule.Port, Clients: rule.Identities, PathPrefixes: rule.PathPrefixes})
		}
		for _, e := range errs {
			page.Errors = append(page.Errors, e.Error())
		}
	}
	return page, 0, nil
}

// running is the first running pod, else the first.
func running(pods []corev1.Pod) *corev1.Pod {
	for i := range pods {
		if pods[i].Status.Phase == corev1.PodRunning {
			return &pods[i]
		}
	}
	return &pods[0]
}

// podInfos describes pods, reading the first maxIdentityReads meshed
// running pods' certificates from their proxies.
func (s *Server) podInfos(ctx context.Context, pods []corev1.Pod) []PodInfo {
	out := make([]PodInfo, len(pods))
	var wg sync.WaitGroup
	reads := 0
	for i := range pods {
		p := &pods[i]
		version, meshed := p.Labels[meshnames.VersionLabel]
		out[i] = PodInfo{Name: p.Name, Ready: podReady(p), Meshed: meshed, ProxyVersion: version}
		if !meshed || p.Status.Phase != corev1.PodRunning || p.DeletionTimestamp != nil {
			continue
		}
		if reads++; reads > maxIdentityReads {
			out[i].IdentityError = "not read: only the first 50 pods' proxies are asked"
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			id, err := s.proxyIdentity(ctx, p.Namespace, p.Name)
			if err != nil {
				out[i].IdentityError = err.Error()
				return
			}
			out[i].Identity = &id
		}()
	}
	wg.Wait()
	return out
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// routesTo are the routes with a backend whose workloads include id.
func routesTo(splits []Split, id string) []RouteInfo {
	var out []RouteInfo
	for _, s := range splits {
		if !slices.Contains(s.Targets, id) {
			continue
		}
		i := slices.IndexFunc(out, func(r RouteInfo) bool { return r.Name == s.Route })
		if i < 0 {
			out = append(out, RouteInfo{Name: s.Route, Parents: []string{}, Backends: []Split{}})
			i = len(out) - 1
		}
		if !slices.Contains(out[i].Parents, s.Service) {
			out[i].Parents = append(out[i].Parents, s.Service)
		}
	}
	// Every backend of the routes found, not only this workload's: the
	// split is the point.
	for i := range out {
		for _, s := range splits {
			if s.Route == out[i].Name {
				out[i].Backends = append(out[i].Backends, s)
			}
		}
	}
	if out == nil {
		out = []RouteInfo{}
	}
	return out
}
