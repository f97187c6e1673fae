// Command testapp is the workload of the end-to-end tests and the demo: a
// small HTTP server that says which pod answered, and a checker that runs
// inside a pod and reports, as JSON, what the pod's network and credentials
// can do (DNS, Service load balancing, the API server).
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

const usage = `usage:
  testapp serve [--listen :8080] [--grpc-listen :9090] [--call URL] [--call-grpc HOST:PORT]
                [--fail-every N] [--fail-rate F] [--delay D] [--slow-every N --slow-delay D]
                (POST /control?fail=true|false switches failing every request at run time)
  testapp check [--resolve NAME] [--get URL --requests N] [--apiserver]
  testapp load --url URL [--rps 10] [--concurrency 1] [--report 5s] [--count N] [--timeout 5s] [--linger D]
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:])
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "testapp:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	if len(args) == 0 {
		fmt.Fprint(os.Stderr, usage)
		return errors.New("a command is required")
	}
	switch args[0] {
	case "serve":
		fs := flag.NewFlagSet("serve", flag.ContinueOnError)
		listen := fs.String("listen", ":8080", "address to serve HTTP on")
		grpcListen := fs.String("grpc-listen", "", "also serve the gRPC health service on this address")
		privateListen := fs.String("private-listen", "", "also serve HTTP on this address, e.g. 127.0.0.1:9090 (a port meant for the pod only)")
		call := fs.String("call", "", "GET this URL for every request served (a frontend)")
		callGRPC := fs.String("call-grpc", "", "make a gRPC health check to this address for every request served")
		var b behaviour
		fs.IntVar(&b.failEvery, "fail-every", 0, "answer 500 to every Nth request (0: never)")
		fs.DurationVar(&b.delay, "delay", 0, "wait this long before answering")
		fs.IntVar(&b.slowEvery, "slow-every", 0, "wait --slow-delay instead for every Nth request")
		fs.DurationVar(&b.slowDelay, "slow-delay", 0, "the slow requests' wait")
		fs.Float64Var(&b.failRate, "fail-rate", 0, "answer 500 to this fraction of requests, at random (0..1)")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
		down, closeDown, err := newDownstream(*call, *callGRPC)
		if err != nil {
			return err
		}
		defer closeDown()
		down.behaviour = &b
		servers := []func(context.Context) error{func(ctx context.Context) error { return serve(ctx, *listen, down, log) }}
		if *grpcListen != "" {
			servers = append(servers, func(ctx context.Context) error { return serveGRPC(ctx, *grpcListen, log) })
		}
		if *privateListen != "" {
			servers = append(servers, func(ctx context.Context) error { return serve(ctx, *privateListen, down, log) })
		}
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		errc := make(chan error, len(servers))
		for _, srv := range servers {
			go func() { errc <- srv(ctx) }()
		}
		err = <-errc
		cancel() // one ended: end the others
		for range len(servers) - 1 {
			err = errors.Join(err, <-errc)
		}
		return err
	case "check":
		fs := flag.NewFlagSet("check", flag.ContinueOnError)
		var c checks
		fs.StringVar(&c.resolve, "resolve", "", "DNS name to resolve")
		fs.StringVar(&c.get, "get", "", "URL to GET repeatedly, each time on a new connection")
		fs.IntVar(&c.requests, "requests", 20, "how many GETs")
		fs.BoolVar(&c.apiserver, "apiserver", false, "ask the API server who this pod's ServiceAccount token says it is")
		fs.BoolVar(&c.anyBody, "any-body", false, "with --get: a 200 passes whatever its body (not this app's JSON reply)")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		report := c.run(ctx)
		if err := json.NewEncoder(os.Stdout).Encode(report); err != nil {
			return err
		}
		if len(report.Errors) > 0 {
			return fmt.Errorf("%d checks failed", len(report.Errors))
		}
		return nil
	case "load":
		fs := flag.NewFlagSet("load", flag.ContinueOnError)
		var l loader
		fs.StringVar(&l.url, "url", "", "URL to GET (required)")
		fs.Float64Var(&l.rps, "rps", 10, "requests per second, spread evenly")
		fs.DurationVar(&l.every, "report", 5*time.Second, "how often to print a summary line")
		fs.IntVar(&l.count, "count", 0, "stop after this many requests and print a final summary (0: run until stopped)")
		fs.IntVar(&l.concurrency, "concurrency", 1, "requests in flight at once (each worker keeps its own keep-alive connection)")
		fs.DurationVar(&l.timeout, "timeout", 5*time.Second, "give up on a request after this long")
		fs.DurationVar(&l.linger, "linger", 0, "after the final summary, stay up this long (so the pod's proxy can still be read)")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		return l.run(ctx, os.Stdout)
	default:
		fmt.Fprint(os.Stderr, usage)
		return fmt.Errorf("unknown command %q", args[0])
	}
}

// reply is what the server answers on every path but /healthz.
type reply struct {
	Pod    string `json:"pod"`
	Path   string `json:"path"`
	Method string `json:"method"`
	Proto  string `json:"proto"`
}

func serve(ctx context.Context, addr string, down *downstream, log *slog.Logger) error {
	host, _ := os.Hostname()
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("POST /control", func(w http.ResponseWriter, r *http.Request) {
		fail, err := strconv.ParseBool(r.URL.Query().Get("fail"))
		if err != nil {
			http.Error(w, "fail=true or fail=false", http.StatusBadRequest)
			return
		}
		down.behaviour.failAll.Store(fail)
		log.Info("control", "fail", fail)
		fmt.Fprintf(w, "fail=%v\n", fail)
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if status := down.behaviour.apply(r.Context()); status != http.StatusOK {
			http.Error(w, "failing on purpose", status)
			return
		}
		if err := down.call(r.Context()); err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(reply{Pod: host, Path: r.URL.Path, Method: r.Method, Proto: r.Proto})
	})
	srv := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	log.Info("serving", "addr", addr, "pod", host)
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return srv.Shutdown(shutdown)
}

// checks are the probes `testapp check` runs.
type checks struct {
	resolve   string
	get       string
	requests  int
	apiserver bool
	anyBody   bool // a 200 with any body passes (not the test app's JSON)
}

// report is the JSON `testapp check` prints.
type report struct {
	Resolved      []string       `json:"resolved,omitempty"`
	Backends      map[string]int `json:"backends,omitempty"`
	APIServerUser string         `json:"apiserver_user,omitempty"`
	Errors        []string       `json:"errors,omitempty"`
}

func (c checks) run(ctx context.Context) report {
	var r report
	fail := func(format string, args ...any) { r.Errors = append(r.Errors, fmt.Sprintf(format, args...)) }
	if c.resolve != "" {
		addrs, err := net.DefaultResolver.LookupHost(ctx, c.resolve)
		if err != nil {
			fail("resolve %s: %v", c.resolve, err)
		}
		r.Resolved = addrs
	}
	if c.get != "" {
		r.Backends = map[string]int{}
		client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
		for i := 0; i < c.requests; i++ {
			pod, err := getPod(ctx, client, c.get, c.anyBody)
			if err != nil {
				fail("GET %s: %v", c.get, err)
				continue
			}
			r.Backends[pod]++
		}
	}
	if c.apiserver {
		user, err := whoAmI(ctx)
		if err != nil {
			fail("API server: %v", err)
		}
		r.APIServerUser = user
	}
	return r
}

func getPod(ctx context.Context, client *http.Client, url string, anyBody bool) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("status %s", resp.Status)
	}
	if anyBody {
		return "", nil
	}
	var rep reply
	if err := json.NewDecoder(resp.Body).Decode(&rep); err != nil {
		return "", fmt.Errorf("decode reply: %w", err)
	}
	return rep.Pod, nil
}

// whoAmI posts a SelfSubjectReview with the pod's ServiceAccount token to the
// API server, found through cluster DNS, and returns the user it names.
func whoAmI(ctx context.Context) (string, error) {
	const dir = "/var/run/secrets/kubernetes.io/serviceaccount/"
	token, err := os.ReadFile(dir + "token")
	if err != nil {
		return "", err
	}
	caPEM, err := os.ReadFile(dir + "ca.crt")
	if err != nil {
		return "", err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return "", errors.New("no certificate in ca.crt")
	}
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	body := `{"apiVersion":"authentication.k8s.io/v1","kind":"SelfSubjectReview"}`
	req, err := http.NewRequestWithContext(ctx, http.MethodPost,
		"https://kubernetes.default.svc/apis/authentication.k8s.io/v1/selfsubjectreviews", strings.NewReader(body))
	if err != nil {
		return "", err
	}
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(token)))
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("status %s: %s", resp.Status, data)
	}
	var review struct {
		Status struct {
			UserInfo struct {
				Username string `json:"username"`
			} `json:"userInfo"`
		} `json:"status"`
	}
	if err := json.Unmarshal(data, &review); err != nil {
		return "", fmt.Errorf("decode review: %w", err)
	}
	return review.Status.UserInfo.Username, nil
}
