package rolestest

import (
	"context"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/imcloud/imcloud/roles"
)

// StartAll runs `imcloud all` (memory backends) in process on random
// loopback ports, with mutate applied to its config, and waits until it is
// ready. stop ends it and reports an error exit; it also runs at cleanup.
func StartAll(tb testing.TB, mutate func(*roles.Config)) (app *roles.App, stop func()) {
	tb.Helper()
	cfg := roles.Default()
	cfg.Node.ID = "test-node"
	cfg.Cloud.TCPAddr = "127.0.0.1:0"
	cfg.Cloud.WSAddr = "127.0.0.1:0"
	cfg.Cloud.GRPCAddr = "127.0.0.1:0"
	cfg.Logic.HTTPAddr = "127.0.0.1:0"
	if mutate != nil {
		mutate(&cfg)
	}
	if err := cfg.Validate(roles.RoleAll); err != nil {
		tb.Fatalf("config: %v", err)
	}
	app, err := roles.New(cfg, roles.RoleAll, zaptest.NewLogger(tb, zaptest.Level(zap.WarnLevel)))
	if err != nil {
		tb.Fatalf("new app: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- app.Run(ctx) }()
	for deadline := time.Now().Add(20 * time.Second); !app.Ready(); time.Sleep(5 * time.Millisecond) {
		select {
		case err := <-done:
			cancel()
			tb.Fatalf("app stopped during start: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			cancel()
			tb.Fatal("app not ready in time")
		}
	}
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					tb.Errorf("app stopped with error: %v", err)
				}
			case <-time.After(30 * time.Second):
				tb.Error("app did not stop in time")
			}
		})
	}
	tb.Cleanup(stop)
	return app, stop
}
