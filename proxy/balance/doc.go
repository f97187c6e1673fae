// Package balance chooses, per request, which endpoint of a destination
// serves it: power of two choices over each endpoint's peak-EWMA latency,
// weighted by its pending requests and its weight (Finagle's and Linkerd's
// "P2C + peak EWMA"). It also keeps each endpoint's health: an endpoint that
// fails to connect, or (with failure accrual on) fails too many requests in
// a row, is ejected for an exponential, jittered backoff and then probed with
// one request at a time until one succeeds.
//
// An Endpoint's state outlives endpoint-list updates (the owner keeps it per
// address), so a destination's history survives discovery changes.
package balance
