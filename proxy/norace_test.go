//go:build !race

package proxy

// raceEnabled says the tests run under the race detector, where each
// request costs several times more: load tests scale down.
const raceEnabled = false
