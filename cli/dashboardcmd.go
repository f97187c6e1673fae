package cli

import (
	"context"
	"errors"
	"fmt"
	"html"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"strconv"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/meshctl/meshctl/cli/dashboard"
	"github.com/meshctl/meshctl/internal/command"
	"github.com/meshctl/meshctl/internal/version"
)

// dashboardPort is the dashboard's default port.
const dashboardPort = 50750

// dashboardTokenEnv names the variable that sets the dashboard's token
// (scripts that call its API); without it each run makes a new one.
const dashboardTokenEnv = "MESHCTL_DASHBOARD_TOKEN"

// dashboardToken is what a token given in dashboardTokenEnv must look like.
var dashboardToken = regexp.MustCompile(`^[A-Za-z0-9._~-]{16,256}$`)

type dashboardOptions struct {
	kube          kubeOptions
	allNamespaces bool
	address       string
	port          int
	noBrowser     bool
	refresh       time.Duration
}

func (o *dashboardOptions) validate() error {
	ip := net.ParseIP(o.address)
	if ip == nil {
		return fmt.Errorf("--address %q: want an IP address, e.g. 127.0.0.1 (the default) or 0.0.0.0", o.address)
	}
	if o.port < 0 || o.port > 65535 {
		return fmt.Errorf("--port %d: want 0 (any free port) to 65535", o.port)
	}
	if o.refresh < time.Second {
		return errors.New("--refresh must be at least 1s")
	}
	if o.allNamespaces && o.kube.namespace != "" {
		return errors.New("give -n NAMESPACE or -A, not both")
	}
	return nil
}

func newDashboardCommand(g *globalOptions) *cobra.Command {
	o := &dashboardOptions{}
	cmd := &cobra.Command{
		Use:   "dashboard",
		Short: "Show the mesh in a browser: topology, golden metrics, identity, live requests",
		Long: `Start a web server inside this process and open the browser on it: the topology
of a namespace (workloads, who calls whom with requests/s, success rate, p99 and
a padlock for mutual TLS; HTTPRoute splits with their weights), a page per
workload (golden metrics over time, pods, policies, routes, a live tap), the
mesh's certificates and which proxies still run on an old issuer, and the
result of meshctl check.

It reads the mesh as stat, edges, tap and check do, through the API server with
your credentials: nothing is installed in the cluster, no Prometheus is needed,
and it shows only what your RBAC lets you see. It is read-only. Metrics are
scraped every --refresh from the namespaces the page shows; time series start
when the dashboard does and keep an hour.

It listens on 127.0.0.1 and serves only requests addressed to that address
(a defence against DNS rebinding) that carry its token: other users of this
machine reach 127.0.0.1 too. The address it prints holds the token after the
"#" (a new one each run, or $MESHCTL_DASHBOARD_TOKEN), where the browser never
sends it; the page keeps it for its tab only (no cookie, which the browser
would hand to every port of 127.0.0.1), and scripts send "Authorization:
Bearer TOKEN". With --address 0.0.0.0 anyone who
reaches the port and has the token sees what your credentials see. Stop it
with Ctrl-C.`,
		Example: `  meshctl dashboard -n demo
  meshctl dashboard -A --no-browser --port 8084
  export MESHCTL_DASHBOARD_TOKEN=$(head -c 16 /dev/urandom | base64 | tr -d '/+=')
  meshctl dashboard --no-browser &
  curl -s -H "Authorization: Bearer $MESHCTL_DASHBOARD_TOKEN" \
    'http://127.0.0.1:50750/api/graph?namespace=demo&format=dot' | dot -Tsvg > mesh.svg`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.validate(); err != nil {
				return command.Usage(err)
			}
			return runDashboard(cmd.Context(), o, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	f := cmd.Flags()
	o.kube.use(g)
	o.kube.addNamespaceFlag(f, "the namespace shown first (default: the context's)")
	f.BoolVarP(&o.allNamespaces, "all-namespaces", "A", false, "show every namespace first")
	f.StringVar(&o.address, "address", "127.0.0.1", "IP address to listen on")
	f.IntVar(&o.port, "port", dashboardPort, "port to listen on (0: any free port)")
	f.BoolVar(&o.noBrowser, "no-browser", false, "print the URL, do not open a browser")
	f.DurationVar(&o.refresh, "refresh", 5*time.Second, "how often metrics are scraped")
	return cmd
}

func runDashboard(ctx context.Context, o *dashboardOptions, stdout, stderr io.Writer) error {
	kc, err := o.kube.clients()
	if err != nil {
		return err
	}
	streams, err := o.kube.streamClients()
	if err != nil {
		return err
	}
	ns := ""
	if !o.allNamespaces {
		ns = o.kube.defaultNamespace()
	}
	src := &kubeSource{kc: kc, streams: streams, controlNS: o.kube.controlNS()}
	if _, err := src.Namespaces(ctx); err != nil {
		return fmt.Errorf("cannot read the cluster: %w", err)
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(o.address, strconv.Itoa(o.port)))
	if err != nil {
		return fmt.Errorf("listen on %s:%d (is another dashboard running? try --port 0): %w", o.address, o.port, err)
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	collector := &dashboard.Collector{Source: src, Interval: o.refresh, Log: log}
	token := os.Getenv(dashboardTokenEnv)
	if token == "" {
		token = dashboard.NewToken()
	} else if !dashboardToken.MatchString(token) {
		return fmt.Errorf("$%s: want at least 16 letters, digits, '-', '_', '.' or '~' (it goes in a URL and a header)", dashboardTokenEnv)
	}
	server := &dashboard.Server{Collector: collector, Source: src, Namespace: ns, AllNamespaces: o.allNamespaces, Version: version.Version, Log: log, Token: token}
	link := dashboardURL(ln.Addr(), ns, o.allNamespaces, token)
	if ip := net.ParseIP(o.address); !ip.IsLoopback() {
		fmt.Fprintf(stderr, "warning: listening on %s: anyone who reaches this port sees what your Kubernetes credentials see\n", ln.Addr())
		if ip.IsUnspecified() {
			// Browsers must use an address the server accepts as Host.
			_, port, _ := net.SplitHostPort(ln.Addr().String())
			server.SetHosts(append(dashboard.LoopbackHosts(port), hostsOfInterfaces(port)...))
		}
	}
	fmt.Fprintf(stdout, "meshctl dashboard is at %s\n", link)
	fmt.Fprintln(stdout, "Press Ctrl-C to stop.")
	if !o.noBrowser {
		// The browser gets a file only this user can read that leads to
		// the address: the token in a command line would be in every
		// user's process list.
		opener, err := launchFile(link)
		if err == nil {
			defer os.Remove(opener)
			err = openBrowser("file://" + opener)
		}
		if err != nil {
			fmt.Fprintf(stderr, "could not open a browser (%v): open the address above\n", err)
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		_ = collector.Run(ctx)
	}()
	err = server.Serve(ctx, ln)
	cancel()
	wg.Wait()
	return err
}

// dashboardURL is the address to open, with the token: the topology of
// the namespace.
func dashboardURL(addr net.Addr, ns string, all bool, token string) string {
	host, port, _ := net.SplitHostPort(addr.String())
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	u := url.URL{Scheme: "http", Host: net.JoinHostPort(host, port), Path: "/"}
	q := url.Values{}
	if !all {
		q.Set("namespace", ns)
	}
	// In the fragment, which the browser never sends: see dashboard.TokenParam.
	q.Set(dashboard.TokenParam, token)
	u.Fragment = "/topology?" + q.Encode()
	return u.String()
}

// hostsOfInterfaces are host:port for every address of the machine's
// interfaces (a server on 0.0.0.0 is reached by any of them).
func hostsOfInterfaces(port string) []string {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil
	}
	var out []string
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			out = append(out, net.JoinHostPort(n.IP.String(), port))
		}
	}
	return out
}

// launchFile writes a page that sends the browser to link into a new
// file only this user can read (0600), and returns its path.
func launchFile(link string) (string, error) {
	f, err := os.CreateTemp("", "meshctl-dashboard-*.html")
	if err != nil {
		return "", err
	}
	page := fmt.Sprintf("<!doctype html><meta charset=\"utf-8\"><meta http-equiv=\"refresh\" content=\"0;url=%s\"><a href=\"%s\">meshctl dashboard</a>\n",
		html.EscapeString(link), html.EscapeString(link))
	if _, err := f.WriteString(page); err != nil {
		f.Close()
		os.Remove(f.Name())
		return "", err
	}
	return f.Name(), f.Close()
}

// openBrowser opens link in the user's browser.
func openBrowser(link string) error {
	name := "xdg-open"
	switch runtime.GOOS {
	case "darwin":
		name = "open"
	case "windows":
		return errors.New("not supported on Windows")
	}
	path, err := exec.LookPath(name)
	if err != nil {
		return fmt.Errorf("%s not found", name)
	}
	cmd := exec.Command(path, link)
	if err := cmd.Start(); err != nil {
		return err
	}
	go cmd.Wait() //nolint:errcheck // reaps the opener, which exits at once
	return nil
}
