package roles

import (
	"context"
	"errors"
	"reflect"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
)

// fakeService records its lifecycle calls in a shared journal.
type fakeService struct {
	name     string
	journal  *journal
	startErr error
	waitCtx  bool // Start blocks until its ctx ends, as one waiting for a backend
	runErr   error
}

type journal struct {
	mu      sync.Mutex
	entries []string
}

func (j *journal) add(s string) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.entries = append(j.entries, s)
}

func (j *journal) list() []string {
	j.mu.Lock()
	defer j.mu.Unlock()
	return append([]string(nil), j.entries...)
}

func (f *fakeService) Name() string { return f.name }

func (f *fakeService) Start(ctx context.Context) error {
	f.journal.add("start " + f.name)
	if f.waitCtx {
		<-ctx.Done()
		return ctx.Err()
	}
	return f.startErr
}

func (f *fakeService) Run(ctx context.Context) error {
	if f.runErr != nil {
		return f.runErr
	}
	<-ctx.Done()
	return nil
}

func (f *fakeService) Stop(context.Context) error {
	f.journal.add("stop " + f.name)
	return nil
}

func TestRunServices(t *testing.T) {
	boom := errors.New("boom")
	tests := []struct {
		name      string
		b         fakeService // the second of three services
		cancel    bool        // a signal arrives after 100ms
		wantErr   error
		wantReady []bool
		want      []string
	}{
		{
			name: "runs until the signal, stops in reverse", b: fakeService{}, cancel: true,
			wantReady: []bool{true, false},
			want:      []string{"start a", "start b", "start c", "stop c", "stop b", "stop a"},
		},
		{
			name: "a failed start stops what started", b: fakeService{startErr: boom},
			wantErr: boom,
			want:    []string{"start a", "start b", "stop a"},
		},
		{
			name: "a signal while a start waits is a clean stop", b: fakeService{waitCtx: true}, cancel: true,
			want: []string{"start a", "start b", "stop a"},
		},
		{
			name: "a failing run stops every service", b: fakeService{runErr: boom},
			wantErr: boom, wantReady: []bool{true, false},
			want: []string{"start a", "start b", "start c", "stop c", "stop b", "stop a"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			j := &journal{}
			b := tt.b
			b.name, b.journal = "b", j
			services := []Service{&fakeService{name: "a", journal: j}, &b, &fakeService{name: "c", journal: j}}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if tt.cancel {
				time.AfterFunc(100*time.Millisecond, cancel)
			}
			var ready []bool
			err := runServices(ctx, zap.NewNop(), services, time.Second, func(r bool) { ready = append(ready, r) })
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && err != nil) {
				t.Errorf("runServices = %v, want %v", err, tt.wantErr)
			}
			if got := j.list(); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("calls = %q, want %q", got, tt.want)
			}
			if !reflect.DeepEqual(ready, tt.wantReady) {
				t.Errorf("onReady calls = %v, want %v", ready, tt.wantReady)
			}
		})
	}
}

// TestBackendsCloseAbandonsStuckClient: a client that cannot close (its
// server unreachable) is abandoned after the timeout; clients close newest
// first, and errors are reported.
func TestBackendsCloseAbandonsStuckClient(t *testing.T) {
	newest := make(chan struct{})
	stuck := make(chan struct{})
	defer close(stuck)
	b := &backends{closers: []func() error{
		func() error { <-stuck; return nil },
		func() error { close(newest); return nil },
	}}
	start := time.Now()
	if err := b.close(50 * time.Millisecond); err == nil {
		t.Fatal("close reported success with a client stuck")
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("close waited %v", d)
	}
	select {
	case <-newest:
	case <-time.After(10 * time.Second):
		t.Error("the newest client was not closed before the stuck one")
	}

	boom := errors.New("boom")
	b = &backends{closers: []func() error{func() error { return boom }}}
	if err := b.close(time.Second); !errors.Is(err, boom) {
		t.Errorf("close = %v, want %v", err, boom)
	}
}
