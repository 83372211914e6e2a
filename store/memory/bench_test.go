package memory

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/imcloud/imcloud/store"
)

// BenchmarkKeysByMids looks up 100 mids of two devices each in a store
// holding 100,000 users.
func BenchmarkKeysByMids(b *testing.B) {
	const users, lookup = 100_000, 100
	s := New(time.Hour)
	ctx := context.Background()
	for mid := range int64(users) {
		for d := range 2 {
			sess := store.Session{
				Mid:  mid,
				Key:  strconv.FormatInt(mid, 10) + "-" + strconv.Itoa(d),
				Node: "node-" + strconv.Itoa(int(mid)%8),
			}
			if err := s.Bind(ctx, sess); err != nil {
				b.Fatal(err)
			}
		}
	}
	mids := make([]int64, lookup)
	for i := range mids {
		mids[i] = int64(i * (users / lookup))
	}
	b.ReportAllocs()
	for b.Loop() {
		got, err := s.KeysByMids(ctx, mids)
		if err != nil || len(got) != lookup {
			b.Fatalf("KeysByMids = %d mids, %v", len(got), err)
		}
	}
}

// BenchmarkKeysByMidsParallel is BenchmarkKeysByMids from every P at once,
// to show the read lock is shared.
func BenchmarkKeysByMidsParallel(b *testing.B) {
	s := New(time.Hour)
	ctx := context.Background()
	mids := make([]int64, 100)
	for i := range mids {
		mids[i] = int64(i)
		for d := range 2 {
			if err := s.Bind(ctx, store.Session{Mid: int64(i), Key: strconv.Itoa(i*2 + d), Node: "n"}); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := s.KeysByMids(ctx, mids); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
