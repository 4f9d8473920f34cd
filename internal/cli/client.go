package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/strata-storage/strata/api"
	"github.com/strata-storage/strata/bdev"
)

// clientTimeout bounds one client command (creating a large volume clears
// its space first, so it is generous).
const clientTimeout = 15 * time.Minute

// client runs the commands that talk to the daemon.
type client struct {
	stdout, stderr io.Writer
	socket         string // given before the command
}

// command is one client subcommand. setup declares its flags and returns
// the function that runs it with their values.
type command struct {
	args  string // synopsis of the positional arguments
	nargs int    // how many positional arguments it takes
	// optional is how many more it may take (the last ones).
	optional int
	summary  string
	setup    func(fs *flag.FlagSet) func(inv *invocation) error
}

// invocation is a command being run: its parsed arguments and the API
// client.
type invocation struct {
	name   string
	args   []string
	json   bool
	api    *api.Client
	ctx    context.Context
	stdout io.Writer
	stderr io.Writer
}

// usageError is a command line the command cannot run.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return usageError{fmt.Sprintf(format, args...)} }

// group dispatches "strata GROUP SUBCOMMAND ...".
func (c *client) group(name string, args []string, cmds map[string]command) int {
	groupUsage := func(w io.Writer) {
		fmt.Fprintf(w, "usage: strata %s SUBCOMMAND [ARGS] [-o json] [--socket PATH]\n\nsubcommands:\n", name)
		for _, sub := range slices.Sorted(maps.Keys(cmds)) {
			fmt.Fprintf(w, "  %s %s\n      %s\n", sub, cmds[sub].args, cmds[sub].summary)
		}
	}
	if len(args) == 0 {
		groupUsage(c.stderr)
		return ExitUsage
	}
	if args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		groupUsage(c.stdout)
		return ExitOK
	}
	cmd, ok := cmds[args[0]]
	if !ok {
		fmt.Fprintf(c.stderr, "strata %s: unknown subcommand %q\n", name, args[0])
		groupUsage(c.stderr)
		return ExitUsage
	}
	return c.run(name+" "+args[0], args[1:], cmd)
}

// run parses a command's arguments, runs it and maps its outcome to an
// exit code.
func (c *client) run(name string, args []string, cmd command) int {
	fs := flag.NewFlagSet("strata "+name, flag.ContinueOnError)
	fs.SetOutput(c.stderr)
	socket := fs.String("socket", "", "the daemon's API socket (default $"+SocketEnv+" or "+api.DefaultSocket+")")
	output := fs.String("o", "text", "output: text or json")
	runCmd := cmd.setup(fs)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: strata %s %s [flags]\n  %s\n\nflags:\n", name, cmd.args, cmd.summary)
		fs.PrintDefaults()
	}
	pos, err := parseInterspersed(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		return ExitOK
	}
	if err != nil {
		return ExitUsage // the flag package has said why
	}
	if len(pos) < cmd.nargs || len(pos) > cmd.nargs+cmd.optional {
		fmt.Fprintf(c.stderr, "strata %s: want %s, got %d arguments\n", name, orNone(cmd.args), len(pos))
		fs.Usage()
		return ExitUsage
	}
	if *output != "text" && *output != "json" {
		fmt.Fprintf(c.stderr, "strata %s: -o %q: want text or json\n", name, *output)
		return ExitUsage
	}
	path := firstNonEmpty(*socket, c.socket, os.Getenv(SocketEnv), api.DefaultSocket)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, clientTimeout)
	defer cancel()
	inv := &invocation{
		name: name, args: pos, json: *output == "json", api: api.NewUnixClient(path),
		ctx: ctx, stdout: c.stdout, stderr: c.stderr,
	}
	err = runCmd(inv)
	var ue usageError
	var apiErr *api.Error
	switch {
	case err == nil:
		return ExitOK
	case errors.As(err, &ue):
		fmt.Fprintf(c.stderr, "strata %s: %v\n", name, err)
		return ExitUsage
	case api.IsUnreachable(err):
		fmt.Fprintf(c.stderr, "strata %s: %v\n(is strata serve running? give its socket with --socket or $%s)\n", name, err, SocketEnv)
		return ExitUnreachable
	case errors.As(err, &apiErr):
		fmt.Fprintf(c.stderr, "strata %s: %s (%s)\n", name, apiErr.Message, apiErr.Code)
		return ExitError
	default:
		fmt.Fprintf(c.stderr, "strata %s: %v\n", name, err)
		return ExitError
	}
}

func orNone(s string) string {
	if s == "" {
		return "no arguments"
	}
	return s
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

// parseInterspersed parses flags that may come before, between or after
// the positional arguments ("volume create NAME --pool P"), which the flag
// package alone stops at; everything after "--" is positional.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if used := len(args) - len(rest); used > 0 && args[used-1] == "--" {
			return append(pos, rest...), nil
		}
		if len(rest) == 0 {
			return pos, nil
		}
		pos, args = append(pos, rest[0]), rest[1:]
	}
}

// listFlag collects a repeatable string flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

// sizeFlag parses a size with a unit at flag-parsing time.
type sizeFlag struct {
	bytes uint64
	set   bool
}

func (s *sizeFlag) String() string {
	if !s.set {
		return ""
	}
	return formatBytes(s.bytes)
}

func (s *sizeFlag) Set(v string) error {
	n, err := bdev.ParseSize(v)
	if err != nil {
		return err
	}
	s.bytes, s.set = n, true
	return nil
}

// printJSON writes v as indented JSON.
func (inv *invocation) printJSON(v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(inv.stdout, "%s\n", b)
	return err
}

// table writes rows under header, aligned.
func (inv *invocation) table(header []string, rows [][]string) error {
	tw := tabwriter.NewWriter(inv.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	return tw.Flush()
}

// formatBytes writes n in binary units: "512 MiB", "1.5 GiB", "4096 B".
func formatBytes(n uint64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"}
	v, i := float64(n), 0
	for v >= 1024 && i < len(units)-1 {
		v /= 1024
		i++
	}
	if i == 0 {
		return fmt.Sprintf("%d B", n)
	}
	s := fmt.Sprintf("%.1f", v)
	return strings.TrimSuffix(s, ".0") + " " + units[i]
}

// deleted reports a deletion.
func (inv *invocation) deleted(kind, name string) error {
	if inv.json {
		return inv.printJSON(map[string]string{"deleted": name})
	}
	_, err := fmt.Fprintf(inv.stdout, "%s %s deleted\n", kind, name)
	return err
}

func createdWord(created bool) string {
	if created {
		return "created"
	}
	return "already exists"
}
