package bench

import (
	"sync/atomic"
)

// stripe is one slice of a pool's receive-side counters. Connection i
// records into stripe i mod len(stripes), so the goroutines of different
// connections rarely write the same cache lines.
type stripe struct {
	lat        atomicHist // push→receive latency; its count is the deliveries
	dups       atomic.Int64
	outOfOrder atomic.Int64
	stale      atomic.Int64 // out of order by 64 or more: not checked for duplicates
	misrouted  atomic.Int64 // a push stamped for another target
	foreign    atomic.Int64 // a business op frame without a bench stamp
	other      atomic.Int64 // frames of other ops
	hbSent     atomic.Int64
	hbReplies  atomic.Int64
	_          [64]byte
}

// Counters are the receive-side totals of a report.
type Counters struct {
	Deliveries int64 `json:"deliveries"`
	Dups       int64 `json:"dups"`
	OutOfOrder int64 `json:"out_of_order"`
	Stale      int64 `json:"stale"`
	Misrouted  int64 `json:"misrouted"`
	Foreign    int64 `json:"foreign"`
	Other      int64 `json:"other"`
	HBSent     int64 `json:"hb_sent"`
	HBReplies  int64 `json:"hb_replies"`
}

func (c *Counters) add(o Counters) {
	c.Deliveries += o.Deliveries
	c.Dups += o.Dups
	c.OutOfOrder += o.OutOfOrder
	c.Stale += o.Stale
	c.Misrouted += o.Misrouted
	c.Foreign += o.Foreign
	c.Other += o.Other
	c.HBSent += o.HBSent
	c.HBReplies += o.HBReplies
}

// Report is a shard's state: the pool in this process, or a worker process
// (which sends it as one JSON line). Counts are cumulative.
type Report struct {
	Type string `json:"type"` // progress, connected or final (from workers)

	Attempted   int64 `json:"attempted"`
	Established int64 `json:"established"`
	Failed      int64 `json:"failed"`
	Closed      int64 `json:"closed"` // established, then ended before the run did
	// ConnectDone is set once every connection of the shard was tried (or
	// the shard stopped early); StoppedEarly says it gave up on failures.
	ConnectDone  bool  `json:"connect_done"`
	StoppedEarly bool  `json:"stopped_early,omitempty"`
	ConnectNanos int64 `json:"connect_nanos"` // start of connecting to the last handshake
	// Connected lists the client indexes established at connect end as
	// [from, to) ranges (connected and final reports).
	Connected [][2]int         `json:"connected,omitempty"`
	Errors    map[string]int64 `json:"errors,omitempty"`

	Counters
	Latency    Sparse `json:"latency"`
	ConnectLat Sparse `json:"connect_latency"`
	LastRecv   int64  `json:"last_recv"` // unix nanos of the latest delivery

	CPUNanos int64   `json:"cpu_nanos"`       // this process's CPU since the push phase began (final)
	CPUTotal int64   `json:"cpu_total_nanos"` // this process's CPU since it started
	PerPush  []int32 `json:"per_push,omitempty"`
}
