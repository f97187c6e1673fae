package cli

import (
	"errors"
	"fmt"
	"time"

	"github.com/spf13/pflag"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// kubeOptions are kubectl's connection flags: --kubeconfig (else
// $KUBECONFIG, else ~/.kube/config), --context and -n/--namespace.
type kubeOptions struct {
	kubeconfig string
	context    string
	namespace  string
}

func (k *kubeOptions) addFlags(fs *pflag.FlagSet) {
	fs.StringVar(&k.kubeconfig, "kubeconfig", "", "path to the kubeconfig file (default: $KUBECONFIG, then ~/.kube/config)")
	fs.StringVar(&k.context, "context", "", "the kubeconfig context to use (default: its current context)")
}

func (k *kubeOptions) addNamespaceFlag(fs *pflag.FlagSet, usage string) {
	fs.StringVarP(&k.namespace, "namespace", "n", "", usage)
}

func (k *kubeOptions) clientConfig() clientcmd.ClientConfig {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = k.kubeconfig
	overrides := &clientcmd.ConfigOverrides{CurrentContext: k.context}
	if k.namespace != "" {
		overrides.Context.Namespace = k.namespace
	}
	return clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, overrides)
}

// restConfig loads the cluster's connection, saying what to do when there is none.
func (k *kubeOptions) restConfig() (*rest.Config, error) {
	cfg, err := k.clientConfig().ClientConfig()
	if err != nil {
		if clientcmd.IsEmptyConfig(err) {
			return nil, errors.New("no Kubernetes cluster configured: pass --kubeconfig, set KUBECONFIG, or write ~/.kube/config")
		}
		return nil, fmt.Errorf("load the kubeconfig: %w", err)
	}
	cfg.Timeout = 30 * time.Second
	cfg.QPS, cfg.Burst = 50, 100
	return cfg, nil
}

// kubeClients are the clients of one cluster, all built from one rest
// config: the typed clientset, the dynamic client and the metadata client.
type kubeClients struct {
	config   *rest.Config
	typed    kubernetes.Interface
	dynamic  dynamic.Interface
	metadata metadata.Interface
}

// clients connects to the configured cluster: the one place meshctl builds
// its Kubernetes clients (30s request timeout, QPS 50, burst 100). Nothing
// is sent to the cluster yet.
func (k *kubeOptions) clients() (*kubeClients, error) {
	cfg, err := k.restConfig()
	if err != nil {
		return nil, err
	}
	return newKubeClients(cfg)
}

// streamClients are clients for long streams (tap): no overall request
// timeout, which would cut a stream after it.
func (k *kubeOptions) streamClients() (*kubeClients, error) {
	cfg, err := k.restConfig()
	if err != nil {
		return nil, err
	}
	cfg.Timeout = 0
	return newKubeClients(cfg)
}

func newKubeClients(cfg *rest.Config) (*kubeClients, error) {
	typed, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("dynamic client: %w", err)
	}
	meta, err := metadata.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("metadata client: %w", err)
	}
	return &kubeClients{config: cfg, typed: typed, dynamic: dyn, metadata: meta}, nil
}

// contextName is the kubeconfig context in use ("" when unknown).
func (k *kubeOptions) contextName() string {
	if k.context != "" {
		return k.context
	}
	raw, err := k.clientConfig().RawConfig()
	if err != nil {
		return ""
	}
	return raw.CurrentContext
}

// defaultNamespace is -n, else the context's namespace, else "default".
func (k *kubeOptions) defaultNamespace() string {
	ns, _, err := k.clientConfig().Namespace()
	if err != nil || ns == "" {
		return "default"
	}
	return ns
}
