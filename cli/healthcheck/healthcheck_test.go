package healthcheck

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

var update = flag.Bool("update", false, "rewrite the golden files")

func sampleCategories(flaky *int) []Category {
	return []Category{
		{Name: "first", Checks: []Check{
			{Name: "passes", Run: func(context.Context, *Env) error { return nil }},
			{Name: "warns", Hint: "renew it", Run: func(context.Context, *Env) error { return Warnf("expires in 10 days") }},
			{Name: "passes with a note", Hint: "never shown", Run: func(context.Context, *Env) error { return Notef("nothing to check") }},
			{Name: "passes on the third try", Hint: "wait", Run: func(context.Context, *Env) error {
				*flaky++
				if *flaky < 3 {
					return errors.New("not yet")
				}
				return nil
			}},
		}},
		{Name: "second", Checks: []Check{
			{Name: "fails", Hint: "fix it", Fatal: true, Run: func(context.Context, *Env) error { return errors.New("it is broken") }},
			{Name: "never runs", Run: func(context.Context, *Env) error { panic("ran after a fatal failure") }},
		}},
	}
}

func TestRunRetriesWarnsAndStopsAfterAFatalFailure(t *testing.T) {
	tries := 0
	results := Run(context.Background(), &Env{}, sampleCategories(&tries), Options{Wait: 300 * time.Millisecond, RetryEvery: time.Millisecond})
	want := []Status{OK, Warning, OK, OK, Error, Skipped}
	if len(results) != len(want) {
		t.Fatalf("%d results, want %d", len(results), len(want))
	}
	for i, r := range results {
		if r.Status != want[i] {
			t.Errorf("%s: %s, want %s", r.Name, r.Status, want[i])
		}
	}
	if tries != 3 {
		t.Errorf("the flaky check ran %d times, want 3", tries)
	}
	if Passed(results, false) {
		t.Error("Passed with a failure")
	}

	tries = 0
	noWait := Run(context.Background(), &Env{}, sampleCategories(&tries)[:1], Options{})
	if noWait[3].Status != Error || tries != 1 {
		t.Errorf("without --wait the flaky check was %s after %d tries, want error after 1", noWait[3].Status, tries)
	}
	if r := results[2]; r.Detail != "nothing to check" || r.Hint != "" {
		t.Errorf("a note: detail %q, hint %q; want the note and no hint", r.Detail, r.Hint)
	}
}

func TestOutputFormatsMatchGolden(t *testing.T) {
	tries := 0
	results := Run(context.Background(), &Env{}, sampleCategories(&tries), Options{Wait: 100 * time.Millisecond, RetryEvery: time.Millisecond})
	for name, write := range map[string]func(*bytes.Buffer) error{
		"table": func(b *bytes.Buffer) error { return WriteTable(b, results, false) },
		"json":  func(b *bytes.Buffer) error { return WriteJSON(b, results) },
	} {
		var b bytes.Buffer
		if err := write(&b); err != nil {
			t.Fatal(err)
		}
		path := filepath.Join("testdata", name+".golden")
		if *update {
			os.WriteFile(path, b.Bytes(), 0o644)
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(b.Bytes(), want) {
			t.Errorf("%s output differs from %s (-update to accept):\n%s", name, path, b.String())
		}
	}
}

func TestExpiryWarnsAndFails(t *testing.T) {
	now := time.Now()
	for name, tc := range map[string]struct {
		notAfter time.Duration
		want     Status
	}{"valid": {365 * 24 * time.Hour, OK}, "soon": {10 * 24 * time.Hour, Warning}, "expired": {-time.Hour, Error}} {
		c := testCert(t, now.Add(-time.Hour), now.Add(tc.notAfter))
		err := expiry(now, c)
		got := OK
		if isWarn(err) {
			got = Warning
		} else if err != nil {
			got = Error
		}
		if got != tc.want {
			t.Errorf("%s: %s (%v), want %s", name, got, err, tc.want)
		}
	}
}

func TestPlaintextFinding(t *testing.T) {
	if got := plaintextFinding("demo/web-1", map[string]float64{"no_identity": 0}); got != "" {
		t.Errorf("no plaintext: %q, want nothing", got)
	}
	got := plaintextFinding("demo/web-1", map[string]float64{"not_in_mesh": 2, "no_identity": 10})
	if want := "demo/web-1: 12 plaintext connections into the cluster (no_identity 10, not_in_mesh 2)"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

// TestACheckTheUserMayNotRunIsSaidSo: a check refused by the user's RBAC
// is shown as such (with what it needed), is not retried and stops nothing
// even when fatal; scoped to a namespace (check --proxy -n) it does not fail
// check, and of the whole mesh it does; the status line counts them.
func TestACheckTheUserMayNotRunIsSaidSo(t *testing.T) {
	tries, ran := 0, false
	rbac := apierrors.NewForbidden(schema.GroupResource{Resource: "namespaces"}, "meshctl",
		errors.New(`User "system:serviceaccount:shop:alice" cannot get resource "namespaces" in API group "" in the namespace "meshctl"`))
	cats := []Category{{Name: "c", Checks: []Check{
		{Name: "may not look", Hint: "install it", Fatal: true, Run: func(context.Context, *Env) error {
			tries++
			return fmt.Errorf("the namespace: %w", rbac)
		}},
		{Name: "runs anyway", Run: func(context.Context, *Env) error { ran = true; return nil }},
	}}}
	results := Run(context.Background(), &Env{}, cats, Options{Wait: 50 * time.Millisecond, RetryEvery: time.Millisecond})
	if results[0].Status != Forbidden || results[0].Hint != ForbiddenHint || !strings.Contains(results[0].Detail, "cannot get resource") {
		t.Errorf("the refused check: %+v, want status %s, the RBAC hint, the API server's words", results[0], Forbidden)
	}
	if tries != 1 || !ran {
		t.Errorf("tried %d times (want 1), the next check ran: %v (want true)", tries, ran)
	}
	for _, c := range []struct {
		scoped bool
		line   string
	}{
		{true, "Status check results are ‼ (1 of 2 checks not run: your RBAC does not allow them)"},
		{false, "Status check results are × (1 of 2 checks not run: your RBAC does not allow them)"},
	} {
		if Passed(results, c.scoped) != c.scoped {
			t.Errorf("scoped %v: passed %v", c.scoped, Passed(results, c.scoped))
		}
		var b bytes.Buffer
		if err := WriteTable(&b, results, c.scoped); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(b.String(), "? may not look") || !strings.Contains(b.String(), c.line) {
			t.Errorf("scoped %v: table:\n%s", c.scoped, b.String())
		}
	}
}

// TestOnlyTheUsersAuthorizationIsNotAllowed: a 403 is the user's missing
// permission only when the authorizer says the user cannot do the verb;
// an admission refusal or a 403 from behind the API server is a failure.
func TestOnlyTheUsersAuthorizationIsNotAllowed(t *testing.T) {
	gr := schema.GroupResource{Resource: "pods"}
	for _, c := range []struct {
		err  error
		want bool
	}{
		{apierrors.NewForbidden(gr, "x", errors.New(`User "alice" cannot create resource "pods" in API group "" in the namespace "default"`)), true},
		{fmt.Errorf("wrapped: %w", apierrors.NewForbidden(gr, "", errors.New(`user "alice" cannot get pods/tap in admin.meshctl.io`))), true},
		{apierrors.NewForbidden(gr, "x", errors.New(`violates PodSecurity "restricted:latest": allowPrivilegeEscalation != false`)), false},
		{apierrors.NewForbidden(gr, "x", errors.New(`admission webhook "validate.kyverno.svc" denied the request`)), false},
		{apierrors.NewForbidden(gr, "x", errors.New(`exceeded quota: pods, requested: pods=1, used: pods=10, limited: pods=10`)), false},
		{&apierrors.StatusError{ErrStatus: metav1.Status{Code: 403, Message: "unknown"}}, false},
		{apierrors.NewUnauthorized(`User "alice" cannot get resource`), false},
		{errors.New(`User "alice" cannot get resource "pods"`), false},
	} {
		if got := NotAllowed(c.err); got != c.want {
			t.Errorf("NotAllowed(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}
