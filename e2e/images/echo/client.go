package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/spf13/pflag"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
)

// concurrency is how many requests of a batch are in flight at once (as
// Istio's client).
const concurrency = 20

// clientConfig is what the client's arguments say.
type clientConfig struct {
	url     *url.URL
	method  string
	headers []string
	count   int
	timeout time.Duration
}

func parseClientFlags(args []string) (clientConfig, error) {
	var c clientConfig
	fs := pflag.NewFlagSet("client", pflag.ContinueOnError)
	fs.StringVar(&c.method, "method", "GET", "HTTP method")
	fs.StringArrayVarP(&c.headers, "header", "H", nil, "header to send, Name:Value (repeatable; Host sets the authority)")
	fs.IntVar(&c.count, "count", 1, "requests to send")
	fs.DurationVar(&c.timeout, "timeout", 5*time.Second, "time each request may take")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() != 1 {
		return c, fmt.Errorf("want one URL, got %q", fs.Args())
	}
	u, err := url.Parse(fs.Arg(0))
	if err != nil {
		return c, fmt.Errorf("bad URL: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "grpc" {
		return c, fmt.Errorf("bad URL %q: want http:// or grpc://", fs.Arg(0))
	}
	if c.count < 1 || c.count > 100000 {
		return c, fmt.Errorf("--count %d: want 1 to 100000", c.count)
	}
	for _, h := range c.headers {
		if name, _, ok := strings.Cut(h, ":"); !ok || name == "" {
			return c, fmt.Errorf("bad header %q: want Name:Value", h)
		}
	}
	c.url = u
	return c, nil
}

// client sends the requests and prints a block per answer, in order; it
// fails if any request got no answer.
func client(ctx context.Context, args []string, out io.Writer) error {
	cfg, err := parseClientFlags(args)
	if err != nil {
		return err
	}
	var do func(ctx context.Context, i int) (string, error)
	if cfg.url.Scheme == "grpc" {
		cc, err := grpc.NewClient(cfg.url.Host, grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithDefaultCallOptions(grpc.ForceCodec(rawCodec{})))
		if err != nil {
			return err
		}
		defer cc.Close()
		do = func(ctx context.Context, i int) (string, error) { return grpcCall(ctx, cc, cfg, i) }
	} else {
		hc := &http.Client{
			Transport:     &http.Transport{DisableKeepAlives: true, Proxy: nil},
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
		defer hc.CloseIdleConnections()
		do = func(ctx context.Context, i int) (string, error) { return httpCall(ctx, hc, cfg, i) }
	}
	blocks := make([]string, cfg.count)
	errs := make([]error, cfg.count)
	sem := make(chan struct{}, concurrency)
	var wg sync.WaitGroup
	for i := range cfg.count {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			rctx, cancel := context.WithTimeout(ctx, cfg.timeout)
			defer cancel()
			blocks[i], errs[i] = do(rctx, i)
		})
	}
	wg.Wait()
	if _, err := io.WriteString(out, strings.Join(blocks, "\n")); err != nil {
		return err
	}
	return errors.Join(errs...)
}

// httpCall sends request i and describes its answer.
func httpCall(ctx context.Context, hc *http.Client, cfg clientConfig, i int) (string, error) {
	req, err := http.NewRequestWithContext(ctx, cfg.method, cfg.url.String(), nil)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "[%d] Url=%s\n", i, cfg.url)
	for _, h := range cfg.headers {
		name, value, _ := strings.Cut(h, ":")
		if strings.EqualFold(name, "Host") {
			req.Host = value
		} else {
			req.Header.Add(name, value)
		}
		fmt.Fprintf(&b, "[%d] Header=%s\n", i, h)
	}
	res, err := hc.Do(req)
	if err != nil {
		return "", fmt.Errorf("request %d: %w", i, err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	if err != nil {
		return "", fmt.Errorf("request %d: reading the body: %w", i, err)
	}
	fmt.Fprintf(&b, "[%d] StatusCode=%d\n", i, res.StatusCode)
	names := make([]string, 0, len(res.Header))
	for name := range res.Header {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		for _, v := range res.Header[name] {
			fmt.Fprintf(&b, "[%d] ResponseHeader=%s:%s\n", i, name, v)
		}
	}
	writeBody(&b, i, string(body))
	return b.String(), nil
}

// grpcCall makes call i and describes its answer.
func grpcCall(ctx context.Context, cc *grpc.ClientConn, cfg clientConfig, i int) (string, error) {
	for _, h := range cfg.headers {
		name, value, _ := strings.Cut(h, ":")
		ctx = metadata.AppendToOutgoingContext(ctx, strings.ToLower(name), value)
	}
	var res echoMessage
	if err := cc.Invoke(ctx, echoMethod, &echoMessage{message: "hello"}, &res); err != nil {
		return "", fmt.Errorf("call %d: %w", i, err)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "[%d] grpcecho.Echo(%s)\n", i, cfg.url.Host)
	writeBody(&b, i, res.message)
	return b.String(), nil
}

// writeBody writes "[i body] LINE" per non-empty line, so that no blank
// line splits a block.
func writeBody(b *strings.Builder, i int, body string) {
	for line := range strings.SplitSeq(body, "\n") {
		if line = strings.TrimRight(line, "\r"); line != "" {
			fmt.Fprintf(b, "[%d body] %s\n", i, line)
		}
	}
}
