package identitysvc

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/meshctl/meshctl/internal/meshnames"
	"github.com/meshctl/meshctl/internal/spiffeid"
)

// Bounds of the local token check. The TokenReview is what authenticates a
// token; these only keep requests that cannot pass it from costing one.
const (
	// maxTokenBytes bounds a token: projected ServiceAccount tokens are
	// about 1 KiB.
	maxTokenBytes = 8 << 10
	// tokenLeeway is the clock skew allowed on exp (the API server's own
	// leeway is one minute).
	tokenLeeway = time.Minute
	// maxTokenAhead is the furthest in the future a token's exp may be:
	// proxies use tokens of expirationSeconds 600, so anything beyond an
	// hour was not made for them.
	maxTokenAhead = time.Hour
)

// TokenError is a token refused by the local check, before any TokenReview.
type TokenError struct {
	// Reason is token_malformed, token_expired or token_audience.
	Reason string
	Err    error
}

func (e *TokenError) Error() string { return e.Err.Error() }

// Unwrap returns the underlying error.
func (e *TokenError) Unwrap() error { return e.Err }

func tokenErr(reason, format string, args ...any) error {
	return &TokenError{Reason: reason, Err: fmt.Errorf(format, args...)}
}

// claims is what the local check reads of a token's payload.
type claims struct {
	Aud audiences `json:"aud"`
	Exp *float64  `json:"exp"`
	Sub string    `json:"sub"`
}

// audiences is a JWT aud claim: one string or an array of them.
type audiences []string

// UnmarshalJSON accepts both forms of aud.
func (a *audiences) UnmarshalJSON(b []byte) error {
	var one string
	if err := json.Unmarshal(b, &one); err == nil {
		*a = audiences{one}
		return nil
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil {
		return errors.New("aud is neither a string nor an array of strings")
	}
	*a = many
	return nil
}

// CheckToken looks at a token without verifying it (the TokenReview does
// that): it must be a JWT of three base64url parts whose payload names
// audience, expires after now (within tokenLeeway) and at most maxTokenAhead
// from now, and belongs to a ServiceAccount (sub
// system:serviceaccount:<namespace>:<name>, both valid names). It returns
// the ServiceAccount the token claims (unverified: only the TokenReview
// says whose it is). Errors are *TokenError.
func CheckToken(token, audience string, now time.Time) (namespace, serviceAccount string, err error) {
	if len(token) > maxTokenBytes {
		return "", "", tokenErr("token_malformed", "the token is longer than %d bytes", maxTokenBytes)
	}
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return "", "", tokenErr("token_malformed", "the token is not a JWT (%d parts, want 3)", len(parts))
	}
	var decoded [3][]byte
	for i, p := range parts {
		b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(p, "="))
		if err != nil || len(b) == 0 {
			return "", "", tokenErr("token_malformed", "the token's part %d is not base64url", i+1)
		}
		decoded[i] = b
	}
	var header map[string]any
	if err := json.Unmarshal(decoded[0], &header); err != nil {
		return "", "", tokenErr("token_malformed", "the token's header is not a JSON object")
	}
	var c claims
	if err := json.Unmarshal(decoded[1], &c); err != nil {
		return "", "", tokenErr("token_malformed", "the token's payload: %w", err)
	}
	found := false
	for _, a := range c.Aud {
		found = found || a == audience
	}
	if !found {
		return "", "", tokenErr("token_audience", "the token is for %v, not %s", []string(c.Aud), audience)
	}
	if c.Exp == nil || math.IsNaN(*c.Exp) || math.IsInf(*c.Exp, 0) {
		return "", "", tokenErr("token_malformed", "the token has no expiry")
	}
	exp := time.Unix(int64(min(max(*c.Exp, 0), math.MaxInt32*4)), 0)
	if exp.Before(now.Add(-tokenLeeway)) {
		return "", "", tokenErr("token_expired", "the token expired at %s", exp.UTC().Format(time.RFC3339))
	}
	if exp.After(now.Add(maxTokenAhead + tokenLeeway)) {
		return "", "", tokenErr("token_expired", "the token expires at %s, more than %s from now: projected tokens for %s last 10 minutes",
			exp.UTC().Format(time.RFC3339), maxTokenAhead, audience)
	}
	rest, ok := strings.CutPrefix(c.Sub, "system:serviceaccount:")
	ns, sa, ok2 := strings.Cut(rest, ":")
	if !ok || !ok2 {
		return "", "", tokenErr("token_malformed", "the token's subject %q is not a ServiceAccount", c.Sub)
	}
	if _, err := spiffeid.New(meshnames.TrustDomain, ns, sa); err != nil {
		return "", "", tokenErr("token_malformed", "the token's subject %q: %w", c.Sub, err)
	}
	return ns, sa, nil
}
