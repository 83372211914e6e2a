package bench

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

func TestBucketsCoverEveryValue(t *testing.T) {
	prev := -1
	for _, v := range []int64{0, 1, 127, 128, 129, 255, 256, 257, 511, 512, 1000, 1 << 20, 123456789, histMaxValue - 1, histMaxValue} {
		i := bucketOf(v)
		if i < prev {
			t.Fatalf("bucketOf(%d) = %d, below the bucket of a smaller value (%d)", v, i, prev)
		}
		prev = i
		if lo, hi := bucketLow(i), bucketHigh(i); v < lo || v > hi {
			t.Fatalf("value %d in bucket %d = [%d, %d]", v, i, lo, hi)
		}
		if i >= histBuckets {
			t.Fatalf("bucketOf(%d) = %d, out of %d buckets", v, i, histBuckets)
		}
	}
	if bucketOf(histMaxValue*4) != histBuckets-1 || bucketOf(-5) != 0 {
		t.Fatal("out-of-range values are not clamped")
	}
	// Buckets are contiguous and at most 1/128 of their value wide.
	for i := 1; i < histBuckets; i++ {
		if bucketLow(i) != bucketHigh(i-1)+1 {
			t.Fatalf("gap between buckets %d and %d", i-1, i)
		}
		if w := bucketHigh(i) - bucketLow(i) + 1; float64(w) > float64(bucketLow(i))/128+1 {
			t.Fatalf("bucket %d is %d wide at %d", i, w, bucketLow(i))
		}
	}
}

func TestQuantilesWithinOnePercent(t *testing.T) {
	var h Histogram
	vals := make([]int64, 0, 100000)
	r := rand.New(rand.NewPCG(1, 2))
	for range 100000 {
		// Log-uniform between 10 µs and 10 s, in ns.
		v := int64(math.Exp(math.Log(1e4) + r.Float64()*(math.Log(1e10)-math.Log(1e4))))
		vals = append(vals, v)
		h.Record(v)
	}
	slices.Sort(vals)
	for _, q := range []float64{0.5, 0.9, 0.99, 0.999} {
		exact := vals[int(math.Ceil(q*float64(len(vals))))-1]
		got := h.Quantile(q)
		if got < exact {
			t.Errorf("q%.3f = %d, below the exact %d (must never understate)", q, got, exact)
		}
		if rel := float64(got-exact) / float64(exact); rel > 0.01 {
			t.Errorf("q%.3f = %d, exact %d: %.2f%% off", q, got, exact, 100*rel)
		}
	}
	if h.Quantile(1) != vals[len(vals)-1] || h.Max != vals[len(vals)-1] {
		t.Errorf("max %d / q1 %d, want %d", h.Max, h.Quantile(1), vals[len(vals)-1])
	}
	if h.N != 100000 {
		t.Errorf("N = %d", h.N)
	}
}

func TestQuantileSmallCounts(t *testing.T) {
	var h Histogram
	if h.Quantile(0.99) != 0 || h.Mean() != 0 {
		t.Fatal("empty histogram is not zero")
	}
	for _, v := range []int64{1000, 2000, 3000, 4000} {
		h.Record(v)
	}
	// Bucket upper bounds: within 1%, never below.
	for q, want := range map[float64]int64{0.25: 1000, 0.5: 2000, 0.75: 3000, 1: 4000} {
		got := h.Quantile(q)
		if got < want || got > want+want/100 {
			t.Errorf("q%.2f = %d, want about %d", q, got, want)
		}
	}
	if h.Mean() != 2500 {
		t.Errorf("mean %v", h.Mean())
	}
}

func TestSparseRoundTripAndMerge(t *testing.T) {
	var a, b Histogram
	for i := range int64(1000) {
		a.Record(i * 1000)
		b.Record(i * 7)
	}
	var ah atomicHist
	for i := range int64(1000) {
		ah.record(i*1000, 5)
	}
	var fromAtomic Histogram
	if last := ah.addTo(&fromAtomic); last != 5 {
		t.Errorf("last = %d", last)
	}
	if fromAtomic != a {
		t.Error("atomic histogram differs from the plain one")
	}
	js, err := json.Marshal(a.Sparse())
	if err != nil {
		t.Fatal(err)
	}
	var sp Sparse
	if err := json.Unmarshal(js, &sp); err != nil {
		t.Fatal(err)
	}
	var back Histogram
	back.AddSparse(sp)
	if back != a {
		t.Fatal("sparse round trip changed the histogram")
	}
	back.Merge(&b)
	if back.N != 2000 || back.Max != a.Max || back.Sum != a.Sum+b.Sum {
		t.Fatalf("merge: N %d max %d sum %d", back.N, back.Max, back.Sum)
	}
}
