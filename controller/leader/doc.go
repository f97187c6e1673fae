// Package leader elects one replica of the controller, with a
// coordination.k8s.io Lease, for work that one writer must do alone: the
// route status, which two versions of the controller during a rollout
// would otherwise fight over. It wraps client-go's leaderelection, which
// calls its callbacks asynchronously; Election turns them into a
// Leading() answer that never says "leading" after the lease is lost.
package leader
