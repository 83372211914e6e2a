// Package registrytest owns the contract suite every registry backend must
// pass: Run exercises a registry.Registrar and registry.Watcher pair through
// the public interfaces only, so the in-memory registry and etcd are held to
// one behaviour. Backend-specific behaviour (leases, goroutine accounting) is
// tested next to each backend.
//
// Concurrency rules: subtests are sequential and each reads its watch
// channels on the test goroutine. Every subtest uses its own unique role
// names and deregisters what it registered (t.Cleanup), so a backend shared
// between subtests or runs (one etcd prefix) does not confuse the checks.
package registrytest
