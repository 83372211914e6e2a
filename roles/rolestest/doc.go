// Package rolestest holds test helpers for packages that need a whole
// imcloud running: StartAll runs `imcloud all` in process on random
// loopback ports. It is imported by tests only; each call owns its app,
// stopped at the test's cleanup (or earlier, by the stop function).
package rolestest
