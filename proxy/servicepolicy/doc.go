// Package servicepolicy reads the traffic policy a Service's annotations ask
// of its callers' proxies (retries, timeouts, failure accrual; see
// docs/DESIGN.md), as the destination service carries them. A value
// that does not parse is reported and left at its default, so that one typo
// does not take a Service's other settings away.
package servicepolicy
