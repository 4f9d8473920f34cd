// Package cli implements the strata command line: it parses arguments and
// dispatches to subcommands. The work itself lives in the engine packages:
// strata serve runs internal/daemon, the client commands talk to it through
// the control API (package api) on its Unix socket.
package cli

import (
	"fmt"
	"io"
	"strings"

	"github.com/strata-storage/strata/internal/buildinfo"
)

// Exit codes scripts can rely on.
const (
	ExitOK          = 0
	ExitError       = 1 // the command ran and failed (the API refused, say)
	ExitUsage       = 2 // the command line was wrong
	ExitUnreachable = 3 // the daemon could not be reached
)

// SocketEnv names the API socket when --socket is not given.
const SocketEnv = "STRATA_SOCKET"

// Main runs the command line args and returns the process exit code.
func Main(args []string, stdout, stderr io.Writer) int {
	// A --socket before the command applies to it.
	var socket string
	for len(args) > 0 && (args[0] == "--socket" || args[0] == "-socket" || strings.HasPrefix(args[0], "--socket=") || strings.HasPrefix(args[0], "-socket=")) {
		if _, v, ok := strings.Cut(args[0], "="); ok {
			socket, args = v, args[1:]
			continue
		}
		if len(args) < 2 {
			fmt.Fprintln(stderr, "strata: --socket needs a path")
			return ExitUsage
		}
		socket, args = args[1], args[2:]
	}
	if len(args) == 0 {
		usage(stderr)
		return ExitUsage
	}
	c := &client{stdout: stdout, stderr: stderr, socket: socket}
	switch args[0] {
	case "version", "--version":
		fmt.Fprintf(stdout, "strata %s\n", buildinfo.Version)
		return ExitOK
	case "perf":
		return perf(args[1:], stdout, stderr)
	case "pcie":
		return pcieCmd(args[1:], stdout, stderr)
	case "serve":
		return serve(args[1:], stdout, stderr)
	case "pool":
		return c.group("pool", args[1:], poolCommands)
	case "volume":
		return c.group("volume", args[1:], volumeCommands)
	case "snapshot":
		return c.group("snapshot", args[1:], snapshotCommands)
	case "share":
		return c.group("share", args[1:], shareCommands)
	case "host":
		return c.group("host", args[1:], hostCommands)
	case "status":
		return c.run("status", args[1:], statusCmd)
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
	fmt.Fprint(w, `usage: strata [--socket PATH] COMMAND [ARGS]

daemon:
  serve      run the storage daemon (strata serve -h for its flags)

client (talks to the daemon's API socket: --socket, $STRATA_SOCKET,
or /run/strata/strata.sock):
  pool       create NAME URI [--format lvol] | import NAME URI | check NAME | list | delete NAME
  volume     create NAME --pool P --size S [--thin] | create NAME --snapshot SNAP | list | resize NAME --size S | delete NAME
  snapshot   create VOLUME NAME | list [VOLUME] | delete NAME
  share      add VOLUME --nqn NQN --listen ADDR:PORT... [--host NQN]... | list | remove NAME
  host       add NAME --nqn NQN | list | remove NAME
  status     reactors, pools, volumes and their I/O rates

tools:
  perf       drive a local device with a load and report IOPS and latency
  pcie       bind|unbind|show BDF: move an NVMe drive between the kernel and Strata
  version    print the version
  help       print this help

Client commands print tables, or JSON with -o json. Exit codes: 0 ok,
1 the operation failed, 2 usage error, 3 daemon unreachable.
`)
}
