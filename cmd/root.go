package cmd

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/imcloud/imcloud/roles"
)

// Exit codes.
const (
	exitOK     = 0
	exitFail   = 1
	exitConfig = 2
)

// configError marks errors that come from configuration or flags.
type configError struct{ err error }

func (e configError) Error() string { return e.err.Error() }
func (e configError) Unwrap() error { return e.err }

type rootFlags struct {
	config    string
	logLevel  string
	configSet bool
}

// Execute runs the command line and returns the process exit code.
func Execute() int {
	root := newRoot()
	if err := root.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "imcloud:", err)
		var ce configError
		if errors.As(err, &ce) {
			return exitConfig
		}
		return exitFail
	}
	return exitOK
}

func newRoot() *cobra.Command {
	f := &rootFlags{}
	root := &cobra.Command{
		Use:           "imcloud",
		Short:         "Push and instant-messaging middleware, wire-compatible with goim",
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRun: func(cmd *cobra.Command, _ []string) {
			f.configSet = cmd.Flags().Changed("config")
		},
	}
	root.PersistentFlags().StringVar(&f.config, "config", "config.yaml", "configuration file")
	root.PersistentFlags().StringVar(&f.logLevel, "log-level", "", "log level (debug, info, warn, error); overrides log.level")
	for _, role := range []struct{ name, short string }{
		{roles.RoleAll, "Run every role in one process on embedded defaults (in-memory queue, registry and store)"},
		{roles.RoleCloud, "Hold client connections (TCP :3101, WebSocket :3102/sub) and serve gRPC to job"},
		{roles.RoleJob, "Consume the push queue and deliver to cloud nodes"},
		{roles.RoleLogic, "Serve the REST API (:3111)"},
	} {
		root.AddCommand(newRoleCmd(f, role.name, role.short))
	}
	root.AddCommand(newVersionCmd(), newClientCmd(), newBenchCmd())
	return root
}

// loadConfig reads the config file (a missing default file means built-in
// defaults), applies the environment and flags, and validates for role.
func loadConfig(f *rootFlags, role string) (roles.Config, error) {
	path := f.config
	if !f.configSet {
		if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
			path = ""
		}
	}
	cfg, err := roles.Load(path, os.Environ())
	if err != nil {
		return cfg, configError{err}
	}
	if f.logLevel != "" {
		cfg.Log.Level = f.logLevel
	}
	if err := cfg.Validate(role); err != nil {
		return cfg, configError{err}
	}
	return cfg, nil
}

func newLogger(c roles.LogConfig) (*zap.Logger, error) {
	zc, err := loggerConfig(c)
	if err != nil {
		return nil, err
	}
	return zc.Build()
}

// loggerConfig is zap's configuration for c. With log.sampling, a message
// logged more than 100 times in a second (a fleet of clients sending bad
// frames, a mass of slow consumers) is kept 1 in 100 for the rest of that
// second: the metrics still count every event, and the log cannot flood.
func loggerConfig(c roles.LogConfig) (zap.Config, error) {
	lvl, err := zapcore.ParseLevel(c.Level)
	if err != nil {
		return zap.Config{}, configError{fmt.Errorf("log.level: %w", err)}
	}
	var zc zap.Config
	if c.Format == "json" {
		zc = zap.NewProductionConfig()
	} else {
		zc = zap.NewDevelopmentConfig()
		zc.Development = false
		zc.DisableStacktrace = true
	}
	zc.Level = zap.NewAtomicLevelAt(lvl)
	zc.Sampling = nil
	if c.Sampling {
		zc.Sampling = &zap.SamplingConfig{Initial: 100, Thereafter: 100}
	}
	return zc, nil
}

// signalContext ends on the first SIGINT/SIGTERM; a second one exits at once.
func signalContext(log *zap.Logger) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan os.Signal, 2)
	signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		select {
		case sig := <-ch:
			log.Info("shutting down", zap.String("signal", sig.String()))
			cancel()
		case <-ctx.Done():
			return
		}
		sig := <-ch
		log.Warn("second signal, exiting now", zap.String("signal", sig.String()))
		os.Exit(exitFail)
	}()
	return ctx, func() { signal.Stop(ch); cancel() }
}

func newRoleCmd(f *rootFlags, role, short string) *cobra.Command {
	return &cobra.Command{
		Use:   role,
		Short: short,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(f, role)
			if err != nil {
				return err
			}
			log, err := newLogger(cfg.Log)
			if err != nil {
				return err
			}
			defer func() { _ = log.Sync() }()
			app, err := roles.New(cfg, role, log)
			if err != nil {
				return configError{err}
			}
			ctx, stop := signalContext(log)
			defer stop()
			log.Info("imcloud starting", zap.String("role", role), zap.String("version", version()))
			if err := app.Run(ctx); err != nil {
				log.Error("imcloud stopped with an error", zap.Error(err))
				return err
			}
			log.Info("imcloud stopped")
			return nil
		},
	}
}
