// Package e2e holds the end-to-end tests, which run against the real local
// Kubernetes cluster (see localcluster) under the "e2e" build tag:
//
//	make e2e
//
// starts the cluster when none is up, loads the project's images and runs
// them, then the Gateway API mesh conformance suite, then, alone and last,
// TestClusterComesBackAfterEveryProcessIsKilled (E2E_CLUSTER_CRASH=1), which
// leaves a new, empty cluster behind. Figures the suite measures are written
// to e2e/reports/e2e-report.json (see report_test.go).
package e2e
