package logic

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/imcloud/imcloud/protocol/pb"
)

// benchPush serves one push request b.N times over real memory backends; a
// consumer drains the queue so it never fills.
func benchPush(b *testing.B, target string) {
	e := newEnv(b, envOpts{queue: 1 << 20})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = e.q.Consume(ctx, func(context.Context, *pb.PushMsg, func()) error { return nil })
	}()
	b.Cleanup(func() { cancel(); <-done })
	body := strings.Repeat("x", 256)
	b.ReportAllocs()
	for b.Loop() {
		req := httptest.NewRequest(http.MethodPost, target, strings.NewReader(body))
		rec := httptest.NewRecorder()
		e.h.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			b.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
	}
}

func BenchmarkPushRoom(b *testing.B) {
	benchPush(b, "/goim/push/room?operation=1000&type=live&room=1000")
}

func BenchmarkPushMidsOffline(b *testing.B) {
	benchPush(b, "/goim/push/mids?operation=1000&mids=999999")
}
