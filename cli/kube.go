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

	"github.com/meshctl/meshctl/internal/meshnames"
)

// globalOptions are the root command's flags, which every command takes:
// kubectl's --kubeconfig (else $KUBECONFIG, else ~/.kube/config) and
// --context, and --control-plane-namespace.
type globalOptions struct {
	kubeconfig string
	context    string
	controlNS  string
}

func (g *globalOptions) addFlags(fs *pflag.FlagSet) {
	fs.StringVar(&g.kubeconfig, "kubeconfig", "", "path to the kubeconfig file (default: $KUBECONFIG, then ~/.kube/config)")
	fs.StringVar(&g.context, "context", "", "the kubeconfig context to use (default: its current context)")
	fs.StringVar(&g.controlNS, "control-plane-namespace", meshnames.Namespace, "namespace of meshctl's control plane")
}

// kubeOptions are a command's connection: the root's flags and its own
// -n/--namespace, where it has one.
type kubeOptions struct {
	global    *globalOptions
	namespace string
}

// use makes the command connect with the root's flags.
func (k *kubeOptions) use(g *globalOptions) { k.global = g }

// flags are the root's flags (their defaults when the command was built
// without a root, as some tests do).
func (k *kubeOptions) flags() globalOptions {
	var g globalOptions
	if k.global != nil {
		g = *k.global
	}
	if g.controlNS == "" {
		g.controlNS = meshnames.Namespace
	}
	return g
}

// controlNS is the control plane's namespace (--control-plane-namespace).
func (k *kubeOptions) controlNS() string { return k.flags().controlNS }

func (k *kubeOptions) addNamespaceFlag(fs *pflag.FlagSet, usage string) {
	fs.StringVarP(&k.namespace, "namespace", "n", "", usage)
}

func (k *kubeOptions) clientConfig() clientcmd.ClientConfig {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	g := k.flags()
	rules.ExplicitPath = g.kubeconfig
	overrides := &clientcmd.ConfigOverrides{CurrentContext: g.context}
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
	if c := k.flags().context; c != "" {
		return c
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
