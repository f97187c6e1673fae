package localcluster

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"k8s.io/client-go/tools/clientcmd"

	"github.com/meshctl/meshctl/internal/selfsign"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// certLifetime is long enough for any test run; Up makes new keys every time.
const certLifetime = 30 * 24 * time.Hour

// clientCert is a client certificate the control plane accepts, and the
// kubeconfig written for it.
type clientCert struct {
	name   string // file and kubeconfig name
	user   string // certificate CN: the Kubernetes user name
	groups []string
}

var clientCerts = []clientCert{
	{"admin", "meshctl-admin", []string{"system:masters"}},
	{"apiserver-kubelet-client", "kube-apiserver-kubelet-client", []string{"system:masters"}},
	{"controller-manager", "system:kube-controller-manager", nil},
	{"scheduler", "system:kube-scheduler", nil},
	{"kubelet", "system:node:" + NodeName, []string{"system:nodes"}},
	{"kube-proxy", "system:kube-proxy", nil},
}

// writePKI creates the cluster CA, the API server's serving certificate, every
// component's client certificate and kubeconfig, the front proxy's CA and
// client certificate, and the service-account keys.
func writePKI(p paths) error {
	for _, d := range []string{filepath.Dir(p.pki("x")), filepath.Dir(p.kubeconfig("x"))} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return fmt.Errorf("create %s: %w", d, err)
		}
	}
	caKey, err := selfsign.NewKey()
	if err != nil {
		return fmt.Errorf("CA key: %w", err)
	}
	caTmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: "meshctl-local-cluster-ca"},
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
	}
	caCert, err := sign(caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return fmt.Errorf("sign CA: %w", err)
	}
	if err := writeCertAndKey(p.pki("ca"), caCert, caKey); err != nil {
		return err
	}

	serving := &x509.Certificate{
		Subject:     pkix.Name{CommonName: "kube-apiserver"},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames: []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
			"kubernetes.default.svc." + ClusterDomain},
		IPAddresses: []net.IP{net.ParseIP(NodeIP), net.ParseIP(APIServiceIP), net.IPv4(127, 0, 0, 1)},
	}
	if err := issue(p.pki("apiserver"), serving, caCert, caKey); err != nil {
		return err
	}
	server := fmt.Sprintf("https://%s:%d", NodeIP, apiPort)
	for _, c := range clientCerts {
		tmpl := &x509.Certificate{
			Subject:     pkix.Name{CommonName: c.user, Organization: c.groups},
			KeyUsage:    x509.KeyUsageDigitalSignature,
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		}
		if err := issue(p.pki(c.name), tmpl, caCert, caKey); err != nil {
			return err
		}
		if err := writeKubeconfig(p.kubeconfig(c.name), server, p.pki("ca.crt"), p.pki(c.name+".crt"), p.pki(c.name+".key"), c.name); err != nil {
			return err
		}
	}

	if err := writeFrontProxyPKI(p); err != nil {
		return err
	}
	saKey, err := selfsign.NewKey()
	if err != nil {
		return fmt.Errorf("service-account key: %w", err)
	}
	keyPEM, err := selfsign.ECKeyPEM(saKey)
	if err != nil {
		return fmt.Errorf("service-account key: %w", err)
	}
	pubDER, err := x509.MarshalPKIXPublicKey(&saKey.PublicKey)
	if err != nil {
		return fmt.Errorf("encode service-account public key: %w", err)
	}
	if err := selfsign.WriteFile(p.pki("sa.key"), keyPEM, 0o600); err != nil {
		return err
	}
	return selfsign.WriteFile(p.pki("sa.pub"), pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER}), 0o644)
}

// FrontProxyClientName is the common name of the API server's front-proxy
// client certificate (--requestheader-allowed-names): what it presents to
// aggregated API servers, such as the mesh controller's admin API.
const FrontProxyClientName = "front-proxy-client"

// frontProxyFiles are the front proxy's CA and client certificate (.crt, .key).
var frontProxyFiles = []string{"front-proxy-ca", "front-proxy-client"}

// writeFrontProxyPKI makes the front proxy's own CA (as kubeadm does: not
// the cluster CA, so no cluster client certificate can pass for the front
// proxy) and the client certificate the API server proxies aggregated
// requests with.
func writeFrontProxyPKI(p paths) error {
	key, err := selfsign.NewKey()
	if err != nil {
		return fmt.Errorf("front-proxy CA key: %w", err)
	}
	tmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: "meshctl-local-front-proxy-ca"},
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
	}
	ca, err := sign(tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return fmt.Errorf("sign front-proxy CA: %w", err)
	}
	if err := writeCertAndKey(p.pki("front-proxy-ca"), ca, key); err != nil {
		return err
	}
	return issue(p.pki("front-proxy-client"), &x509.Certificate{
		Subject:     pkix.Name{CommonName: FrontProxyClientName},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}, ca, key)
}

// FrontProxyClientFiles are the API server's front-proxy client certificate
// and key: tests present them to an aggregated API server as the API server
// does.
func (c Config) FrontProxyClientFiles() (cert, key string) {
	c, _ = c.withDefaults()
	p := paths{c}
	return p.pki("front-proxy-client.crt"), p.pki("front-proxy-client.key")
}

// ensureFrontProxyPKI gives a state directory made before the front proxy
// existed its front-proxy files, leaving every other file as it is (the
// running cluster's certificates stay valid); complete sets are kept.
func ensureFrontProxyPKI(p paths) (made bool, err error) {
	for _, base := range frontProxyFiles {
		for _, ext := range []string{".crt", ".key"} {
			if !fileExists(p.pki(base + ext)) {
				return true, writeFrontProxyPKI(p)
			}
		}
	}
	return false, nil
}

// issue signs tmpl with the CA and writes base.crt and base.key.
func issue(base string, tmpl, ca *x509.Certificate, caKey crypto.Signer) error {
	key, err := selfsign.NewKey()
	if err != nil {
		return fmt.Errorf("key for %s: %w", base, err)
	}
	cert, err := sign(tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return fmt.Errorf("sign %s: %w", base, err)
	}
	return writeCertAndKey(base, cert, key)
}

// sign signs tmpl, valid from an hour ago for certLifetime.
func sign(tmpl, parent *x509.Certificate, pub crypto.PublicKey, signer crypto.Signer) (*x509.Certificate, error) {
	return selfsign.Sign(tmpl, parent, pub, signer, -time.Hour, certLifetime)
}

// writeCertAndKey writes base.crt and base.key (SEC 1, 0600).
func writeCertAndKey(base string, cert *x509.Certificate, key *ecdsa.PrivateKey) error {
	keyPEM, err := selfsign.ECKeyPEM(key)
	if err != nil {
		return fmt.Errorf("%s: %w", base, err)
	}
	if err := selfsign.WriteFile(base+".crt", selfsign.CertPEM(cert), 0o644); err != nil {
		return err
	}
	return selfsign.WriteFile(base+".key", keyPEM, 0o600)
}

// writeKubeconfig writes a kubeconfig with the certificates embedded, so it
// can be copied anywhere.
func writeKubeconfig(path, server, caFile, certFile, keyFile, user string) error {
	ca, err := os.ReadFile(caFile)
	if err != nil {
		return fmt.Errorf("read %s: %w", caFile, err)
	}
	cert, err := os.ReadFile(certFile)
	if err != nil {
		return fmt.Errorf("read %s: %w", certFile, err)
	}
	key, err := os.ReadFile(keyFile)
	if err != nil {
		return fmt.Errorf("read %s: %w", keyFile, err)
	}
	const name = "meshctl-local"
	kc := clientcmdapi.NewConfig()
	kc.Clusters[name] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: ca}
	kc.AuthInfos[user] = &clientcmdapi.AuthInfo{ClientCertificateData: cert, ClientKeyData: key}
	kc.Contexts[name] = &clientcmdapi.Context{Cluster: name, AuthInfo: user, Namespace: "default"}
	kc.CurrentContext = name
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		return fmt.Errorf("write kubeconfig %s: %w", path, err)
	}
	return nil
}
