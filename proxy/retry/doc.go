// Package retry decides whether a failed request may be sent again: the
// conditions a Service opted into (HTTP statuses, gRPC status codes) and a
// retry budget, which caps retries at a ratio of the original requests plus a
// small reserve per second, so that retries can never multiply the load on a
// struggling service into a storm.
package retry
