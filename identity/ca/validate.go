package ca

import (
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"go.step.sm/crypto/keyutil"
)

// ValidateIssuer checks an issuer a user brought (or that is about to be put
// in place): its key matches its certificate, it is a CA allowed to sign, it
// chains to one of the trust anchors, and none of that has expired or expires
// within minRemaining.
func ValidateIssuer(issuer *KeyPair, anchors []*x509.Certificate, minRemaining time.Duration) error {
	if err := keyutil.VerifyPair(issuer.Cert.PublicKey, issuer.Key); err != nil {
		return fmt.Errorf("the issuer key does not match its certificate: %w", err)
	}
	if !issuer.Cert.IsCA || !issuer.Cert.BasicConstraintsValid {
		return errors.New("the issuer certificate is not a CA (basic constraints)")
	}
	if issuer.Cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return errors.New("the issuer certificate may not sign certificates (key usage)")
	}
	if len(anchors) == 0 {
		return errors.New("no trust anchor given")
	}
	pool := x509.NewCertPool()
	for _, a := range anchors {
		if !a.IsCA {
			return fmt.Errorf("trust anchor %q is not a CA", a.Subject.CommonName)
		}
		pool.AddCert(a)
	}
	now := time.Now()
	if _, err := issuer.Cert.Verify(x509.VerifyOptions{Roots: pool, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return fmt.Errorf("the issuer does not chain to a trust anchor: %w", err)
	}
	if issuer.Cert.NotAfter.Before(now.Add(minRemaining)) {
		return fmt.Errorf("the issuer expires at %s, too soon", issuer.Cert.NotAfter.UTC().Format(time.RFC3339))
	}
	return nil
}
