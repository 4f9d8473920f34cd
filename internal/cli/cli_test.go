package cli

import (
	"bytes"
	"encoding/json"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
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
