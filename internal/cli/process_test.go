package cli

// Tests that run the real binary, as a user or systemd would.

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/strata-storage/strata/api"
	"github.com/strata-storage/strata/engine"
	"github.com/strata-storage/strata/internal/syncbuf"
	"github.com/strata-storage/strata/nvmeof/host"
	"github.com/strata-storage/strata/nvmeof/nvme"
)

// strataBin is the binary built once for the package's tests.
var strataBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "strata-cli-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	strataBin = filepath.Join(dir, "strata")
	build := exec.Command("go", "build", "-trimpath", "-o", strataBin, "github.com/strata-storage/strata/cmd/strata")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build strata: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// daemonProc is a running strata serve.
type daemonProc struct {
	cmd            *exec.Cmd
	stdout, stderr *syncbuf.Buffer
	done           chan struct{}
	code           int
}

// startServe starts strata serve with args (and extra environment); the
// test's cleanup kills it if it still runs.
func startServe(t *testing.T, env []string, args ...string) *daemonProc {
	t.Helper()
	p := &daemonProc{stdout: new(syncbuf.Buffer), stderr: new(syncbuf.Buffer), done: make(chan struct{})}
	p.cmd = exec.Command(strataBin, append([]string{"serve"}, args...)...)
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stdout, p.cmd.Stderr = p.stdout, p.stderr
	require.NoError(t, p.cmd.Start())
	go func() {
		p.cmd.Wait()
		p.code = p.cmd.ProcessState.ExitCode()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			p.cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

// wait waits for the daemon to exit and returns its exit code.
func (p *daemonProc) wait(t *testing.T) int {
	t.Helper()
	select {
	case <-p.done:
		return p.code
	case <-time.After(30 * time.Second):
		t.Fatalf("strata serve did not exit; stderr:\n%s", p.stderr)
		return -1
	}
}

func (p *daemonProc) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	require.NoError(t, p.cmd.Process.Signal(sig))
}

// waitReady waits until the API answers on socket.
func (p *daemonProc) waitReady(t *testing.T, socket string) {
	t.Helper()
	c := api.NewUnixClient(socket)
	deadline := time.Now().Add(20 * time.Second)
	for {
		_, err := c.Pools(context.Background())
		if err == nil {
			return
		}
		select {
		case <-p.done:
			t.Fatalf("strata serve exited with %d; stderr:\n%s", p.code, p.stderr)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("strata serve not ready: %v; stderr:\n%s", err, p.stderr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// strata runs the client binary and returns its exit code and output.
func strata(t *testing.T, socket string, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(strataBin, args...)
	cmd.Env = append(os.Environ(), SocketEnv+"="+socket)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	if _, ok := err.(*exec.ExitError); err != nil && !ok {
		t.Fatalf("run strata %v: %v", args, err)
	}
	return cmd.ProcessState.ExitCode(), out.String(), errOut.String()
}

// strataOK runs the client and requires success.
func strataOK(t *testing.T, socket string, args ...string) string {
	t.Helper()
	code, out, errOut := strata(t, socket, args...)
	require.Equal(t, ExitOK, code, "strata %v: %s", args, errOut)
	return out
}

func strataJSON[T any](t *testing.T, socket string, args ...string) T {
	t.Helper()
	var v T
	out := strataOK(t, socket, append(args, "-o", "json")...)
	require.NoError(t, json.Unmarshal([]byte(out), &v), "%s", out)
	return v
}

// The main flows as a user runs them, with kill -9 and a restart in the
// middle: every object comes back with its identity.
func TestCLIFlowsAndRestartAfterKill(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "api.sock")
	data := filepath.Join(dir, "data")
	d := startServe(t, nil, "--data-dir", data, "--api-socket", sock, "--cores", "0", "--discovery-port", "0")
	d.waitReady(t, sock)

	// Pools.
	uri := "uring://" + filepath.Join(dir, "pool.img") + "?size=64MiB"
	out := strataOK(t, sock, "pool", "create", "p", uri)
	require.Equal(t, "pool p created: 64 MiB, "+uri+"\n", out)
	out = strataOK(t, sock, "pool", "create", "p", uri)
	require.Contains(t, out, "pool p already exists")
	code, _, errOut := strata(t, sock, "pool", "create", "p", "malloc:///?size=1MiB")
	require.Equal(t, ExitError, code)
	require.Contains(t, errOut, `pool "p" exists with URI`)
	require.Contains(t, errOut, "(conflict)")
	strataOK(t, sock, "pool", "create", "scratch", "null:///?size=1GiB")
	out = strataOK(t, sock, "pool", "list")
	require.Regexp(t, `(?m)^NAME\s+STATE\s+CAPACITY\s+FREE\s+VOLUMES\s+URI`, out)
	require.Regexp(t, `(?m)^p\s+online\s+64 MiB\s+64 MiB\s+0\s+uring://`, out)
	pools := strataJSON[api.PoolList](t, sock, "pool", "list")
	require.Len(t, pools.Pools, 2)

	// Volumes: flags after the name, JSON output.
	v1 := strataJSON[engine.Volume](t, sock, "volume", "create", "v1", "--pool", "p", "--size", "16MiB")
	require.Equal(t, uint64(16<<20), v1.SizeBytes)
	v2 := strataJSON[engine.Volume](t, sock, "volume", "create", "--pool=p", "v2", "--size", "8MiB")
	require.Equal(t, uint64(16<<20), v2.OffsetBytes)
	code, _, errOut = strata(t, sock, "volume", "resize", "v1", "--size", "20MiB")
	require.Equal(t, ExitError, code)
	require.Contains(t, errOut, `used by volume "v2"`)
	out = strataOK(t, sock, "volume", "resize", "v2", "--size", "12MiB")
	require.Equal(t, "volume v2 is 12 MiB\n", out)
	code, _, errOut = strata(t, sock, "volume", "resize", "v2", "--size", "4MiB")
	require.Equal(t, ExitError, code)
	require.Contains(t, errOut, "shrinking")
	out = strataOK(t, sock, "volume", "list")
	require.Regexp(t, `(?m)^v1\s+p\s+16 MiB\s+online\s+-\s+`+v1.UUID, out)
	strataOK(t, sock, "host", "add", "h1", "--nqn", "nqn.2024-01.io.example:h1")

	// Share v1 with h1 only, and write through NVMe/TCP as h1.
	listen := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	const shareNQN = "nqn.2024-01.io.strata:v1"
	out = strataOK(t, sock, "share", "add", "v1", "--nqn", shareNQN, "--listen", listen, "--host", "nqn.2024-01.io.example:h1")
	require.Equal(t, "share v1 created: "+shareNQN+" on "+listen+", nqn.2024-01.io.example:h1\n", out)
	code, _, errOut = strata(t, sock, "host", "remove", "h1")
	require.Equal(t, ExitError, code)
	require.Contains(t, errOut, "allowed by shares v1")
	_, err := host.Connect(testCtx(t), listen, shareNQN, host.Config{HostNQN: "nqn.2024-01.io.example:intruder"})
	require.ErrorIs(t, err, nvme.ConnectInvalidHost)
	pattern := writeThroughTarget(t, listen, shareNQN, "nqn.2024-01.io.example:h1")
	require.Regexp(t, `(?m)^v1\s+`+shareNQN+`\s+`+listen+`\s+nqn.2024-01.io.example:h1\s+exported\s+0\s*$`, strataOK(t, sock, "share", "list"))
	shares := strataJSON[api.ShareList](t, sock, "share", "list")

	st := strataJSON[api.StatusResponse](t, sock, "status")
	require.Len(t, st.Reactors, 1)
	require.Equal(t, 0, st.Reactors[0].Core)
	require.Len(t, st.Volumes, 2)
	require.Contains(t, strataOK(t, sock, "status"), "REACTOR")

	vols := strataJSON[api.VolumeList](t, sock, "volume", "list")
	hosts := strataJSON[api.HostList](t, sock, "host", "list")
	pools = strataJSON[api.PoolList](t, sock, "pool", "list")

	// kill -9: no chance to clean up. Everything acknowledged is on disk.
	d.signal(t, syscall.SIGKILL)
	require.Equal(t, -1, d.wait(t), "killed by a signal")
	code, _, errOut = strata(t, sock, "pool", "list")
	require.Equal(t, ExitUnreachable, code, "%s", errOut)
	require.Contains(t, errOut, "unreachable")

	d = startServe(t, nil, "--data-dir", data, "--api-socket", sock, "--cores", "0", "--discovery-port", "0")
	d.waitReady(t, sock) // the stale socket was replaced
	require.Equal(t, vols, strataJSON[api.VolumeList](t, sock, "volume", "list"), "same volumes, UUIDs and serials")
	require.Equal(t, hosts, strataJSON[api.HostList](t, sock, "host", "list"))
	require.Equal(t, pools, strataJSON[api.PoolList](t, sock, "pool", "list"))
	require.Equal(t, shares, strataJSON[api.ShareList](t, sock, "share", "list"), "the share is exported again")
	require.Equal(t, pattern, readThroughTarget(t, listen, shareNQN, "nqn.2024-01.io.example:h1", len(pattern)),
		"data acknowledged over NVMe/TCP survives kill -9")

	// Deletes and their refusals.
	code, _, errOut = strata(t, sock, "volume", "delete", "v1")
	require.Equal(t, ExitError, code)
	require.Contains(t, errOut, "remove the share first")
	require.Equal(t, "share v1 deleted\n", strataOK(t, sock, "share", "remove", "v1"))
	_, err = net.DialTimeout("tcp", listen, time.Second)
	require.Error(t, err, "the listener closes with its last share")
	code, _, errOut = strata(t, sock, "pool", "delete", "p")
	require.Equal(t, ExitError, code)
	require.Contains(t, errOut, "holds 2 volumes")
	require.Equal(t, "volume v1 deleted\n", strataOK(t, sock, "volume", "delete", "v1"))
	require.JSONEq(t, `{"deleted":"v2"}`, strataOK(t, sock, "volume", "delete", "v2", "-o", "json"))
	strataOK(t, sock, "pool", "delete", "p")
	strataOK(t, sock, "host", "remove", "h1")
	code, _, errOut = strata(t, sock, "volume", "delete", "v1")
	require.Equal(t, ExitError, code)
	require.Contains(t, errOut, "(not_found)")

	d.signal(t, syscall.SIGTERM)
	require.Equal(t, 0, d.wait(t), "stderr:\n%s", d.stderr)
	require.Contains(t, d.stderr.String(), "msg=stopped")
	_, err = os.Stat(sock)
	require.ErrorIs(t, err, os.ErrNotExist, "the socket is removed on a clean stop")
}

func TestCLIUsageErrors(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "none.sock")
	for _, tc := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"pool"}, ExitUsage, "usage: strata pool"},
		{[]string{"pool", "frob"}, ExitUsage, `unknown subcommand "frob"`},
		{[]string{"pool", "create", "p"}, ExitUsage, "want NAME URI, got 1 arguments"},
		{[]string{"volume", "create", "v", "--pool", "p"}, ExitUsage, "give --pool and --size"},
		{[]string{"volume", "create", "v", "--pool", "p", "--size", "12XB"}, ExitUsage, "unknown unit"},
		{[]string{"volume", "resize", "v"}, ExitUsage, "give --size"},
		{[]string{"share", "add", "v", "--nqn", "nqn.2024-01.io.strata:v"}, ExitUsage, "at least one --listen"},
		{[]string{"share", "add", "v", "--nqn", "n", "--listen", "1.2.3.4:1", "--host", "h", "--allow-any-host"}, ExitUsage, "exclude each other"},
		{[]string{"pool", "list", "-o", "yaml"}, ExitUsage, "want text or json"},
		{[]string{"pool", "list", "--bogus"}, ExitUsage, "flag provided but not defined"},
		{[]string{"status", "extra"}, ExitUsage, "want no arguments"},
		{[]string{"--socket"}, ExitUsage, "needs a path"},
		{[]string{"serve", "--cores", "3-1"}, ExitUsage, "--cores"},
		{[]string{"serve", "--log-format", "xml"}, ExitUsage, "--log-format"},
		{[]string{"serve", "extra"}, ExitUsage, "unexpected arguments"},
		{[]string{"pool", "list"}, ExitUnreachable, "is strata serve running?"},
		{[]string{"--socket", sock, "status"}, ExitUnreachable, sock},
		{[]string{"status", "--socket=" + sock}, ExitUnreachable, sock},
	} {
		t.Setenv(SocketEnv, sock)
		code, _, errOut := run(tc.args...)
		require.Equal(t, tc.code, code, "%v: %s", tc.args, errOut)
		require.Contains(t, errOut, tc.msg, "%v", tc.args)
	}
	code, out, _ := run("volume", "help")
	require.Equal(t, ExitOK, code)
	require.Contains(t, out, "resize NAME --size S")
	code, _, _ = run("pool", "list", "-h")
	require.Equal(t, ExitOK, code)
}

func TestParseCores(t *testing.T) {
	for in, want := range map[string][]int{"": nil, "0": {0}, "0,2-3": {0, 2, 3}, " 1 , 4-5": {1, 4, 5}} {
		got, err := parseCores(in)
		require.NoError(t, err, in)
		require.Equal(t, want, got, in)
	}
	for _, bad := range []string{"a", "-1", "3-1", "0,0", "1-2,2", "2000", "1-", ","} {
		_, err := parseCores(bad)
		require.Error(t, err, bad)
	}
}

func TestFormatBytes(t *testing.T) {
	for n, want := range map[uint64]string{0: "0 B", 4096: "4 KiB", 1000: "1000 B", 512 << 20: "512 MiB", 3 << 29: "1.5 GiB", 1 << 40: "1 TiB"} {
		require.Equal(t, want, formatBytes(n))
	}
}

func TestVolumeState(t *testing.T) {
	require.Equal(t, "online", volumeState(engine.Volume{State: engine.StateOnline}))
	require.Equal(t, "creating 25%", volumeState(engine.Volume{State: engine.StateCreating, Progress: &engine.Progress{DoneBytes: 1 << 30, TotalBytes: 4 << 30}}))
	require.Equal(t, "resizing 0%", volumeState(engine.Volume{State: engine.StateResizing, Progress: &engine.Progress{TotalBytes: 1 << 20}}))
}

// A corrupt state file stops the daemon with an error naming the file; it
// is left untouched.
func TestCorruptStateFileStopsDaemon(t *testing.T) {
	dir := t.TempDir()
	state := filepath.Join(dir, engine.StateFile)
	require.NoError(t, os.WriteFile(state, []byte(`{"version":1,"pools":[{"name":`), 0o600))
	d := startServe(t, nil, "--data-dir", dir, "--api-socket", filepath.Join(dir, "s.sock"), "--cores", "0")
	require.Equal(t, ExitError, d.wait(t))
	require.Contains(t, d.stderr.String(), "corrupt state file "+state)
	b, _ := os.ReadFile(state)
	require.Equal(t, `{"version":1,"pools":[{"name":`, string(b))

	require.NoError(t, os.WriteFile(state, []byte(`{"version":99}`), 0o600))
	d = startServe(t, nil, "--data-dir", dir, "--api-socket", filepath.Join(dir, "s.sock"), "--cores", "0")
	require.Equal(t, ExitError, d.wait(t))
	require.Contains(t, d.stderr.String(), state)
	require.Contains(t, d.stderr.String(), "upgrade strata")
}

// systemd's handshake: READY=1 only once the API answers, WATCHDOG=1 at
// the interval asked for, STOPPING=1 on SIGTERM, exit status 0.
func TestSdNotify(t *testing.T) {
	dir := t.TempDir()
	notify := filepath.Join(dir, "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: notify, Net: "unixgram"})
	require.NoError(t, err)
	defer conn.Close()
	msgs := make(chan string, 64)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				close(msgs)
				return
			}
			msgs <- string(buf[:n])
		}
	}()
	next := func(want string) {
		t.Helper()
		for {
			select {
			case m, ok := <-msgs:
				require.True(t, ok)
				if m == want {
					return
				}
				require.Equal(t, "WATCHDOG=1", m, "unexpected notification while waiting for %s", want)
			case <-time.After(20 * time.Second):
				t.Fatalf("no %s", want)
			}
		}
	}
	sock := filepath.Join(dir, "api.sock")
	d := startServe(t, []string{"NOTIFY_SOCKET=" + notify, "WATCHDOG_USEC=200000"},
		"--data-dir", filepath.Join(dir, "data"), "--api-socket", sock, "--cores", "0", "--log-format", "json")
	select {
	case m := <-msgs:
		require.Equal(t, "READY=1", m, "the first notification")
	case <-time.After(20 * time.Second):
		t.Fatalf("no READY=1; stderr:\n%s", d.stderr)
	}
	// READY means the API answers now, with no retry.
	c := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}}
	resp, err := c.Get("http://strata/healthz")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, 200, resp.StatusCode)
	fi, err := os.Stat(sock)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), fi.Mode().Perm(), "the API socket is its owner's only")

	next("WATCHDOG=1") // every 100 ms
	next("WATCHDOG=1")
	d.signal(t, syscall.SIGTERM)
	next("STOPPING=1")
	require.Equal(t, 0, d.wait(t), "stderr:\n%s", d.stderr)
	logs := d.stderr.String()
	for _, event := range []string{`"msg":"reactors started"`, `"msg":"ready"`, `"msg":"systemd watchdog enabled"`, `"msg":"stopping"`, `"msg":"stopped"`} {
		require.Contains(t, logs, event)
	}
	require.Less(t, strings.Count(logs, "\n"), 20, "one line per lifecycle event:\n%s", logs)
}

// strata serve --dev on an empty state: the development setup, the banner
// with the nvme connect line and a working metrics URL; a second start
// reuses the state.
func TestServeDev(t *testing.T) {
	dir := t.TempDir()
	port, discPort := freePort(t), freePort(t)
	listen := fmt.Sprintf("127.0.0.1:%d", port)
	args := []string{"--dev", "--data-dir", dir, "--metrics-listen", "127.0.0.1:0", "--cores", "0",
		"--dev-listen", listen, "--discovery-port", fmt.Sprint(discPort)}
	d := startServe(t, nil, args...)
	sock := filepath.Join(dir, "strata.sock")
	d.waitReady(t, sock)
	require.Eventually(t, func() bool { return strings.Contains(d.stdout.String(), "Ctrl-C") }, 10*time.Second, 10*time.Millisecond)
	banner := d.stdout.String()
	require.Contains(t, banner, fmt.Sprintf("nvme connect -t tcp -a 127.0.0.1 -s %d -n nqn.2024-01.io.strata:dev\n", port))
	require.Contains(t, banner, fmt.Sprintf("nvme discover -t tcp -a 127.0.0.1 -s %d\n", discPort))
	entries, err := host.Discover(testCtx(t), fmt.Sprintf("127.0.0.1:%d", discPort), host.Config{})
	require.NoError(t, err)
	var subs []string
	for _, e := range entries {
		subs = append(subs, e.SubNQN)
	}
	require.Contains(t, subs, "nqn.2024-01.io.strata:dev")
	pattern := writeThroughTarget(t, listen, "nqn.2024-01.io.strata:dev", "nqn.2024-01.io.example:dev-host")
	m := regexp.MustCompile(`metrics:\s+(http://127\.0\.0\.1:\d+/metrics)`).FindStringSubmatch(banner)
	require.NotNil(t, m, banner)
	resp, err := http.Get(m[1])
	require.NoError(t, err)
	var body bytes.Buffer
	body.ReadFrom(resp.Body)
	resp.Body.Close()
	require.Contains(t, body.String(), `strata_volume_size_bytes{pool="dev",volume="vol0"} 5.36870912e+08`)
	require.Contains(t, body.String(), fmt.Sprintf(`strata_volume_write_bytes_total{pool="dev",volume="vol0"} %d`, len(pattern)))
	require.Contains(t, body.String(), `strata_pool_committed_bytes{pool="dev"} 5.36870912e+08`)
	require.Contains(t, body.String(), `strata_volume_allocated_bytes{pool="dev",volume="vol0"} 1.048576e+06`, "thin: the one cluster written")
	resp, err = http.Get(strings.Replace(m[1], "/metrics", "/v1/pools", 1))
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, 404, resp.StatusCode, "the metrics listener serves no API")

	vols := strataJSON[api.VolumeList](t, sock, "volume", "list")
	require.Len(t, vols.Volumes, 1)
	require.Equal(t, "vol0", vols.Volumes[0].Name)
	require.True(t, vols.Volumes[0].Thin)
	fi, err := os.Stat(filepath.Join(dir, "dev-pool.img"))
	require.NoError(t, err)
	require.Equal(t, int64(1<<30), fi.Size())
	st, ok := fi.Sys().(*syscall.Stat_t)
	require.True(t, ok)
	require.Less(t, st.Blocks*512, int64(4<<20), "the pool file is sparse")
	d.signal(t, syscall.SIGINT)
	require.Equal(t, 0, d.wait(t), "stderr:\n%s", d.stderr)

	d = startServe(t, nil, args...)
	d.waitReady(t, sock)
	require.Equal(t, vols, strataJSON[api.VolumeList](t, sock, "volume", "list"), "the state is reused, not recreated")
	require.Equal(t, pattern, readThroughTarget(t, listen, "nqn.2024-01.io.strata:dev", "nqn.2024-01.io.example:dev-host", len(pattern)))
	require.NotContains(t, d.stderr.String(), "development setup created")
	d.signal(t, syscall.SIGTERM)
	require.Equal(t, 0, d.wait(t))
}

// freePort returns a loopback TCP port nobody listens on right now.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// rw runs one read or write on namespace 1 through a fresh connection.
func rw(t *testing.T, addr, subNQN, hostNQN string, write bool, buf []byte) {
	t.Helper()
	c, err := host.Connect(testCtx(t), addr, subNQN, host.Config{HostNQN: hostNQN})
	require.NoError(t, err)
	defer c.Close()
	ns, err := c.Namespace(testCtx(t), 1)
	require.NoError(t, err)
	var req host.Request
	blocks := uint32(len(buf) / int(ns.BlockSize()))
	if write {
		req.SetWrite(1, 0, blocks, false, buf)
	} else {
		req.SetRead(1, 0, blocks, buf)
	}
	done := make(chan struct{})
	req.Callback = func(*host.Request) { close(done) }
	c.IOQueues()[0].Submit(&req)
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("NVMe request timed out")
	}
	require.NoError(t, req.Err)
	require.True(t, req.Status.OK(), req.Status)
}

// writeThroughTarget writes 128 KiB (MDTS) of random data at the start of the
// namespace and returns it.
func writeThroughTarget(t *testing.T, addr, subNQN, hostNQN string) []byte {
	t.Helper()
	pattern := make([]byte, 128<<10)
	rand.Read(pattern)
	rw(t, addr, subNQN, hostNQN, true, pattern)
	return pattern
}

func readThroughTarget(t *testing.T, addr, subNQN, hostNQN string, n int) []byte {
	t.Helper()
	buf := make([]byte, n)
	rw(t, addr, subNQN, hostNQN, false, buf)
	return buf
}

// A pool on another daemon's shared volume (nvmf://): what is written
// through the second daemon's share lands on the first's device, and
// survives the first being killed and restarted under it: the pool's
// device reconnects and I/O waits for it.
func TestPoolOnRemoteNamespace(t *testing.T) {
	dir := t.TempDir()
	sockA, sockB := filepath.Join(dir, "a.sock"), filepath.Join(dir, "b.sock")
	dataA := filepath.Join(dir, "a")
	a := startServe(t, nil, "--data-dir", dataA, "--api-socket", sockA, "--cores", "0", "--discovery-port", "0")
	a.waitReady(t, sockA)
	strataOK(t, sockA, "pool", "create", "local", "uring://"+filepath.Join(dir, "a.img")+"?size=64MiB")
	strataOK(t, sockA, "volume", "create", "va", "--pool", "local", "--size", "32MiB")
	listenA := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	const nqnA = "nqn.2024-01.io.strata:va"
	strataOK(t, sockA, "share", "add", "va", "--nqn", nqnA, "--listen", listenA, "--allow-any-host")

	b := startServe(t, nil, "--data-dir", filepath.Join(dir, "b"), "--api-socket", sockB, "--cores", "0", "--discovery-port", "0")
	b.waitReady(t, sockB)
	strataOK(t, sockB, "pool", "create", "remote", "nvmf://"+listenA+"/"+nqnA+"?ns=1&timeout=20s")
	pools := strataJSON[api.PoolList](t, sockB, "pool", "list")
	require.Equal(t, uint64(32<<20), pools.Pools[0].CapacityBytes)
	vb := strataJSON[engine.Volume](t, sockB, "volume", "create", "vb", "--pool", "remote", "--size", "16MiB")
	listenB := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	const nqnB = "nqn.2024-01.io.strata:vb"
	strataOK(t, sockB, "share", "add", "vb", "--nqn", nqnB, "--listen", listenB, "--allow-any-host")

	pattern := writeThroughTarget(t, listenB, nqnB, "")
	onA := readThroughTarget(t, listenA, nqnA, "", int(vb.OffsetBytes)+len(pattern))
	require.Equal(t, pattern, onA[vb.OffsetBytes:], "B's volume is on A's device")

	a.signal(t, syscall.SIGKILL)
	require.Equal(t, -1, a.wait(t))
	a = startServe(t, nil, "--data-dir", dataA, "--api-socket", sockA, "--cores", "0", "--discovery-port", "0")
	a.waitReady(t, sockA)
	require.Equal(t, pattern, readThroughTarget(t, listenB, nqnB, "", len(pattern)),
		"read through B once its pool's device has reconnected to the restarted A")
	b.signal(t, syscall.SIGTERM)
	require.Equal(t, 0, b.wait(t), "stderr:\n%s", b.stderr)
}
