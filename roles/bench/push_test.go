package bench

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

// TestStampIsDueTime: a push held up behind a slow answer on its lane
// carries the time it was due, not the time it went out, so its latency
// counts the wait (no coordinated omission); the lag is reported.
func TestStampIsDueTime(t *testing.T) {
	const stall = 300 * time.Millisecond
	var (
		mu     sync.Mutex
		stamps []Stamp
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		s, err := parseStamp(b)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		mu.Lock()
		stamps = append(stamps, s)
		first := len(stamps) == 1
		mu.Unlock()
		if first {
			time.Sleep(stall) // every push queued behind this one waits
		}
		_, _ = w.Write([]byte(`{"code":0}`))
	}))
	defer srv.Close()
	cfg := &Config{HTTP: srv.URL, Push: PushRoom, Rate: 20, Duration: 500 * time.Millisecond, Size: 100,
		HTTPConns: 1, Op: 1000, Timeout: 5 * time.Second}
	p := newPusher(cfg, []int32{1}, nil, 0)
	p.run(context.Background())

	mu.Lock()
	defer mu.Unlock()
	if len(stamps) != 10 {
		t.Fatalf("server got %d pushes, want 10", len(stamps))
	}
	for _, s := range stamps {
		due := p.start.Add(time.Duration(s.PushID) * p.period).UnixNano()
		if s.SentNanos != due {
			t.Errorf("push %d stamped %v after its due time", s.PushID, time.Duration(s.SentNanos-due))
		}
	}
	if lag := time.Duration(p.lagMax.Load()); lag < stall-p.period {
		t.Errorf("worst send lag %v, want at least %v", lag, stall-p.period)
	}
}
