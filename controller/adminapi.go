package controller

import (
	"log/slog"
	"net/http"
	"time"

	corev1 "k8s.io/api/core/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/meshctl/meshctl/controller/adminapi"
	"github.com/meshctl/meshctl/internal/certs"
)

// ownIdentity is the controller's own workload certificate and the current
// trust roots, as a certs.Source: what it proves to proxies' admin ports and
// checks them against.
type ownIdentity struct{ c *Controller }

// Bundle implements certs.Source.
func (o ownIdentity) Bundle() *certs.Bundle {
	return &certs.Bundle{Certificate: o.c.own.Load(), ID: o.c.cfg.ID(), Roots: o.c.trust.roots.Load()}
}

// adminAPI is the aggregated admin API (package adminapi) and its server:
// the webhook's serving certificate (the APIService's caBundle vouches for
// it), pods from the cluster-wide cache. The handler's Run follows the
// front proxy's settings.
func (c *Controller) adminAPI(pods cache.SharedIndexInformer, hook *webhookCert) (*adminapi.Handler, *http.Server, error) {
	lister := corelisters.NewPodLister(pods.GetIndexer())
	log := c.log.With("component", "admin-api")
	h, err := adminapi.New(adminapi.Config{
		Client: c.cfg.Client,
		Pods: func(ns, name string) (*corev1.Pod, error) {
			return lister.Pods(ns).Get(name)
		},
		Identity: ownIdentity{c}, TrustDomain: c.cfg.TrustDomain, Log: log,
	})
	if err != nil {
		return nil, nil, err
	}
	return h, &http.Server{
		Handler:           h,
		TLSConfig:         adminapi.ServerTLS(hook.get),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       90 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}, nil
}
