package roles

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sync"
	"sync/atomic"
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
	// journalRun: the end of Run is journaled too.
	journalRun bool
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
	if f.journalRun {
		f.journal.add("run ended " + f.name)
	}
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
			err := runServices(ctx, zap.NewNop(), services, time.Second, 0, func(r bool) { ready = append(ready, r) })
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

// TestRunServicesLameDuck: after the signal the node reports itself not
// ready and keeps running for the lame duck, then stops; a service failing
// meanwhile cuts the lame duck short.
func TestRunServicesLameDuck(t *testing.T) {
	const lameDuck = 300 * time.Millisecond
	for _, fail := range []bool{false, true} {
		j := &journal{}
		var b Service = &fakeService{name: "b", journal: j}
		if fail {
			b = &lateFailer{fakeService: fakeService{name: "b", journal: j}, after: 150 * time.Millisecond}
		}
		services := []Service{&fakeService{name: "a", journal: j, journalRun: true}, b}
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(100*time.Millisecond, cancel)
		var notReady atomic.Int64 // when the node first said it is not ready
		onReady := func(r bool) {
			j.add(fmt.Sprint("ready ", r))
			if !r {
				notReady.CompareAndSwap(0, time.Now().UnixNano())
			}
		}
		err := runServices(ctx, zap.NewNop(), services, time.Second, lameDuck, onReady)
		elapsed := time.Since(time.Unix(0, notReady.Load()))
		if fail {
			if err == nil {
				t.Error("a run failing during the lame duck: no error")
			}
			if elapsed >= lameDuck {
				t.Errorf("a failing run did not cut the lame duck short: %s", elapsed)
			}
		} else {
			if err != nil {
				t.Errorf("runServices = %v", err)
			}
			if elapsed < lameDuck {
				t.Errorf("stopped %s after the node said it was not ready, want the lame duck of %s first", elapsed, lameDuck)
			}
		}
		// Not ready before any Run ends; then (in either order) the runs
		// end and runServices says not ready again; then the stops.
		got := j.list()
		if len(got) != 8 || !reflect.DeepEqual(got[:4], []string{"start a", "start b", "ready true", "ready false"}) ||
			!reflect.DeepEqual(got[6:], []string{"stop b", "stop a"}) || !slices.Contains(got[4:6], "run ended a") {
			t.Errorf("fail=%v: calls = %q", fail, got)
		}
		cancel()
	}
}

// lateFailer's Run fails after a while, even once its ctx is past.
type lateFailer struct {
	fakeService
	after time.Duration
}

func (l *lateFailer) Run(context.Context) error {
	time.Sleep(l.after)
	return errors.New("late failure")
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
