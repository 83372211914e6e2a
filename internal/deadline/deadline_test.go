package deadline

import (
	"context"
	"testing"
	"time"
)

func TestReserve(t *testing.T) {
	tests := []struct {
		name     string
		timeout  time.Duration // 0: no deadline
		reserve  time.Duration
		wantLess time.Duration // the returned deadline is this much earlier
	}{
		{"room for the reserve", 10 * time.Second, time.Second, time.Second},
		{"too short to split", 1500 * time.Millisecond, time.Second, 0},
		{"no deadline", 0, time.Second, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var parent context.Context
			var cancel context.CancelFunc
			if tt.timeout > 0 {
				parent, cancel = context.WithTimeout(context.Background(), tt.timeout)
			} else {
				parent, cancel = context.WithCancel(context.Background())
			}
			defer cancel()
			ctx, stop := Reserve(parent, tt.reserve)
			defer stop()
			pd, pok := parent.Deadline()
			d, ok := ctx.Deadline()
			if ok != pok {
				t.Fatalf("deadline set = %v, parent's = %v", ok, pok)
			}
			if ok && pd.Sub(d) != tt.wantLess {
				t.Errorf("deadline %v before the parent's, want %v", pd.Sub(d), tt.wantLess)
			}
			cancel()
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
				t.Error("not canceled with its parent")
			}
		})
	}
}

func TestSleep(t *testing.T) {
	if !Sleep(context.Background(), time.Millisecond) {
		t.Error("Sleep of 1ms reported its context ended")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	start := time.Now()
	if Sleep(ctx, time.Hour) {
		t.Error("Sleep with an ended context reported the time passed")
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("Sleep with an ended context took %v", d)
	}
}
