package harness

import (
	"fmt"
	"os"
	"path/filepath"
)

// Ports of the benchmark, all on loopback.
const (
	backendAddr = "127.0.0.1:10080"
)

// setup is one way of putting two proxy hops (or none) between the load
// generator and the backend.
type setup struct {
	name string
	// start launches the hops and returns them, with the URLs to load for
	// HTTP/1.1 and for h2c.
	start func(env *environment) (hops []*proc, h1URL, h2URL string, err error)
}

// environment is what every setup shares.
type environment struct {
	dir      string
	pki      *pki
	meshBin  string
	proxyCPU int
	// meshArgs are added to both mesh-proxy command lines.
	meshArgs []string
}

var setups = []setup{
	{name: "direct", start: func(*environment) ([]*proc, string, string, error) {
		return nil, "http://" + backendAddr + "/", "http://" + backendAddr + "/", nil
	}},
	{name: "meshctl", start: startMeshctl},
	{name: "nginx", start: startNginx},
	{name: "haproxy", start: startHAProxy},
}

// startMeshctl runs an outbound and an inbound mesh-proxy joined by mutual
// TLS, each with GOMAXPROCS=1 as a sidecar with one CPU would have.
func startMeshctl(env *environment) ([]*proc, string, string, error) {
	p := env.pki
	goEnv := []string{"GOMAXPROCS=1"}
	in, err := startPinned(env.dir, "meshctl-inbound", env.proxyCPU, goEnv, append([]string{env.meshBin, "run", "--log-level", "warn",
		"--admin", "127.0.0.1:14192", "--inbound-listen", "127.0.0.1:10002", "--inbound-upstream", backendAddr,
		"--cert", p.ServerCert, "--key", p.ServerKey, "--trust-roots", p.CA}, env.meshArgs...)...)
	if err != nil {
		return nil, "", "", err
	}
	out, err := startPinned(env.dir, "meshctl-outbound", env.proxyCPU, goEnv, append([]string{env.meshBin, "run", "--log-level", "warn",
		"--admin", "127.0.0.1:14191", "--outbound-listen", "127.0.0.1:10001", "--outbound-upstream", "127.0.0.1:10002",
		"--upstream-identity", p.ServerSPIFFE, "--cert", p.ClientCert, "--key", p.ClientKey, "--trust-roots", p.CA}, env.meshArgs...)...)
	if err != nil {
		in.stop()
		return nil, "", "", err
	}
	hops := []*proc{out, in}
	if err := waitAll(hops, "127.0.0.1:10001", "127.0.0.1:10002"); err != nil {
		return hops, "", "", err
	}
	return hops, "http://127.0.0.1:10001/", "http://127.0.0.1:10001/", nil
}

// nginx 1.22 (Debian bookworm): one worker each, keep-alive upstreams,
// access log off; the first instance speaks h2c on a second port.
const nginxOutbound = `worker_processes 1;
daemon off;
pid %[1]s/nginx-outbound.pid;
error_log stderr crit;
events { worker_connections 8192; }
http {
  access_log off;
  keepalive_requests 10000000;
  upstream hop { server 127.0.0.1:10012; keepalive 64; keepalive_requests 10000000; }
  server {
    listen 127.0.0.1:10011;
    listen 127.0.0.1:10013 http2;
    location / {
      proxy_pass https://hop;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_ssl_protocols TLSv1.3;
      proxy_ssl_certificate %[2]s;
      proxy_ssl_certificate_key %[3]s;
      proxy_ssl_trusted_certificate %[4]s;
      proxy_ssl_verify on;
      proxy_ssl_name %[5]s;
      proxy_ssl_server_name on;
      proxy_ssl_session_reuse on;
    }
  }
}
`

const nginxInbound = `worker_processes 1;
daemon off;
pid %[1]s/nginx-inbound.pid;
error_log stderr crit;
events { worker_connections 8192; }
http {
  access_log off;
  keepalive_requests 10000000;
  upstream app { server %[2]s; keepalive 64; keepalive_requests 10000000; }
  server {
    listen 127.0.0.1:10012 ssl;
    ssl_protocols TLSv1.3;
    ssl_certificate %[3]s;
    ssl_certificate_key %[4]s;
    ssl_client_certificate %[5]s;
    ssl_verify_client on;
    ssl_session_cache shared:bench:1m;
    location / {
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
`

func startNginx(env *environment) ([]*proc, string, string, error) {
	p := env.pki
	confs := map[string]string{
		"nginx-inbound":  fmt.Sprintf(nginxInbound, env.dir, backendAddr, p.ServerCert, p.ServerKey, p.CA),
		"nginx-outbound": fmt.Sprintf(nginxOutbound, env.dir, p.ClientCert, p.ClientKey, p.CA, p.ServerDNS),
	}
	var hops []*proc
	for _, name := range []string{"nginx-outbound", "nginx-inbound"} {
		prefix := filepath.Join(env.dir, name)
		if err := os.MkdirAll(prefix, 0o755); err != nil {
			return hops, "", "", err
		}
		conf := filepath.Join(env.dir, name+".conf")
		if err := os.WriteFile(conf, []byte(confs[name]), 0o644); err != nil {
			return hops, "", "", err
		}
		pr, err := startPinned(env.dir, name, env.proxyCPU, nil, "nginx", "-p", prefix, "-c", conf, "-e", "stderr")
		if err != nil {
			return hops, "", "", err
		}
		hops = append(hops, pr)
	}
	if err := waitAll(hops, "127.0.0.1:10011", "127.0.0.1:10012", "127.0.0.1:10013"); err != nil {
		return hops, "", "", err
	}
	return hops, "http://127.0.0.1:10011/", "http://127.0.0.1:10013/", nil
}

// HAProxy 2.6 (Debian bookworm): one thread each, connection reuse to the
// next hop, no logging; the first instance speaks h2c on a second port.
const haproxyOutbound = `global
  nbthread 1
  maxconn 8000
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  timeout http-keep-alive 60s
  http-reuse always
frontend f
  bind 127.0.0.1:10021
  bind 127.0.0.1:10023 proto h2
  default_backend hop
backend hop
  server s1 127.0.0.1:10022 ssl crt %[1]s ca-file %[2]s verify required verifyhost %[3]s sni str(%[3]s) ssl-min-ver TLSv1.3 alpn http/1.1
`

const haproxyInbound = `global
  nbthread 1
  maxconn 8000
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  timeout http-keep-alive 60s
  http-reuse always
frontend f
  bind 127.0.0.1:10022 ssl crt %[1]s ca-file %[2]s verify required ssl-min-ver TLSv1.3 alpn http/1.1
  default_backend app
backend app
  server s1 %[3]s
`

func startHAProxy(env *environment) ([]*proc, string, string, error) {
	p := env.pki
	confs := map[string]string{
		"haproxy-inbound":  fmt.Sprintf(haproxyInbound, p.ServerBundle, p.CA, backendAddr),
		"haproxy-outbound": fmt.Sprintf(haproxyOutbound, p.ClientBundle, p.CA, p.ServerDNS),
	}
	var hops []*proc
	for _, name := range []string{"haproxy-outbound", "haproxy-inbound"} {
		conf := filepath.Join(env.dir, name+".cfg")
		if err := os.WriteFile(conf, []byte(confs[name]), 0o644); err != nil {
			return hops, "", "", err
		}
		pr, err := startPinned(env.dir, name, env.proxyCPU, nil, "haproxy", "-db", "-f", conf)
		if err != nil {
			return hops, "", "", err
		}
		hops = append(hops, pr)
	}
	if err := waitAll(hops, "127.0.0.1:10021", "127.0.0.1:10022", "127.0.0.1:10023"); err != nil {
		return hops, "", "", err
	}
	return hops, "http://127.0.0.1:10021/", "http://127.0.0.1:10023/", nil
}

func waitAll(hops []*proc, addrs ...string) error {
	for _, a := range addrs {
		if err := waitPort(a, 15*1e9); err != nil {
			var logs string
			for _, h := range hops {
				data, _ := os.ReadFile(h.log)
				logs += fmt.Sprintf("\n--- %s:\n%s", h.name, data)
			}
			return fmt.Errorf("%w%s", err, logs)
		}
	}
	return nil
}
