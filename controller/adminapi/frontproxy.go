package adminapi

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/meshctl/meshctl/internal/meshnames"
)

// Keys of AuthConfigMap (the API server's --requestheader-* flags).
const (
	keyClientCA      = "requestheader-client-ca-file"
	keyAllowedNames  = "requestheader-allowed-names"
	keyUsername      = "requestheader-username-headers"
	keyUID           = "requestheader-uid-headers"
	keyGroup         = "requestheader-group-headers"
	keyExtraPrefixes = "requestheader-extra-headers-prefix"
)

// RequestHeader is how the front proxy proves itself (a client certificate
// from ClientCAs, with a common name in AllowedNames when that is not
// empty) and the headers in which it names the user it speaks for.
type RequestHeader struct {
	// ClientCAs verify the front proxy's client certificate.
	ClientCAs *x509.CertPool
	// AllowedNames are the common names it may have; empty: any.
	AllowedNames []string
	// UsernameHeaders name the user (the first one set wins).
	UsernameHeaders []string
	// UIDHeaders carry the user's UID, when the API server sends it.
	UIDHeaders []string
	// GroupHeaders carry the user's groups (every value of each).
	GroupHeaders []string
	// ExtraHeaderPrefixes start the headers of the user's extra
	// attributes: the rest of the name is the key (percent-encoded).
	ExtraHeaderPrefixes []string
}

// ParseRequestHeader reads AuthConfigMap. A cluster whose API server has no
// --requestheader-client-ca-file has no front proxy to authenticate: that is
// an error.
func ParseRequestHeader(cm *corev1.ConfigMap) (*RequestHeader, error) {
	caPEM := cm.Data[keyClientCA]
	if caPEM == "" {
		return nil, fmt.Errorf("ConfigMap %s/%s has no %s: the API server runs without a front proxy (--requestheader-client-ca-file)", cm.Namespace, cm.Name, keyClientCA)
	}
	rh := &RequestHeader{ClientCAs: x509.NewCertPool()}
	if !rh.ClientCAs.AppendCertsFromPEM([]byte(caPEM)) {
		return nil, fmt.Errorf("ConfigMap %s/%s: %s holds no certificate", cm.Namespace, cm.Name, keyClientCA)
	}
	for key, into := range map[string]*[]string{
		keyAllowedNames: &rh.AllowedNames, keyUsername: &rh.UsernameHeaders, keyUID: &rh.UIDHeaders,
		keyGroup: &rh.GroupHeaders, keyExtraPrefixes: &rh.ExtraHeaderPrefixes,
	} {
		if v := cm.Data[key]; v != "" {
			if err := json.Unmarshal([]byte(v), into); err != nil {
				return nil, fmt.Errorf("ConfigMap %s/%s: %s: %w", cm.Namespace, cm.Name, key, err)
			}
		}
	}
	if len(rh.UsernameHeaders) == 0 {
		return nil, fmt.Errorf("ConfigMap %s/%s names no %s", cm.Namespace, cm.Name, keyUsername)
	}
	return rh, nil
}

// User is who the front proxy makes a request for.
type User struct {
	// Name is the user name; UID its UID, when known.
	Name, UID string
	// Groups are the user's groups.
	Groups []string
	// Extra are the user's extra attributes (keys lowercased).
	Extra map[string][]string
}

// errUnauthenticated marks a request that did not come from the front proxy.
var errUnauthenticated = errors.New("unauthenticated")

// authenticate verifies that r comes from the front proxy, and only then
// reads the user from its headers.
func (rh *RequestHeader) authenticate(r *http.Request, now time.Time) (User, error) {
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return User{}, fmt.Errorf("%w: no client certificate (requests must come through the API server)", errUnauthenticated)
	}
	chain := r.TLS.PeerCertificates
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	if _, err := chain[0].Verify(x509.VerifyOptions{
		Roots: rh.ClientCAs, Intermediates: inter, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}); err != nil {
		return User{}, fmt.Errorf("%w: the client certificate (CN %q) is not the front proxy's: %v", errUnauthenticated, chain[0].Subject.CommonName, err)
	}
	if cn := chain[0].Subject.CommonName; len(rh.AllowedNames) > 0 && !slices.Contains(rh.AllowedNames, cn) {
		return User{}, fmt.Errorf("%w: the client certificate's CN %q is not among the allowed front-proxy names %v", errUnauthenticated, cn, rh.AllowedNames)
	}
	u := User{Name: first(r.Header, rh.UsernameHeaders), UID: first(r.Header, rh.UIDHeaders)}
	if u.Name == "" {
		return User{}, fmt.Errorf("%w: the front proxy named no user (%v)", errUnauthenticated, rh.UsernameHeaders)
	}
	for _, h := range rh.GroupHeaders {
		u.Groups = append(u.Groups, r.Header.Values(h)...)
	}
	for name, values := range r.Header {
		for _, prefix := range rh.ExtraHeaderPrefixes {
			if len(name) <= len(prefix) || !strings.EqualFold(name[:len(prefix)], prefix) {
				continue
			}
			key, err := url.PathUnescape(name[len(prefix):])
			if err != nil {
				key = name[len(prefix):]
			}
			if u.Extra == nil {
				u.Extra = map[string][]string{}
			}
			key = strings.ToLower(key)
			u.Extra[key] = append(u.Extra[key], values...)
		}
	}
	return u, nil
}

func first(h http.Header, names []string) string {
	for _, n := range names {
		if v := h.Get(n); v != "" {
			return v
		}
	}
	return ""
}

// errNoFrontProxy means the front proxy's settings are not known (yet).
var errNoFrontProxy = errors.New("the API server's front-proxy settings are not loaded")

// FrontProxy follows AuthConfigMap and authenticates requests against what
// it says now.
type FrontProxy struct {
	current atomic.Pointer[RequestHeader]
	// problem says why current is nil, when it is.
	problem atomic.Pointer[error]
	log     *slog.Logger
}

// NewFrontProxy returns a FrontProxy that knows nothing yet (Set or Follow).
func NewFrontProxy(log *slog.Logger) *FrontProxy {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &FrontProxy{log: log}
}

// Set takes the settings from AuthConfigMap; a ConfigMap that does not parse
// leaves every request unauthenticated until a good one comes.
func (f *FrontProxy) Set(cm *corev1.ConfigMap) {
	rh, err := ParseRequestHeader(cm)
	if err != nil {
		f.log.Warn("front-proxy settings rejected: every admin API request is refused", "error", err)
		f.current.Store(nil)
		f.problem.Store(&err)
		return
	}
	f.current.Store(rh)
	f.log.Info("front-proxy settings loaded", "allowed_names", rh.AllowedNames, "username_headers", rh.UsernameHeaders)
}

// Authenticate returns the user r is made for by the front proxy.
func (f *FrontProxy) Authenticate(r *http.Request) (User, error) {
	rh := f.current.Load()
	if rh == nil {
		if p := f.problem.Load(); p != nil {
			return User{}, fmt.Errorf("%w: %v", errUnauthenticated, *p)
		}
		return User{}, errNoFrontProxy
	}
	return rh.authenticate(r, time.Now())
}

// Follow keeps the settings current from AuthConfigMap until ctx ends. It
// needs get, list and watch on that one ConfigMap (the Role AuthReaderRole).
func (f *FrontProxy) Follow(ctx context.Context, client kubernetes.Interface) error {
	factory := informers.NewSharedInformerFactoryWithOptions(client, 10*time.Minute,
		informers.WithNamespace(meshnames.AuthConfigMapNamespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("metadata.name", meshnames.AuthConfigMap).String()
		}))
	defer factory.Shutdown()
	on := func(obj any) {
		if cm, ok := obj.(*corev1.ConfigMap); ok && cm.Name == meshnames.AuthConfigMap {
			f.Set(cm)
		}
	}
	if _, err := factory.Core().V1().ConfigMaps().Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: on, UpdateFunc: func(_, n any) { on(n) },
	}); err != nil {
		return fmt.Errorf("follow ConfigMap %s/%s: %w", meshnames.AuthConfigMapNamespace, meshnames.AuthConfigMap, err)
	}
	inf := factory.Core().V1().ConfigMaps().Informer()
	factory.Start(ctx.Done())
	wait, cancel := context.WithTimeout(ctx, time.Minute)
	synced := cache.WaitForCacheSync(wait.Done(), inf.HasSynced)
	cancel()
	switch {
	case ctx.Err() != nil:
		return nil
	case !synced:
		f.log.Warn("cannot read the front-proxy settings: the admin API refuses every request until it can (is the controller bound to Role "+meshnames.AuthConfigMapNamespace+"/"+meshnames.AuthReaderRole+"?)",
			"configmap", meshnames.AuthConfigMapNamespace+"/"+meshnames.AuthConfigMap)
	case len(inf.GetStore().ListKeys()) == 0:
		err := fmt.Errorf("ConfigMap %s/%s does not exist: the API server runs without a front proxy", meshnames.AuthConfigMapNamespace, meshnames.AuthConfigMap)
		f.problem.Store(&err)
		f.log.Warn("no front-proxy settings: the admin API refuses every request", "error", err)
	}
	<-ctx.Done()
	return nil
}
