// Package deadline splits a shutdown's time between its steps: Reserve
// gives a drain the deadline less a reserve, so a drain that runs out its
// time does not leave the steps after it (withdrawing records, flushing
// unbinds) with an expired context. Stateless; safe for concurrent use.
package deadline
