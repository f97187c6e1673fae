package inbound

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"reflect"
	"sync"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/cache"

	"github.com/meshctl/meshctl/internal/api"
	"github.com/meshctl/meshctl/internal/policyapi"
	"github.com/meshctl/meshctl/internal/spiffeid"
)

// Config configures a Server.
type Config struct {
	// Pods, Namespaces and Policies are started informers (Policies, of
	// AuthorizationPolicies as unstructured objects, may be nil: none).
	Pods, Namespaces, Policies cache.SharedIndexInformer
	// TrustDomain makes SPIFFE IDs of ServiceAccount references.
	TrustDomain string
	// Default is the cluster's default inbound policy.
	Default string
	// Log receives the server's logs. Default: discard.
	Log *slog.Logger
}

// Server streams inbound policies. It is an http.Handler for
// api.InboundPolicyPath; callers must present a workload certificate.
type Server struct {
	cfg Config

	// mu guards subs: per namespace, the streams to wake when something in
	// it may have changed.
	mu   sync.Mutex
	subs map[string]map[chan struct{}]struct{}
}

// New registers the server's event handlers on the informers.
func New(cfg Config) (*Server, error) {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	s := &Server{cfg: cfg, subs: map[string]map[chan struct{}]struct{}{}}
	byNamespace := func(obj any) {
		if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = d.Obj
		}
		switch o := obj.(type) {
		case *corev1.Namespace:
			s.notify(o.Name)
		case interface{ GetNamespace() string }:
			s.notify(o.GetNamespace())
		}
	}
	for _, inf := range []cache.SharedIndexInformer{cfg.Pods, cfg.Namespaces, cfg.Policies} {
		if inf == nil {
			continue
		}
		if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc: byNamespace, UpdateFunc: func(_, n any) { byNamespace(n) }, DeleteFunc: byNamespace,
		}); err != nil {
			return nil, err
		}
	}
	return s, nil
}

func (s *Server) notify(ns string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for ch := range s.subs[ns] {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

func (s *Server) subscribe(ns string) (chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	s.mu.Lock()
	if s.subs[ns] == nil {
		s.subs[ns] = map[chan struct{}]struct{}{}
	}
	s.subs[ns][ch] = struct{}{}
	s.mu.Unlock()
	return ch, func() {
		s.mu.Lock()
		delete(s.subs[ns], ch)
		if len(s.subs[ns]) == 0 {
			delete(s.subs, ns)
		}
		s.mu.Unlock()
	}
}

// policy computes a pod's policy from the caches; false when the pod is gone.
func (s *Server) policy(ns, name string) (api.InboundPolicy, *corev1.Pod, bool) {
	obj, ok, _ := s.cfg.Pods.GetIndexer().GetByKey(ns + "/" + name)
	if !ok {
		return api.InboundPolicy{}, nil, false
	}
	pod := obj.(*corev1.Pod)
	var nsAnnotations map[string]string
	if obj, ok, _ := s.cfg.Namespaces.GetIndexer().GetByKey(ns); ok {
		nsAnnotations = obj.(*corev1.Namespace).Annotations
	}
	var policies []*policyapi.AuthorizationPolicy
	if s.cfg.Policies != nil {
		objs, _ := s.cfg.Policies.GetIndexer().ByIndex(cache.NamespaceIndex, ns)
		for _, o := range objs {
			u, ok := o.(*unstructured.Unstructured)
			if !ok {
				continue
			}
			var ap policyapi.AuthorizationPolicy
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &ap); err != nil {
				s.cfg.Log.Warn("unreadable AuthorizationPolicy; ignoring it", "namespace", u.GetNamespace(), "name", u.GetName(), "error", err)
				continue
			}
			policies = append(policies, &ap)
		}
	}
	p, errs := Compute(pod, nsAnnotations, policies, s.cfg.TrustDomain, s.cfg.Default)
	for _, err := range errs {
		s.cfg.Log.Warn("inbound policy: a value cannot be used as written", "pod", ns+"/"+name, "error", err)
	}
	return p, pod, true
}

// ServeHTTP streams the calling proxy's inbound policy (GET ?pod=<name>).
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	fail := func(status int, reason, msg string) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(api.Error{Error: msg, Reason: reason})
	}
	if r.Method != http.MethodGet {
		fail(http.StatusMethodNotAllowed, "method", "use GET")
		return
	}
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		fail(http.StatusUnauthorized, "no_client_certificate", "a workload client certificate is required")
		return
	}
	caller, err := spiffeid.FromCertificate(r.TLS.PeerCertificates[0])
	if err != nil {
		fail(http.StatusForbidden, "bad_identity", err.Error())
		return
	}
	name := r.URL.Query().Get("pod")
	if name == "" {
		fail(http.StatusBadRequest, "bad_pod", "name the pod: ?pod=<name>")
		return
	}
	ns := caller.Namespace
	ch, unsubscribe := s.subscribe(ns)
	defer unsubscribe()
	p, pod, ok := s.policy(ns, name)
	if !ok {
		fail(http.StatusNotFound, "unknown_pod", "no pod "+ns+"/"+name+" (yet)")
		return
	}
	sa := pod.Spec.ServiceAccountName
	if sa == "" {
		sa = "default"
	}
	if sa != caller.ServiceAccount {
		fail(http.StatusForbidden, "wrong_pod", "pod "+ns+"/"+name+" does not run as "+caller.String())
		return
	}
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	enc := json.NewEncoder(w)
	var last *api.InboundPolicy
	for {
		if last == nil || !reflect.DeepEqual(*last, p) {
			if enc.Encode(p) != nil || rc.Flush() != nil {
				return
			}
			sent := p
			last = &sent
		}
		select {
		case <-r.Context().Done():
			return
		case <-ch:
		}
		if p, _, ok = s.policy(ns, name); !ok {
			return // the pod is gone
		}
	}
}
