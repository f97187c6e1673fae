// Package spiffeid parses and builds the SPIFFE IDs meshctl gives workloads:
// spiffe://<trust-domain>/ns/<namespace>/sa/<serviceaccount>. It has no
// dependencies, so the proxy links it freely.
package spiffeid

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// ID is a workload's SPIFFE ID.
type ID struct {
	TrustDomain    string
	Namespace      string
	ServiceAccount string
}

// New returns the ID of a ServiceAccount, validated.
func New(trustDomain, namespace, serviceAccount string) (ID, error) {
	id := ID{TrustDomain: trustDomain, Namespace: namespace, ServiceAccount: serviceAccount}
	return id, id.Validate()
}

// Validate checks the parts: a trust domain of lowercase letters, digits,
// dots, dashes and underscores; namespace and ServiceAccount names as
// Kubernetes allows them (DNS subdomain characters).
func (id ID) Validate() error {
	if id.TrustDomain == "" || len(id.TrustDomain) > 255 {
		return errors.New("trust domain must be 1 to 255 characters")
	}
	for _, c := range id.TrustDomain {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_') {
			return fmt.Errorf("trust domain %q: character %q is not allowed (lowercase letters, digits, '.', '-', '_')", id.TrustDomain, c)
		}
	}
	// In a fixed order (not a map's), so that the same ID always gets the
	// same error: policies' errors are compared and reported from it.
	for _, part := range [...]struct{ what, v string }{{"namespace", id.Namespace}, {"service account", id.ServiceAccount}} {
		what, v := part.what, part.v
		if v == "" || len(v) > 253 {
			return fmt.Errorf("%s must be 1 to 253 characters", what)
		}
		for _, c := range v {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '-') {
				return fmt.Errorf("%s %q: character %q is not allowed", what, v, c)
			}
		}
	}
	return nil
}

// String returns the URI form.
func (id ID) String() string {
	return "spiffe://" + id.TrustDomain + "/ns/" + id.Namespace + "/sa/" + id.ServiceAccount
}

// URL returns the URI form as a URL, as carried in a certificate's URI SAN.
func (id ID) URL() *url.URL {
	return &url.URL{Scheme: "spiffe", Host: id.TrustDomain, Path: "/ns/" + id.Namespace + "/sa/" + id.ServiceAccount}
}

// Parse reads spiffe://<td>/ns/<ns>/sa/<sa>.
func Parse(s string) (ID, error) {
	rest, ok := strings.CutPrefix(s, "spiffe://")
	if !ok {
		return ID{}, fmt.Errorf("SPIFFE ID %q must start with spiffe://", s)
	}
	td, path, ok := strings.Cut(rest, "/")
	if !ok {
		return ID{}, fmt.Errorf("SPIFFE ID %q has no path", s)
	}
	parts := strings.Split(path, "/")
	if len(parts) != 4 || parts[0] != "ns" || parts[2] != "sa" {
		return ID{}, fmt.Errorf("SPIFFE ID %q: path must be /ns/<namespace>/sa/<serviceaccount>", s)
	}
	id := ID{TrustDomain: td, Namespace: parts[1], ServiceAccount: parts[3]}
	if err := id.Validate(); err != nil {
		return ID{}, fmt.Errorf("SPIFFE ID %q: %w", s, err)
	}
	return id, nil
}

// FromCertificate returns the SPIFFE ID in a certificate's URI SANs; it must
// carry exactly one spiffe:// URI.
func FromCertificate(cert *x509.Certificate) (ID, error) {
	var found []string
	for _, u := range cert.URIs {
		if u.Scheme == "spiffe" {
			found = append(found, u.String())
		}
	}
	if len(found) != 1 {
		return ID{}, fmt.Errorf("certificate carries %d SPIFFE IDs, want exactly 1", len(found))
	}
	return Parse(found[0])
}

// PathMatches says whether the path of the SPIFFE ID id (/ns/NS/sa/SA,
// whatever its trust domain) is want, or starts with want when want ends
// in "/" (/ns/NS/: every identity of a namespace). An empty want matches
// every id, and no id at all.
func PathMatches(want, id string) bool {
	if want == "" {
		return true
	}
	rest, ok := strings.CutPrefix(id, "spiffe://")
	if !ok {
		return false
	}
	i := strings.IndexByte(rest, '/')
	if i < 0 {
		return false
	}
	path := rest[i:]
	if strings.HasSuffix(want, "/") {
		return strings.HasPrefix(path, want)
	}
	return path == want
}
