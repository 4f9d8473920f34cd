// Package cli implements the strata command line: it parses arguments and
// dispatches to subcommands. The work itself lives in the engine packages.
package cli

import (
	"fmt"
	"io"

	"github.com/strata-storage/strata/internal/buildinfo"
)

// Exit codes scripts can rely on.
const (
	ExitOK    = 0
	ExitError = 1 // the command ran and failed
	ExitUsage = 2 // the command line was wrong
)

// Main runs the command line args and returns the process exit code.
func Main(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return ExitUsage
	}
	switch args[0] {
	case "version", "--version":
		fmt.Fprintf(stdout, "strata %s\n", buildinfo.Version)
		return ExitOK
	case "perf":
		return perf(args[1:], stdout, stderr)
	case "help", "-h", "--help":
		usage(stdout)
		return ExitOK
	default:
		fmt.Fprintf(stderr, "strata: unknown command %q\n", args[0])
		usage(stderr)
		return ExitUsage
	}
}

func usage(w io.Writer) {
	fmt.Fprint(w, `usage: strata COMMAND [ARGS]

commands:
  perf       drive a device with a load and report IOPS and latency
  version    print the version
  help       print this help
`)
}
