package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/meshctl/meshctl/controller"
	"github.com/meshctl/meshctl/internal/logging"
	"github.com/meshctl/meshctl/internal/meshnames"
	"github.com/meshctl/meshctl/internal/version"
)

func newRunCommand() *cobra.Command {
	var (
		kubeconfig, logLevel, logFormat string
		cfg                             controller.Config
	)
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Run the control plane",
		Long: `Run the control plane. It reads the issuer (Secret mesh-issuer: tls.crt, tls.key)
and the trust bundle (ConfigMap mesh-trust-roots: roots.pem) from its namespace,
follows changes to both, and serves the control API (HTTP/2 over TLS) with a
certificate it issues itself for spiffe://<trust-domain>/ns/<namespace>/sa/mesh-controller:
certificate issuance (POST /v1/certificate), destination streams
(GET /v1/destinations?target=host:port: endpoints, identities and the
HTTPRoutes and GRPCRoutes attached to a Service) and inbound-policy streams
(GET /v1/inbound-policy?pod=NAME: the pod's servers and who may call them)
for proxies. One replica, elected with the Lease mesh-controller-route-status,
writes the status of the routes attached to Services.

With --proxy-image (the default), it also serves the proxy-injector webhook
(POST /inject on --webhook-addr) with the certificate in Secret
mesh-webhook-tls (tls.crt, tls.key), reloaded when the Secret changes; and it
keeps a copy of the trust bundle in every namespace it meshes pods in.

It serves the aggregated admin API admin.meshctl.io/v1alpha1 on --admin-api-addr
(same certificate) for the API server's front proxy: users' requests for a
meshed pod's tap, identity, destinations and renewal, checked with a
SubjectAccessReview and relayed to the pod's proxy over mutual TLS.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := logging.New(logLevel, logFormat)
			if err != nil {
				return err
			}
			restCfg, err := loadKubeconfig(kubeconfig)
			if err != nil {
				return err
			}
			restCfg.QPS, restCfg.Burst = controller.ClientQPS, controller.ClientBurst
			cfg.RestConfig = restCfg // TokenReviews get their own client from a copy
			cfg.Client, err = kubernetes.NewForConfig(restCfg)
			if err != nil {
				return err
			}
			cfg.Dynamic, err = dynamic.NewForConfig(restCfg)
			if err != nil {
				return err
			}
			cfg.Log = log
			c, err := controller.New(cfg)
			if err != nil {
				return err
			}
			return c.Run(cmd.Context())
		},
	}
	f := cmd.Flags()
	f.StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig to use outside a cluster (default: the in-cluster ServiceAccount)")
	f.StringVar(&cfg.Namespace, "namespace", meshnames.Namespace, "the control plane's namespace")
	f.StringVar(&cfg.TrustDomain, "trust-domain", meshnames.TrustDomain, "the mesh's trust domain")
	f.StringVar(&cfg.ControlAddr, "control-addr", fmt.Sprintf(":%d", meshnames.ControlPort), "control API address")
	f.StringVar(&cfg.AdminAddr, "admin-addr", fmt.Sprintf(":%d", meshnames.AdminPort), "admin address (/live, /ready, /metrics)")
	f.StringVar(&cfg.WebhookAddr, "webhook-addr", fmt.Sprintf(":%d", meshnames.WebhookPort), "proxy-injector webhook address (HTTPS)")
	f.StringVar(&cfg.AdminAPIAddr, "admin-api-addr", fmt.Sprintf(":%d", meshnames.AdminAPIPort), "aggregated admin API address (admin.meshctl.io: HTTPS with the webhook's certificate, for the API server's front proxy)")
	f.StringVar(&cfg.ClusterDomain, "cluster-domain", meshnames.ClusterDomain, "the cluster's DNS domain")
	f.StringVar(&cfg.Injector.ProxyImage, "proxy-image", "meshctl/proxy:"+version.Version, "the proxy image to inject (empty: no webhook)")
	f.StringVar(&cfg.Injector.ProxyVersion, "proxy-version", version.Version, "the injected proxy's version (label meshctl.io/proxy-version)")
	f.StringVar(&cfg.Injector.ImagePullPolicy, "proxy-image-pull-policy", "IfNotPresent", "pull policy of the injected proxy image: Always, IfNotPresent or Never")
	f.StringVar(&cfg.Injector.ClusterNetworks, "cluster-networks", meshnames.DefaultClusterNetworks, "the cluster's pod and Service networks (CIDRs), set on every injected proxy: a destination in them is never reached in plaintext until the controller says it is outside the mesh (annotation "+meshnames.ClusterNetworks+" overrides it per pod)")
	f.StringVar(&cfg.DefaultInboundPolicy, "default-inbound-policy", meshnames.DefaultAllUnauthenticated, "inbound policy of servers no AuthorizationPolicy or annotation speaks for: all-unauthenticated, all-authenticated or deny")
	f.DurationVar(&cfg.LeafLifetime, "leaf-lifetime", 24*time.Hour, "lifetime of workload certificates")
	f.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	f.StringVar(&logFormat, "log-format", "json", "json or text")
	return cmd
}

func loadKubeconfig(path string) (*rest.Config, error) {
	if path == "" {
		cfg, err := rest.InClusterConfig()
		if err != nil {
			return nil, fmt.Errorf("not in a cluster and no --kubeconfig: %w", err)
		}
		return cfg, nil
	}
	return clientcmd.BuildConfigFromFlags("", path)
}
