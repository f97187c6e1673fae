package browsertest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/meshctl/meshctl/internal/netnstest"
)

// ChromiumEnv names the browser binary to use instead of chromium on $PATH.
const ChromiumEnv = "MESHCTL_CHROMIUM"

// Chromium finds the browser: $MESHCTL_CHROMIUM, else chromium or
// chromium-browser on $PATH.
func Chromium() (string, error) {
	if p := os.Getenv(ChromiumEnv); p != "" {
		return p, nil
	}
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("no chromium on $PATH (make test-deps installs Debian's; or set %s)", ChromiumEnv)
}

// Browser is a headless Chromium for one test, with the page's console
// errors and uncaught exceptions collected.
type Browser struct {
	// Ctx is the tab's context for chromedp.Run.
	Ctx context.Context

	mu       sync.Mutex
	problems []string
}

// New starts a headless Chromium (a window of width × height) that lives
// until the test ends. Without a browser the test is skipped (failed under
// MESHCTL_TESTS_MUST_RUN=1).
func New(t *testing.T, width, height int) *Browser {
	t.Helper()
	path, err := Chromium()
	if err != nil {
		netnstest.SkipUnlessMustRun(t, err.Error())
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.NoSandbox, // root in a container: Chromium's sandbox needs user namespaces it may not have
		chromedp.WindowSize(width, height),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-dev-shm-usage", true),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	if err := chromedp.Do(ctx); err != nil {
		cancel()
		cancelAlloc()
		t.Fatalf("start %s: %v", path, err)
	}
	b := &Browser{Ctx: ctx}
	messages := chromedp.Console(ctx)
	done := make(chan struct{})
	go func() { // ends with the tab's context
		defer close(done)
		for m, err := range messages {
			if err != nil {
				return
			}
			if m.IsException() || m.Type == chromedp.ConsoleType("error") {
				b.note(fmt.Sprintf("%s %s:%d: %s", m.Type, m.URL, m.Line, m.Text))
			}
		}
	}()
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
		<-done
	})
	return b
}

func (b *Browser) note(s string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.problems = append(b.problems, s)
}

// Problems are the page's uncaught exceptions and console errors so far
// (a CSP violation is one).
func (b *Browser) Problems() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.problems...)
}

// Do runs chromedp actions with a timeout.
func (b *Browser) Do(timeout time.Duration, actions ...chromedp.Action[chromedp.Void]) error {
	ctx, cancel := context.WithTimeout(b.Ctx, timeout)
	defer cancel()
	return chromedp.Do(ctx, actions...)
}

// evaluate evaluates js with a timeout.
func evaluate[T any](b *Browser, timeout time.Duration, js string) (T, error) {
	ctx, cancel := context.WithTimeout(b.Ctx, timeout)
	defer cancel()
	return chromedp.Run(ctx, chromedp.Evaluate[T](js))
}

// WaitFor evaluates the JavaScript expression js every 100ms until it is
// true, or fails after timeout saying what was awaited and what js gave.
func (b *Browser) WaitFor(t *testing.T, what, js string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, err := evaluate[bool](b, 5*time.Second, js)
		if err == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s: %q still not true after %s (last error %v; page problems %q)", what, js, timeout, err, b.Problems())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Eval evaluates js and decodes its value.
func Eval[T any](t *testing.T, b *Browser, js string) T {
	t.Helper()
	v, err := evaluate[T](b, 10*time.Second, js)
	if err != nil {
		t.Fatalf("evaluate %q: %v (page problems %q)", js, err, b.Problems())
	}
	return v
}

// Screenshot writes a PNG of the whole page to path.
func (b *Browser) Screenshot(t *testing.T, path string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.Ctx, 20*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
}

// Navigate opens url in the tab.
func (b *Browser) Navigate(t *testing.T, url string) {
	t.Helper()
	if err := b.Do(30*time.Second, chromedp.Navigate(url)); err != nil {
		t.Fatalf("open %s: %v", url, err)
	}
}
