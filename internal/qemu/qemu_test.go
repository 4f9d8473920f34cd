package qemu

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

type logWriter struct{ t *testing.T }

func (w logWriter) Write(p []byte) (int, error) {
	for _, l := range strings.Split(strings.TrimRight(string(p), "\r\n"), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			w.t.Log(l)
		}
	}
	return len(p), nil
}

// The guest boots, has its tools and modules, writes to the share, and its
// exit code comes back.
func TestGuestRunsScript(t *testing.T) {
	share := t.TempDir()
	res, err := Run(context.Background(), Config{
		ShareDir: share,
		Console:  logWriter{t},
		Script: `set -e
modprobe nvme-tcp
nvme version
/sbin/mke2fs -V
echo from-the-guest > /host/out.txt
exit 3
`,
	})
	require.NoError(t, err)
	require.Equal(t, 3, res.ExitCode)
	b, err := os.ReadFile(filepath.Join(share, "out.txt"))
	require.NoError(t, err)
	require.Equal(t, "from-the-guest\n", string(b))
	require.Contains(t, res.Console, "nvme version")
}

func TestGuestTimeoutKillsQEMU(t *testing.T) {
	start := time.Now()
	_, err := Run(context.Background(), Config{ShareDir: t.TempDir(), Script: "sleep 600", Timeout: 20 * time.Second})
	require.ErrorIs(t, err, ErrNoExit)
	require.Less(t, time.Since(start), 60*time.Second)
}
