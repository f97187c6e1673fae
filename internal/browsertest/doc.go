// Package browsertest drives a real headless Chromium (Debian's chromium,
// which the Makefile installs) from Go tests with chromedp: the dashboard's
// page is tested as a browser runs it, CSP, JavaScript and all.
package browsertest
