// Package cmd is the command line: the cobra root (--config, --log-level)
// and one file per subcommand. It alone handles signals and exit codes.
package cmd
