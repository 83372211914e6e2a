package bench

import (
	"math"
	"math/bits"
	"sync/atomic"
)

// Latencies are kept in a fixed log-linear histogram (HDR-like): values below
// 128 have a bucket each, above that every power of two is split into 128
// buckets, so a bucket is at most 1/128 (0.8%) of its value wide. Memory is
// fixed (histBuckets counters) whatever the number of samples. Values are
// nanoseconds; anything at or over histMaxValue (about 18 minutes) lands in
// the last bucket, and the exact maximum is kept on the side.
const (
	histSubBits = 7
	histSub     = 1 << histSubBits
	// histMaxShift is the largest shift: values up to 2^(histMaxShift+8)-1.
	histMaxShift = 32
	histBuckets  = (histMaxShift+1)*histSub + histSub
	histMaxValue = int64(1)<<(histMaxShift+histSubBits+1) - 1
)

// bucketOf maps v >= 0 to its bucket index.
func bucketOf(v int64) int {
	if v < histSub {
		if v < 0 {
			return 0
		}
		return int(v)
	}
	if v > histMaxValue {
		v = histMaxValue
	}
	s := bits.Len64(uint64(v)) - histSubBits - 1 // v>>s is in [128, 255]
	return s*histSub + int(uint64(v)>>uint(s))
}

// bucketHigh is the largest value that maps to bucket i.
func bucketHigh(i int) int64 {
	if i < 2*histSub {
		return int64(i)
	}
	s := i/histSub - 1
	m := int64(i - s*histSub)
	return (m+1)<<uint(s) - 1
}

// bucketLow is the smallest value that maps to bucket i.
func bucketLow(i int) int64 {
	if i < 2*histSub {
		return int64(i)
	}
	s := i/histSub - 1
	m := int64(i - s*histSub)
	return m << uint(s)
}

// Histogram is a plain (single-goroutine) latency histogram.
type Histogram struct {
	Counts [histBuckets]uint64
	N      uint64
	Sum    int64 // total of the recorded values, for the mean
	Max    int64
}

// Record adds one value.
func (h *Histogram) Record(v int64) {
	if v < 0 {
		v = 0
	}
	h.Counts[bucketOf(v)]++
	h.N++
	h.Sum += v
	if v > h.Max {
		h.Max = v
	}
}

// Merge adds o into h.
func (h *Histogram) Merge(o *Histogram) {
	if o.N == 0 {
		return
	}
	for i, c := range o.Counts {
		h.Counts[i] += c
	}
	h.N += o.N
	h.Sum += o.Sum
	h.Max = max(h.Max, o.Max)
}

// Quantile returns the value at quantile q (0..1): the upper bound of the
// bucket holding it, capped by the exact maximum, so it never understates. 0
// when empty.
func (h *Histogram) Quantile(q float64) int64 {
	if h.N == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(h.N)))
	if rank < 1 {
		rank = 1
	}
	if rank >= h.N {
		return h.Max
	}
	var seen uint64
	for i, c := range h.Counts {
		seen += c
		if seen >= rank {
			return min(bucketHigh(i), h.Max)
		}
	}
	return h.Max
}

// Mean is the average recorded value (0 when empty).
func (h *Histogram) Mean() float64 {
	if h.N == 0 {
		return 0
	}
	return float64(h.Sum) / float64(h.N)
}

// Sparse is a histogram in transit (worker to parent): only non-empty
// buckets, as [index, count] pairs.
type Sparse struct {
	Buckets [][2]uint64 `json:"b,omitempty"`
	N       uint64      `json:"n"`
	Sum     int64       `json:"sum"`
	Max     int64       `json:"max"`
}

// Sparse encodes h for a report.
func (h *Histogram) Sparse() Sparse {
	s := Sparse{N: h.N, Sum: h.Sum, Max: h.Max}
	for i, c := range h.Counts {
		if c != 0 {
			s.Buckets = append(s.Buckets, [2]uint64{uint64(i), c})
		}
	}
	return s
}

// AddSparse merges a decoded Sparse into h; out-of-range indexes are ignored.
func (h *Histogram) AddSparse(s Sparse) {
	for _, b := range s.Buckets {
		if b[0] < histBuckets {
			h.Counts[b[0]] += b[1]
		}
	}
	h.N += s.N
	h.Sum += s.Sum
	h.Max = max(h.Max, s.Max)
}

// atomicHist is a histogram that many goroutines record into at once.
// Contention is cut by striping: each connection records into one of a few
// stripes (see stats), so two cores rarely touch the same counters.
type atomicHist struct {
	counts [histBuckets]atomic.Uint64
	n      atomic.Uint64
	sum    atomic.Int64
	max    atomic.Int64
	last   atomic.Int64 // unix nanos of the latest record (deliveries/s window)
	_      [64]byte     // keep the next stripe's hot fields off this cache line
}

func (h *atomicHist) record(v, now int64) {
	if v < 0 {
		v = 0
	}
	h.counts[bucketOf(v)].Add(1)
	h.n.Add(1)
	h.sum.Add(v)
	for {
		m := h.max.Load()
		if v <= m || h.max.CompareAndSwap(m, v) {
			break
		}
	}
	if now > h.last.Load() {
		h.last.Store(now)
	}
}

// addTo adds a consistent-enough snapshot of h into dst (counters are read
// one by one while recording may go on; N is taken from the buckets read).
func (h *atomicHist) addTo(dst *Histogram) (last int64) {
	var n uint64
	for i := range h.counts {
		c := h.counts[i].Load()
		dst.Counts[i] += c
		n += c
	}
	dst.N += n
	dst.Sum += h.sum.Load()
	dst.Max = max(dst.Max, h.max.Load())
	return h.last.Load()
}
