package identitysvc

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"

	"github.com/meshctl/meshctl/internal/api"
)

// ParseCSR decodes one PEM certificate request, refusing anything larger
// than api.MaxCSRBytes, of another PEM type, or followed by more data.
func ParseCSR(s string) (*x509.CertificateRequest, error) {
	if len(s) > api.MaxCSRBytes {
		return nil, fmt.Errorf("the certificate request is larger than %d bytes", api.MaxCSRBytes)
	}
	block, rest := pem.Decode([]byte(s))
	if block == nil {
		return nil, errors.New("no PEM certificate request found")
	}
	if block.Type != "CERTIFICATE REQUEST" && block.Type != "NEW CERTIFICATE REQUEST" {
		return nil, fmt.Errorf("PEM block of type %q, want CERTIFICATE REQUEST", block.Type)
	}
	if len(pemTrim(rest)) > 0 {
		return nil, errors.New("unexpected data after the certificate request")
	}
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse certificate request: %w", err)
	}
	return csr, nil
}

func pemTrim(b []byte) []byte {
	for len(b) > 0 && (b[0] == '\n' || b[0] == '\r' || b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	return b
}
