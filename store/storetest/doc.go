// Package storetest owns the contract suite every session store backend must
// pass: Run exercises a store.Sessions and store.Online pair through the
// public interfaces only, so the in-memory store and Redis are held to one
// behaviour. Expiry is left to backend-specific tests (the memory store's
// fake clock, Redis TTLs), since the suite cannot control a backend's TTL.
//
// Concurrency rules: subtests are sequential and call the store from the
// test goroutine, except where a subtest says it runs calls concurrently.
// Every subtest uses keys, mids and node names unique to it and its run, and
// unbinds what it bound, so a backend shared between subtests or runs (one
// Redis database) does not confuse the checks.
package storetest
