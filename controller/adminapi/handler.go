package adminapi

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/meshctl/meshctl/internal/certs"
	"github.com/meshctl/meshctl/internal/meshnames"
	"github.com/meshctl/meshctl/proxy/meshtls"
)

// Config configures the API's handler.
type Config struct {
	// Client reaches the API server: SubjectAccessReviews (unless
	// Authorizer is set) and the front-proxy ConfigMap (unless FrontProxy
	// is set). Required unless both are set.
	Client kubernetes.Interface
	// Pods looks up a pod (the controller's informer cache); a missing pod
	// is an apierrors NotFound. Required.
	Pods func(namespace, name string) (*corev1.Pod, error)
	// Identity is the controller's own workload certificate and the trust
	// roots: what it proves to proxies and checks them against. Required.
	Identity certs.Source
	// TrustDomain of the mesh, for the proxies' SPIFFE IDs. Default: cluster.local.
	TrustDomain string
	// ProxyPort is the proxies' admin port. Default: meshnames.ProxyAdminPort.
	ProxyPort int
	// Authorizer decides what users may do. Default: SubjectAccessReviews
	// through Client.
	Authorizer Authorizer
	// FrontProxy authenticates the API server's aggregator. Default: one
	// that Run keeps following AuthConfigMap through Client.
	FrontProxy *FrontProxy
	// Log receives refusals (warn) and relays (info). Default: discard.
	Log *slog.Logger
}

// Handler serves the API: discovery, and a pod's subresources relayed to
// its proxy (see the package comment).
type Handler struct {
	cfg    Config
	front  *FrontProxy
	follow bool // Run follows the ConfigMap
	relay  relay
	log    *slog.Logger
}

// withDefaults returns the configuration with its unset fields at their
// defaults.
func (c Config) withDefaults() Config {
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	if c.TrustDomain == "" {
		c.TrustDomain = meshnames.TrustDomain
	}
	if c.ProxyPort == 0 {
		c.ProxyPort = meshnames.ProxyAdminPort
	}
	if c.Authorizer == nil {
		c.Authorizer = SubjectAccessReviews{Client: c.Client}
	}
	return c
}

// New checks cfg and returns the API's handler.
func New(cfg Config) (*Handler, error) {
	if cfg.Pods == nil || cfg.Identity == nil {
		return nil, errors.New("admin API: Pods and Identity are required")
	}
	if cfg.Client == nil && (cfg.Authorizer == nil || cfg.FrontProxy == nil) {
		return nil, errors.New("admin API: a Kubernetes client is required unless Authorizer and FrontProxy are given")
	}
	cfg = cfg.withDefaults()
	h := &Handler{cfg: cfg, front: cfg.FrontProxy, log: cfg.Log}
	if h.front == nil {
		h.front, h.follow = NewFrontProxy(cfg.Log), true
	}
	d := &net.Dialer{Timeout: 5 * time.Second}
	h.relay = relay{
		dialer: &meshtls.Dialer{Source: cfg.Identity, Net: d.DialContext},
		port:   cfg.ProxyPort, trustDomain: cfg.TrustDomain,
	}
	return h, nil
}

// Run follows the front proxy's settings until ctx ends (when the handler
// made its own FrontProxy; otherwise it only waits).
func (h *Handler) Run(ctx context.Context) error {
	if !h.follow {
		<-ctx.Done()
		return nil
	}
	return h.front.Follow(ctx, h.cfg.Client)
}

// ServerTLS is the API's TLS configuration: the serving certificate the
// APIService's caBundle vouches for, and client certificates requested (the
// front proxy's; Handler verifies them, so that a request without one gets
// a 401 rather than a failed handshake).
func ServerTLS(cert func(*tls.ClientHelloInfo) (*tls.Certificate, error)) *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: cert, ClientAuth: tls.RequestClientCert}
}

// ServeHTTP authenticates the front proxy, then serves discovery or
// authorizes the user and relays to the pod's proxy.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	u, err := h.front.Authenticate(r)
	if errors.Is(err, errNoFrontProxy) {
		status(w, http.StatusServiceUnavailable, metav1.StatusReasonServiceUnavailable, "the controller has not loaded the API server's front-proxy settings yet", nil)
		return
	}
	if err != nil {
		h.log.Warn("admin API request refused", "path", r.URL.Path, "remote", r.RemoteAddr, "reason", err)
		status(w, http.StatusUnauthorized, metav1.StatusReasonUnauthorized, err.Error(), nil)
		return
	}
	if doc := discovery(r.URL.Path); doc != nil {
		if r.Method != http.MethodGet {
			status(w, http.StatusMethodNotAllowed, metav1.StatusReasonMethodNotAllowed, "discovery takes GET", nil)
			return
		}
		writeJSON(w, http.StatusOK, doc)
		return
	}
	t, ok, err := parsePath(r.Method, r.URL.Path)
	switch {
	case !ok:
		status(w, http.StatusNotFound, metav1.StatusReasonNotFound, fmt.Sprintf("%s serves only namespaces/NS/pods/NAME/{%s}", meshnames.AdminGroupVersion, subresourceNames()), nil)
		return
	case err != nil:
		status(w, http.StatusBadRequest, metav1.StatusReasonBadRequest, err.Error(), nil)
		return
	}
	a := Attributes{Namespace: t.namespace, Pod: t.pod, Subresource: t.sub.name, Verb: t.verb}
	allowed, reason, err := h.cfg.Authorizer.Authorize(r.Context(), u, a)
	if err != nil {
		h.log.Error("could not authorize an admin API request", "user", u.Name, "request", a.String(), "error", err)
		status(w, http.StatusInternalServerError, metav1.StatusReasonInternalError, fmt.Sprintf("could not check whether %q may %s: %v", u.Name, a, err), nil)
		return
	}
	details := &metav1.StatusDetails{Group: meshnames.AdminGroup, Kind: meshnames.AdminResource, Name: t.pod}
	if !allowed {
		h.log.Warn("admin API request refused", "user", u.Name, "groups", u.Groups, "request", a.String(), "reason", reason)
		msg := fmt.Sprintf("user %q cannot %s", u.Name, a)
		if reason != "" {
			msg += ": " + reason
		}
		status(w, http.StatusForbidden, metav1.StatusReasonForbidden, msg, details)
		return
	}
	pod, err := h.cfg.Pods(t.namespace, t.pod)
	switch {
	case apierrors.IsNotFound(err):
		status(w, http.StatusNotFound, metav1.StatusReasonNotFound, fmt.Sprintf("pod %s/%s not found", t.namespace, t.pod), details)
		return
	case err != nil:
		status(w, http.StatusInternalServerError, metav1.StatusReasonInternalError, fmt.Sprintf("pod %s/%s: %v", t.namespace, t.pod, err), details)
		return
	}
	if why := unreachable(pod); why != "" {
		status(w, http.StatusBadRequest, metav1.StatusReasonBadRequest, fmt.Sprintf("pod %s/%s %s", t.namespace, t.pod, why), details)
		return
	}
	h.log.Info("admin API relay", "user", u.Name, "request", a.String(), "pod_ip", pod.Status.PodIP)
	if err := h.relay.serve(w, r, pod, t); err != nil {
		var re *errRelay
		code := http.StatusBadGateway
		if errors.As(err, &re) {
			code = re.code
		}
		h.log.Warn("admin API relay failed", "user", u.Name, "request", a.String(), "error", err)
		status(w, code, statusReason(code), err.Error(), details)
	}
}

// unreachable says why a pod's proxy cannot be asked, or "".
func unreachable(p *corev1.Pod) string {
	switch {
	case p.Labels[meshnames.VersionLabel] == "":
		return "has no proxy (it is not meshed)"
	case p.Spec.HostNetwork:
		return "runs in the host network: it has no proxy of its own"
	case p.DeletionTimestamp != nil || p.Status.Phase != corev1.PodRunning || p.Status.PodIP == "":
		return fmt.Sprintf("is not running (phase %s)", p.Status.Phase)
	}
	return ""
}

func statusReason(code int) metav1.StatusReason {
	switch code {
	case http.StatusBadRequest:
		return metav1.StatusReasonBadRequest
	case http.StatusNotFound:
		return metav1.StatusReasonNotFound
	case http.StatusServiceUnavailable:
		return metav1.StatusReasonServiceUnavailable
	case http.StatusInternalServerError:
		return metav1.StatusReasonInternalError
	}
	return metav1.StatusReasonUnknown
}
