package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

func run(args ...string) (code int, stdout, stderr string) {
	var o, e bytes.Buffer
	code = Main(args, &o, &e)
	return code, o.String(), e.String()
}

func TestUsageAndVersion(t *testing.T) {
	code, _, errOut := run()
	require.Equal(t, ExitUsage, code)
	require.Contains(t, errOut, "usage: strata")
	code, _, errOut = run("frobnicate")
	require.Equal(t, ExitUsage, code)
	require.Contains(t, errOut, `unknown command "frobnicate"`)
	code, out, _ := run("version")
	require.Equal(t, ExitOK, code)
	require.Contains(t, out, "strata ")
}

func TestPerfLocalJSON(t *testing.T) {
	img := filepath.Join(t.TempDir(), "img")
	code, out, errOut := run("perf", "-device", "uring://"+img+"?size=8MiB", "-rw", "randrw", "-ios", "2000", "-qd", "8", "-verify", "-o", "json")
	require.Equal(t, ExitOK, code, errOut)
	var res struct {
		IOs        uint64 `json:"ios"`
		Mismatches uint64 `json:"verify_mismatches"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &res))
	require.EqualValues(t, 2000, res.IOs)
	require.Zero(t, res.Mismatches)
}

func TestPerfErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"perf"}, ExitUsage, "give -device"},
		{[]string{"perf", "-device", "null:///", "-rw", "diagonal"}, ExitUsage, "unknown pattern"},
		{[]string{"perf", "-device", "null:///", "-bs", "4Q"}, ExitUsage, "unknown unit"},
		{[]string{"perf", "-device", "null:///", "-o", "xml"}, ExitUsage, "want text or json"},
		{[]string{"perf", "-device", "tape:///", "-ios", "1"}, ExitError, "unknown device URI scheme"},
		{[]string{"perf", "-device", "null:///", "-bs", "1000", "-ios", "1"}, ExitError, "not a positive multiple"},
	} {
		code, _, errOut := run(tc.args...)
		require.Equal(t, tc.code, code, "%v: %s", tc.args, errOut)
		require.Contains(t, errOut, tc.msg, "%v", tc.args)
	}
}

func TestProgressLine(t *testing.T) {
	require.Equal(t, "\r\033[K[    3s]      25000 IOPS      97.7 MiB/s",
		progressLine(3*time.Second, 2*time.Second, 50000, 50000*4096))
}

// openPTY returns both ends of a new pseudo-terminal.
func openPTY(t *testing.T) (master, slave *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	require.NoError(t, unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0))
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	require.NoError(t, err)
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	return m, s
}

// strata perf shows a live progress line on a terminal and none in a pipe.
func TestPerfProgressOnlyOnTerminal(t *testing.T) {
	master, slave := openPTY(t)
	var out bytes.Buffer
	code := Main([]string{"perf", "-device", "null:///?size=64MiB", "-time", "2500ms", "-qd", "4"}, &out, slave)
	require.Equal(t, ExitOK, code)
	slave.Close()
	tty, _ := io.ReadAll(master) // ends with EIO once the slave is closed
	require.Contains(t, string(tty), "IOPS", "progress lines on the terminal")
	require.Contains(t, string(tty), "[    2s]")
	require.True(t, strings.HasSuffix(string(tty), "\r\033[K"), "the line is cleared at the end: %q", tty)
	require.NotContains(t, out.String(), "\033[K", "the result on stdout is plain")

	r, w, err := os.Pipe()
	require.NoError(t, err)
	code = Main([]string{"perf", "-device", "null:///?size=64MiB", "-time", "1500ms", "-qd", "4"}, &out, w)
	require.Equal(t, ExitOK, code)
	w.Close()
	piped, _ := io.ReadAll(r)
	require.Empty(t, piped, "nothing but errors goes to a piped stderr")
}

func TestPCIeUsage(t *testing.T) {
	code, _, errOut := run("pcie")
	require.Equal(t, ExitUsage, code)
	require.Contains(t, errOut, "bind|unbind|show")
	code, _, errOut = run("pcie", "bind", "00:04.0")
	require.Equal(t, ExitUsage, code)
	require.Contains(t, errOut, "DOMAIN:BUS:DEVICE.FUNCTION")
	code, _, errOut = run("pcie", "show", "0000:ff:1f.7")
	require.Equal(t, ExitError, code)
	require.Contains(t, errOut, "no such PCI device")
}
