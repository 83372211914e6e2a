package cmd

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

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
	config      string
	logLevel    string
	configSet   bool
	logLevelSet bool
}

// Execute runs the command line and returns the process exit code.
func Execute() int {
	root := newRoot()
	err := root.Execute()
	if err != nil {
		fmt.Fprintln(os.Stderr, "imcloud:", err)
	}
	return exitCode(err)
}

// exitCode is the process exit code for what Execute returned. A command
// line that cannot run is an error of configuration too: exit 2, which the
// systemd units do not restart on.
func exitCode(err error) int {
	var ce configError
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &ce), errors.Is(err, roles.ErrConfig), strings.HasPrefix(err.Error(), "unknown command "):
		return exitConfig
	}
	return exitFail
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
			f.logLevelSet = cmd.Flags().Changed("log-level")
		},
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return configError{err} })
	root.PersistentFlags().StringVar(&f.config, "config", "config.yaml", "configuration file")
	root.PersistentFlags().StringVar(&f.logLevel, "log-level", "", "log level (debug, info, warn, error); overrides log.level")
	for _, role := range []struct{ name, short string }{
		{roles.RoleAll, "Run every role in one process (memory queue, registry and store unless configured otherwise: needs no other server)"},
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
// It returns the file read, "" for none.
func loadConfig(f *rootFlags, role string) (roles.Config, string, error) {
	path := f.config
	if f.configSet && path == "" {
		// What --config "$UNSET" gives: not a request for the defaults.
		return roles.Config{}, "", configError{errors.New("--config: empty path")}
	}
	if !f.configSet {
		if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
			path = ""
		}
	}
	cfg, err := roles.Load(path, os.Environ())
	if err != nil {
		return cfg, path, configError{err}
	}
	if f.logLevelSet {
		// The levels log.level takes, no more: zap would also parse "DEBUG",
		// "fatal" or "dpanic", which Validate then rejects naming log.level
		// rather than the flag that set it.
		switch f.logLevel {
		case "debug", "info", "warn", "error":
		default:
			return cfg, path, configError{fmt.Errorf("--log-level: %q is not one of debug, info, warn, error", f.logLevel)}
		}
		cfg.Log.Level = f.logLevel
	}
	if err := cfg.Validate(role); err != nil {
		return cfg, path, configError{err}
	}
	return cfg, path, nil
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
	}
	// Errors here are conditions (a backend, a clash), described by their
	// fields: a stack trace would only bury them.
	zc.DisableStacktrace = true
	zc.Level = zap.NewAtomicLevelAt(lvl)
	zc.Sampling = nil
	if c.Sampling {
		zc.Sampling = &zap.SamplingConfig{Initial: 100, Thereafter: 100}
	}
	return zc, nil
}

// repeatWindow is how soon after the first stop signal a second one is
// taken as the same one delivered twice.
const repeatWindow = 100 * time.Millisecond

// signalContext ends on the first SIGINT/SIGTERM; a second one exits at
// once. SIGHUP, by habit a reload, is logged and ignored: there is no
// reload, and its default action would kill the process without a drain.
func signalContext(log *zap.Logger) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan os.Signal, 2)
	signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM)
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go func() {
		for {
			select {
			case <-hup:
				log.Warn("SIGHUP ignored: the configuration is not reloaded; restart the process to apply changes")
				continue
			case sig := <-ch:
				log.Info("shutting down", zap.String("signal", sig.String()))
				cancel()
			case <-ctx.Done():
				return
			}
			break
		}
		first := time.Now()
		for {
			sig := <-ch
			if time.Since(first) < repeatWindow {
				// The same stop sent twice at once (timeout(1) signals the
				// process and its group), not an operator insisting.
				log.Info("signal repeated at once, taken as the same stop", zap.String("signal", sig.String()))
				continue
			}
			log.Warn("second signal, exiting now", zap.String("signal", sig.String()))
			os.Exit(exitFail)
		}
	}()
	return ctx, func() { signal.Stop(ch); signal.Stop(hup); cancel() }
}

// noArgs refuses arguments as a configuration error (exit 2).
func noArgs(cmd *cobra.Command, args []string) error {
	if err := cobra.NoArgs(cmd, args); err != nil {
		return configError{err}
	}
	return nil
}

func newRoleCmd(f *rootFlags, role, short string) *cobra.Command {
	return &cobra.Command{
		Use:   role,
		Short: short,
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			// Until signalContext takes SIGHUP over, it must not kill the
			// process either.
			signal.Ignore(syscall.SIGHUP)
			cfg, path, err := loadConfig(f, role)
			if err != nil {
				return err
			}
			log, err := newLogger(cfg.Log)
			if err != nil {
				return err
			}
			defer func() { _ = log.Sync() }()
			if path == "" {
				path = "(none: built-in defaults)"
			}
			log.Info("imcloud starting", zap.String("role", role), zap.String("version", version()), zap.String("config", path))
			ctx, stop := signalContext(log)
			defer stop()
			app, err := roles.New(cfg, role, log)
			if err != nil {
				return configError{err}
			}
			if err := app.Run(ctx); err != nil {
				log.Error("imcloud stopped with an error", zap.Error(err))
				return err
			}
			log.Info("imcloud stopped")
			return nil
		},
	}
}
