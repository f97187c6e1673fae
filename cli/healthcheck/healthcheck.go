// Package healthcheck is `meshctl check`: small checks grouped in
// categories, each with a hint for when it fails, retried until a deadline
// when asked, and printed as a table or JSON. Each category lives in its own
// file.
package healthcheck

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// Status is a check's outcome.
type Status string

// The outcomes: a warning does not fail `meshctl check`; an error does.
const (
	OK      Status = "ok"
	Warning Status = "warning"
	Error   Status = "error"
	Skipped Status = "skipped"
	// Forbidden: the user's RBAC does not let the check look; it does not
	// fail `meshctl check` (the status line counts them).
	Forbidden Status = "forbidden"
)

// ForbiddenHint is the hint under a check the user may not run.
const ForbiddenHint = "your RBAC does not allow this check (the detail names what it needs): a cluster admin's check covers it"

// Env is what checks read.
type Env struct {
	// Config and Client reach the cluster.
	Config *rest.Config
	Client kubernetes.Interface
	// Dynamic reaches custom resources (HTTPRoutes, AuthorizationPolicies).
	Dynamic dynamic.Interface
	// Namespace is the control plane's.
	Namespace string
	// ProxyNamespace limits --proxy checks ("" means every namespace).
	ProxyNamespace string
	// Version is the CLI's.
	Version string
	// Now is the time certificates are judged at.
	Now time.Time
}

// Check is one thing to verify.
type Check struct {
	// Name says what is verified, as a statement ("control plane pods are ready").
	Name string
	// Hint says what to do when it fails.
	Hint string
	// Fatal stops the remaining checks when this one fails (nothing after it can work).
	Fatal bool
	// Run verifies: nil is success (a *Note is a success with a remark); a
	// *Warn is a warning; any other error a failure.
	Run func(ctx context.Context, env *Env) error
}

// Warn is a warning, not a failure.
type Warn struct{ Msg string }

func (w *Warn) Error() string { return w.Msg }

// Warnf makes a warning.
func Warnf(format string, args ...any) error { return &Warn{Msg: fmt.Sprintf(format, args...)} }

// Note is a success with a remark, such as why there was nothing to check.
type Note struct{ Msg string }

func (n *Note) Error() string { return n.Msg }

// Notef makes a success with a remark.
func Notef(format string, args ...any) error { return &Note{Msg: fmt.Sprintf(format, args...)} }

// Category groups checks.
type Category struct {
	Name   string
	Checks []Check
	// Settled: its checks say how things are, not how they are becoming
	// (reaching the API, its version, permissions): --wait does not retry
	// them.
	Settled bool
}

// Result is a check's outcome, as printed.
type Result struct {
	Category string `json:"category"`
	Name     string `json:"name"`
	Status   Status `json:"result"`
	Detail   string `json:"detail,omitempty"`
	Hint     string `json:"hint,omitempty"`
}

// Options configure Run.
type Options struct {
	// Wait retries failing checks until this much time has passed since the start.
	Wait time.Duration
	// RetryEvery is the pause between retries. Default: 2s.
	RetryEvery time.Duration
	// Progress, when set, receives a line whenever a check is retried.
	Progress io.Writer
	// Done, when set, is called with each result as soon as it is known.
	Done func(Result)
}

// Run runs the categories in order and returns every result.
func Run(ctx context.Context, env *Env, cats []Category, opts Options) []Result {
	if opts.RetryEvery == 0 {
		opts.RetryEvery = 2 * time.Second
	}
	deadline := time.Now().Add(opts.Wait)
	var results []Result
	stopped := ""
	for _, cat := range cats {
		for _, c := range cat.Checks {
			r := Result{Category: cat.Name, Name: c.Name}
			if stopped != "" {
				r.Status, r.Detail = Skipped, "not run: "+stopped
				results = append(results, r)
				if opts.Done != nil {
					opts.Done(r)
				}
				continue
			}
			err := runOne(ctx, env, c)
			for err != nil && !cat.Settled && !isWarn(err) && !isNote(err) && !NotAllowed(err) && time.Now().Before(deadline) && ctx.Err() == nil {
				if opts.Progress != nil {
					fmt.Fprintf(opts.Progress, "  waiting: %s: %v\n", c.Name, err)
				}
				select {
				case <-ctx.Done():
				case <-time.After(opts.RetryEvery):
				}
				err = runOne(ctx, env, c)
			}
			switch {
			case err == nil:
				r.Status = OK
			case isNote(err):
				r.Status, r.Detail = OK, err.Error()
			case isWarn(err):
				r.Status, r.Detail, r.Hint = Warning, err.Error(), c.Hint
			case NotAllowed(err):
				// The user may not look: not a failure of the mesh, and
				// no reason to stop the checks the user may run.
				r.Status, r.Detail, r.Hint = Forbidden, "cannot check: "+err.Error(), ForbiddenHint
			default:
				r.Status, r.Detail, r.Hint = Error, err.Error(), c.Hint
				if c.Fatal {
					stopped = c.Name + " failed"
				}
			}
			results = append(results, r)
			if opts.Done != nil {
				opts.Done(r)
			}
		}
	}
	return results
}

func runOne(ctx context.Context, env *Env, c Check) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	return c.Run(ctx, env)
}

func isWarn(err error) bool {
	_, ok := err.(*Warn)
	return ok
}

func isNote(err error) bool {
	_, ok := err.(*Note)
	return ok
}

// NotAllowed reports whether err is the user's authorization refusal: a
// 403 from the API server's RBAC (or the admin API's) whose message says
// the user cannot do the verb; not an admission refusal (Pod Security, a
// quota, a webhook), nor a 403 from behind the API server's proxy.
func NotAllowed(err error) bool {
	var st apierrors.APIStatus
	if !errors.As(err, &st) || st.Status().Code != http.StatusForbidden {
		return false
	}
	return authzRefusal.MatchString(st.Status().Message)
}

// authzRefusal is how the RBAC authorizer (User "…" cannot get resource …)
// and the admin API (user "…" cannot get pods/tap …) say no.
var authzRefusal = regexp.MustCompile(`(?i)\buser "[^"]*" cannot [a-z]+ `)

// Passed reports whether no check failed (warnings and skips aside) and,
// unless tolerateNotAllowed, none could not be run for want of RBAC: a
// check of the whole mesh that could not look has not passed, while one
// scoped to a namespace (check --proxy -n) vouches only for what it may read.
func Passed(results []Result, tolerateNotAllowed bool) bool {
	for _, r := range results {
		if r.Status == Error || (r.Status == Forbidden && !tolerateNotAllowed) {
			return false
		}
	}
	return true
}

var symbols = map[Status]string{OK: "✔", Warning: "‼", Error: "×", Skipped: "-", Forbidden: "?"}

// WriteTable prints the results grouped by category, with hints under
// failures (passed as Passed with tolerateNotAllowed says).
func WriteTable(w io.Writer, results []Result, tolerateNotAllowed bool) error {
	t := NewTable(w)
	for _, r := range results {
		t.Add(r)
	}
	return t.Finish(results, tolerateNotAllowed)
}

// Table prints results as they come, grouped by category (they come in
// category order), then the status line.
type Table struct {
	w   io.Writer
	cat string
	err error
}

// NewTable starts a table on w.
func NewTable(w io.Writer) *Table { return &Table{w: w} }

// Add prints one result (and its category's heading when it is the first).
func (t *Table) Add(r Result) {
	var b strings.Builder
	if r.Category != t.cat {
		if t.cat != "" {
			b.WriteString("\n")
		}
		t.cat = r.Category
		b.WriteString(t.cat + "\n" + strings.Repeat("-", len(t.cat)) + "\n")
	}
	fmt.Fprintf(&b, "%s %s\n", symbols[r.Status], r.Name)
	if r.Detail != "" {
		fmt.Fprintf(&b, "    %s\n", r.Detail)
	}
	if r.Hint != "" {
		fmt.Fprintf(&b, "    hint: %s\n", r.Hint)
	}
	if t.err == nil {
		_, t.err = io.WriteString(t.w, b.String())
	}
}

// Finish prints the status line of all results (passed as Passed with
// tolerateNotAllowed says), and returns the first write error.
func (t *Table) Finish(results []Result, tolerateNotAllowed bool) error {
	status := "✔"
	forbidden := 0
	for _, r := range results {
		if r.Status == Forbidden {
			forbidden++
		}
	}
	switch {
	case !Passed(results, tolerateNotAllowed):
		status = "×"
	case forbidden > 0:
		status = "‼"
	}
	if forbidden > 0 {
		status += fmt.Sprintf(" (%d of %d checks not run: your RBAC does not allow them)", forbidden, len(results))
	}
	if t.err == nil {
		_, t.err = fmt.Fprintf(t.w, "\nStatus check results are %s\n", status)
	}
	return t.err
}

// WriteJSON prints the results for scripts.
func WriteJSON(w io.Writer, results []Result) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(NewReport(results, false))
}

// Report is what check prints for scripts: whether every check passed,
// and each result.
type Report struct {
	Success bool     `json:"success"`
	Checks  []Result `json:"checks"`
}

// NewReport makes the report of results (passed as Passed with
// tolerateNotAllowed says).
func NewReport(results []Result, tolerateNotAllowed bool) Report {
	return Report{Passed(results, tolerateNotAllowed), results}
}
