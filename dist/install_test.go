// Package dist holds what installs Strata on a machine: the systemd unit,
// installed by `make install` beside the binary.
package dist

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// make install into a scratch DESTDIR puts the binary and the unit where
// PREFIX and DESTDIR say, with ExecStart following PREFIX.
func TestMakeInstall(t *testing.T) {
	dest := t.TempDir()
	cmd := exec.Command("make", "-C", "..", "install", "DESTDIR="+dest, "PREFIX=/opt/strata")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0") // the Makefile checks the binary is static
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)

	bin := filepath.Join(dest, "opt/strata/bin/strata")
	fi, err := os.Stat(bin)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o755), fi.Mode().Perm())
	version, err := exec.Command(bin, "version").Output()
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(string(version), "strata "), "%s", version)

	unit := filepath.Join(dest, "lib/systemd/system/strata.service")
	fi, err = os.Stat(unit)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o644), fi.Mode().Perm())
	b, err := os.ReadFile(unit)
	require.NoError(t, err)
	got := directives(string(b))
	require.Equal(t, []string{"/opt/strata/bin/strata serve"}, got["ExecStart"])
	require.NotContains(t, string(b), "/usr/local/bin/strata")
}

// directives parses a unit file into key -> values (comments dropped).
func directives(unit string) map[string][]string {
	out := map[string][]string{}
	for _, line := range strings.Split(unit, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' || line[0] == '[' {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if ok {
			out[k] = append(out[k], v)
		}
	}
	return out
}

// The unit is what a storage daemon under systemd needs: notify and
// watchdog, locked memory, its directories writable in a read-only system,
// and block devices (and VFIO) still reachable.
func TestUnitFile(t *testing.T) {
	b, err := os.ReadFile("strata.service")
	require.NoError(t, err)
	d := directives(string(b))
	for k, want := range map[string]string{
		"Type": "notify", "ExecStart": "/usr/local/bin/strata serve", "Restart": "on-failure",
		"WatchdogSec": "30s", "LimitMEMLOCK": "infinity", "ProtectSystem": "strict",
		"ReadWritePaths": "/var/lib/strata /run/strata", "StateDirectory": "strata", "RuntimeDirectory": "strata",
		"ProtectHome": "yes", "PrivateTmp": "yes", "NoNewPrivileges": "yes", "RestrictNamespaces": "yes",
		"LockPersonality": "yes", "ProtectKernelModules": "yes", "DevicePolicy": "closed",
	} {
		require.Equal(t, []string{want}, d[k], k)
	}
	require.Subset(t, d["DeviceAllow"], []string{"block-* rw", "/dev/vfio/vfio rw"})
	require.NotContains(t, d, "PrivateDevices", "it would hide the block devices")
	require.NotEmpty(t, d["LimitNOFILE"])
	require.Equal(t, []string{"multi-user.target"}, d["WantedBy"])
}
