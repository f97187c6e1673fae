package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/meshctl/meshctl/identity/ca"
	"github.com/meshctl/meshctl/install"
	"github.com/meshctl/meshctl/internal/certs"
)

// The trust anchor file holds the anchor's certificate and private key; its
// mark, beside it, says which cluster the anchor was made for. A cluster is
// known by the UID of its kube-system namespace: it lives as long as the
// cluster, survives meshctl uninstall, and another cluster (even one of the
// same name, re-created) has another. So meshctl install into a cluster whose
// mesh was uninstalled finds the anchor it made there and reuses it, while an
// anchor file of another cluster, or one with no mark, is never touched.

// anchorMark is the content of a trust anchor file's mark. It holds no
// secret.
type anchorMark struct {
	// ClusterUID is the UID of the cluster's kube-system namespace.
	ClusterUID string `json:"clusterUID"`
	// Context is the kubeconfig context install ran with (informative).
	Context string `json:"context,omitempty"`
	// AnchorFingerprint is the SHA-256 of the anchor certificate the file
	// held when it was marked: a file replaced since is not reused.
	AnchorFingerprint string `json:"anchorFingerprint"`
	// Created is when the anchor was made.
	Created time.Time `json:"created"`
}

// markFile is where the mark of the trust anchor file anchorFile is kept.
func markFile(anchorFile string) string {
	return anchorFile + ".cluster.json"
}

// clusterUID identifies the cluster: the UID of its kube-system namespace.
func clusterUID(ctx context.Context, client kubernetes.Interface) (string, error) {
	ns, err := client.CoreV1().Namespaces().Get(ctx, "kube-system", metav1.GetOptions{})
	if err != nil {
		return "", fmt.Errorf("read namespace kube-system (its UID tells which cluster a trust anchor file belongs to): %w", err)
	}
	if ns.UID == "" {
		return "", errors.New("namespace kube-system has no UID: cannot tell which cluster a trust anchor file belongs to")
	}
	return string(ns.UID), nil
}

// readMark reads the mark of anchorFile; it is fs.ErrNotExist when there
// is none.
func readMark(anchorFile string) (anchorMark, error) {
	data, err := os.ReadFile(markFile(anchorFile))
	if err != nil {
		return anchorMark{}, err
	}
	var m anchorMark
	if err := json.Unmarshal(data, &m); err != nil {
		return anchorMark{}, fmt.Errorf("%s: %w", markFile(anchorFile), err)
	}
	if m.ClusterUID == "" || m.AnchorFingerprint == "" {
		return anchorMark{}, fmt.Errorf("%s names no cluster or no anchor", markFile(anchorFile))
	}
	return m, nil
}

// writeMark marks anchorFile as holding anchor, made for the cluster m
// names.
func writeMark(anchorFile string, anchor *ca.KeyPair, m anchorMark) error {
	m.AnchorFingerprint = certs.Fingerprint(anchor.Cert)
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(markFile(anchorFile), append(data, '\n'), 0o600); err != nil {
		return fmt.Errorf("mark the trust anchor file with its cluster: %w", err)
	}
	return nil
}

// clusterIdentity is the identity install gives a cluster that has none.
// When file holds a trust anchor marked as this cluster's (m.ClusterUID),
// still valid for the trust domain, a new issuer is signed with it and
// reused is true. When there is no file, a new anchor is made and kept in
// file with its mark. Any other file is refused: it may hold the key of
// another mesh's anchor, and is never overwritten.
func clusterIdentity(trustDomain, file string, m anchorMark) (id install.Identity, reused bool, err error) {
	if _, err := os.Stat(file); err == nil {
		anchor, err := reusableAnchor(file, m.ClusterUID, trustDomain)
		if err != nil {
			return install.Identity{}, false, err
		}
		id, err := issuerIdentity(anchor, trustDomain)
		return id, err == nil, err
	} else if !errors.Is(err, fs.ErrNotExist) {
		return install.Identity{}, false, fmt.Errorf("the trust anchor file: %w", err)
	}
	m.Created = time.Now().UTC().Truncate(time.Second)
	id, err = newIdentity(trustDomain, file, &m)
	return id, false, err
}

// reusableAnchor loads the trust anchor in file when it may be reused for
// the cluster whose kube-system UID is uid: its mark names that cluster and
// that anchor, its key matches its certificate, it is a CA of the trust
// domain, and it is good for a while yet. The errors say why not and what
// to do.
func reusableAnchor(file, uid, trustDomain string) (*ca.KeyPair, error) {
	refuse := func(why string) error {
		return fmt.Errorf("%s already exists and %s: it may hold the key of another mesh's trust anchor, so it is neither reused nor overwritten; move it away (install then makes a new anchor) or choose another path with --trust-anchor-file", file, why)
	}
	m, err := readMark(file)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, refuse("is not marked as this cluster's (no " + filepath.Base(markFile(file)) + ")")
	case err != nil:
		return nil, refuse(fmt.Sprintf("its mark is unreadable (%v)", err))
	case m.ClusterUID != uid:
		return nil, fmt.Errorf("%s holds the trust anchor of another cluster (kube-system UID %s, context %q; this cluster's UID is %s): it is neither reused nor overwritten; use the context it was made for, or choose another path with --trust-anchor-file", file, m.ClusterUID, m.Context, uid)
	}
	anchor, err := loadAnchor(file)
	if err != nil {
		return nil, refuse(fmt.Sprintf("is not a usable trust anchor (%v)", err))
	}
	if fp := certs.Fingerprint(anchor.Cert); fp != m.AnchorFingerprint {
		return nil, refuse("holds another anchor than its mark " + filepath.Base(markFile(file)) + " records (was it replaced?)")
	}
	if !slices.Contains(anchor.Cert.PermittedURIDomains, trustDomain) {
		return nil, refuse(fmt.Sprintf("its anchor is for trust domain(s) %v, not %q", anchor.Cert.PermittedURIDomains, trustDomain))
	}
	if now := time.Now(); now.Before(anchor.Cert.NotBefore) || now.Add(renewBefore).After(anchor.Cert.NotAfter) {
		return nil, refuse(fmt.Sprintf("its anchor is valid from %s to %s only", anchor.Cert.NotBefore.UTC().Format(time.RFC3339), anchor.Cert.NotAfter.UTC().Format(time.RFC3339)))
	}
	return anchor, nil
}
