// Package deadline bounds waiting: Reserve splits a shutdown's time between
// its steps (a drain gets the deadline less a reserve, so one that runs out
// its time does not leave the steps after it with an expired context), and
// Sleep waits unless a context ends first. Stateless; safe for concurrent
// use.
package deadline
