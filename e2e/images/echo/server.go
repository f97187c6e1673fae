package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/spf13/pflag"
	"google.golang.org/grpc"
)

// serverConfig is what the server's flags say.
type serverConfig struct {
	httpPorts, grpcPorts, tcpPorts, tlsPorts []int
	crt, key, version                        string
}

func parseServerFlags(args []string) (serverConfig, error) {
	var c serverConfig
	fs := pflag.NewFlagSet("server", pflag.ContinueOnError)
	fs.IntSliceVar(&c.httpPorts, "port", nil, "HTTP port (repeatable)")
	fs.IntSliceVar(&c.grpcPorts, "grpc", nil, "gRPC port (repeatable)")
	fs.IntSliceVar(&c.tcpPorts, "tcp", nil, "TCP echo port (repeatable)")
	fs.IntSliceVar(&c.tlsPorts, "tls", nil, "a --port served over TLS (repeatable)")
	fs.StringVar(&c.crt, "crt", "", "TLS certificate file (PEM)")
	fs.StringVar(&c.key, "key", "", "TLS key file (PEM)")
	fs.StringVar(&c.version, "version", "", "ServiceVersion to report")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if len(c.httpPorts)+len(c.grpcPorts)+len(c.tcpPorts) == 0 {
		c.httpPorts, c.grpcPorts, c.tcpPorts = []int{8080}, []int{7070}, []int{9090}
	}
	for _, p := range c.tlsPorts {
		if !slices.Contains(c.httpPorts, p) {
			return c, fmt.Errorf("--tls %d is not a --port", p)
		}
	}
	if len(c.tlsPorts) > 0 && (c.crt == "" || c.key == "") {
		return c, errors.New("--tls needs --crt and --key")
	}
	return c, nil
}

// serve runs the servers until ctx ends.
func serve(ctx context.Context, args []string) error {
	cfg, err := parseServerFlags(args)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	hostname, _ := os.Hostname()
	var tlsConf *tls.Config
	if len(cfg.tlsPorts) > 0 {
		cert, err := tls.LoadX509KeyPair(cfg.crt, cfg.key)
		if err != nil {
			return fmt.Errorf("loading the TLS pair: %w", err)
		}
		tlsConf = &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2", "http/1.1"}}
	}
	var (
		wg   sync.WaitGroup
		errs = make(chan error, len(cfg.httpPorts)+len(cfg.grpcPorts)+len(cfg.tcpPorts))
	)
	start := func(port int, run func(net.Listener) error) error {
		ln, err := net.Listen("tcp", ":"+strconv.Itoa(port))
		if err != nil {
			return err
		}
		log.Info("listening", "port", port)
		wg.Go(func() {
			if err := run(ln); err != nil && !errors.Is(err, net.ErrClosed) && !errors.Is(err, http.ErrServerClosed) {
				errs <- fmt.Errorf("port %d: %w", port, err)
			}
		})
		return nil
	}
	var closers []func()
	for _, port := range cfg.httpPorts {
		h := &echoHandler{port: port, hostname: hostname, version: cfg.version}
		srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
		srv.Protocols = new(http.Protocols)
		srv.Protocols.SetHTTP1(true)
		srv.Protocols.SetHTTP2(true)
		srv.Protocols.SetUnencryptedHTTP2(true)
		isTLS := slices.Contains(cfg.tlsPorts, port)
		if err := start(port, func(ln net.Listener) error {
			if isTLS {
				srv.TLSConfig = tlsConf
				return srv.ServeTLS(ln, "", "")
			}
			return srv.Serve(ln)
		}); err != nil {
			return err
		}
		closers = append(closers, func() {
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = srv.Shutdown(sctx)
		})
	}
	for _, port := range cfg.grpcPorts {
		srv := grpc.NewServer(grpc.ForceServerCodec(rawCodec{}))
		srv.RegisterService(echoServiceDesc(&grpcEcho{port: port, hostname: hostname, version: cfg.version}), nil)
		if err := start(port, srv.Serve); err != nil {
			return err
		}
		closers = append(closers, srv.GracefulStop)
	}
	for _, port := range cfg.tcpPorts {
		var ln net.Listener
		if err := start(port, func(l net.Listener) error { ln = l; return echoTCP(l) }); err != nil {
			return err
		}
		closers = append(closers, func() {
			if ln != nil {
				ln.Close()
			}
		})
	}
	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errs:
	}
	for _, c := range closers {
		c()
	}
	wg.Wait()
	return runErr
}

// echoHandler answers every request with what it saw.
type echoHandler struct {
	port              int
	hostname, version string
}

func (h *echoHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	_, _ = io.Copy(io.Discard, io.LimitReader(r.Body, 1<<20))
	ip, _, _ := net.SplitHostPort(r.RemoteAddr)
	var b strings.Builder
	writeField(&b, "ServiceVersion", h.version)
	writeField(&b, "ServicePort", strconv.Itoa(h.port))
	writeField(&b, "Host", r.Host)
	writeField(&b, "URL", r.URL.RequestURI())
	writeField(&b, "Method", r.Method)
	writeField(&b, "Proto", r.Proto)
	writeField(&b, "IP", ip)
	writeHeaders(&b, "RequestHeader", r.Header)
	writeField(&b, "Hostname", h.hostname)
	w.Header().Set("Content-Type", "text/plain")
	_, _ = io.WriteString(w, b.String())
}

// writeField writes one KEY=VALUE line.
func writeField(b *strings.Builder, key, value string) {
	b.WriteString(key)
	b.WriteByte('=')
	b.WriteString(value)
	b.WriteByte('\n')
}

// writeHeaders writes a KEY=Name:Value line per value, names sorted.
func writeHeaders(b *strings.Builder, key string, h http.Header) {
	names := make([]string, 0, len(h))
	for name := range h {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		for _, v := range h[name] {
			writeField(b, key, name+":"+v)
		}
	}
}

// echoTCP sends back what each connection sends.
func echoTCP(ln net.Listener) error {
	for {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		go func() {
			defer c.Close()
			_, _ = io.Copy(c, c)
		}()
	}
}
