package redis

import (
	"strconv"
	"testing"

	"github.com/imcloud/imcloud/store"
	"github.com/imcloud/imcloud/store/redis/redistest"
)

// BenchmarkKeysByMids looks up 100 mids of two devices each: one pipelined
// round trip to a local redis-server.
func BenchmarkKeysByMids(b *testing.B) {
	s := newStore(b, redistest.Start(b))
	ctx := b.Context()
	mids := make([]int64, 100)
	for i := range mids {
		mids[i] = int64(i + 1)
		for d := range 2 {
			sess := store.Session{Mid: mids[i], Key: strconv.Itoa(i*2 + d), Node: "node-" + strconv.Itoa(i%8)}
			if err := s.Bind(ctx, sess); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		got, err := s.KeysByMids(ctx, mids)
		if err != nil || len(got) != len(mids) {
			b.Fatalf("KeysByMids = %d mids, %v", len(got), err)
		}
	}
}

// BenchmarkBind binds sessions of 1000 users round robin (one EVALSHA each).
func BenchmarkBind(b *testing.B) {
	s := newStore(b, redistest.Start(b))
	ctx := b.Context()
	sessions := make([]store.Session, 1000)
	for i := range sessions {
		sessions[i] = store.Session{Mid: int64(i + 1), Key: "k" + strconv.Itoa(i), Node: "node-" + strconv.Itoa(i%8)}
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if err := s.Bind(ctx, sessions[i%len(sessions)]); err != nil {
			b.Fatal(err)
		}
		i++
	}
}
