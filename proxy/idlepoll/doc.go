// Package idlepoll keeps sockets that wait for their next bytes without a
// goroutine each: a Poller watches them all from one epoll instance, which
// is itself watched by the runtime's poller, and wakes a waiter (in a new
// goroutine) when its socket is readable, has been closed by the peer, or
// its deadline has passed.
//
// A goroutine parked in a read costs its stack, at least 2 KiB and often
// more (the runtime starts goroutines at the average stack size it has
// seen); a parked Waiter costs the Waiter. mesh-proxy's HTTP/1 server hands
// a keep-alive connection to a Poller once it has been idle for a moment,
// so ten thousand idle connections hold ten thousand small structures and
// no goroutines. Busy connections never meet the Poller: the hand-over
// happens only after the first wait times out.
//
// The Poller's goroutine runs only while something is parked, and wakes for
// readiness, for the earliest waiter's deadline, and at least once a
// DeadlineTick (when it looks at every waiter's deadline).
package idlepoll
