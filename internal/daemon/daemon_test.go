package daemon

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/strata-storage/strata/api"
	"github.com/strata-storage/strata/internal/syncbuf"
)

// logBuffer collects JSON log lines.
type logBuffer struct{ syncbuf.Buffer }

// event returns the first logged event with msg, or nil.
func (l *logBuffer) event(msg string) map[string]any {
	for _, line := range strings.Split(l.String(), "\n") {
		var ev map[string]any
		if json.Unmarshal([]byte(line), &ev) == nil && ev["msg"] == msg {
			return ev
		}
	}
	return nil
}

type running struct {
	logs   *logBuffer
	cancel context.CancelFunc
	done   chan error
}

// start runs the daemon in-process until the test stops it (or ends).
func start(t *testing.T, cfg Config) *running {
	t.Helper()
	r := &running{logs: new(logBuffer), done: make(chan error, 1)}
	cfg.Logger = slog.New(slog.NewJSONHandler(r.logs, nil))
	cfg.Cores = []int{0}
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	go func() { r.done <- Run(ctx, cfg) }()
	t.Cleanup(func() {
		cancel()
		<-r.done
	})
	return r
}

// ready waits for the "ready" event and returns it.
func (r *running) ready(t *testing.T) map[string]any {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if ev := r.logs.event("ready"); ev != nil {
			return ev
		}
		select {
		case err := <-r.done:
			t.Fatalf("daemon stopped: %v\n%s", err, r.logs.String())
		case <-time.After(10 * time.Millisecond):
		}
	}
	t.Fatal("daemon not ready")
	return nil
}

func (r *running) stop(t *testing.T) error {
	t.Helper()
	r.cancel()
	select {
	case err := <-r.done:
		r.done <- err // for the cleanup
		return err
	case <-time.After(30 * time.Second):
		t.Fatal("daemon did not stop")
		return nil
	}
}

func get(t *testing.T, url, token string) (int, string) {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	require.NoError(t, err)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestTCPAPIRequiresToken(t *testing.T) {
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	const token = "0123456789abcdef-token"
	require.NoError(t, os.WriteFile(tokenFile, []byte(token+"\n"), 0o600))
	r := start(t, Config{
		DataDir: filepath.Join(dir, "data"), APISocket: filepath.Join(dir, "s.sock"),
		APIListen: "127.0.0.1:0", APITokenFile: tokenFile, MetricsListen: "127.0.0.1:0",
	})
	ev := r.ready(t)
	base := "http://" + ev["api_listen"].(string)
	status, body := get(t, base+"/v1/pools", "")
	require.Equal(t, 401, status, body)
	status, _ = get(t, base+"/v1/pools", "wrong-token-wrong-token")
	require.Equal(t, 401, status)
	status, body = get(t, base+"/v1/pools", token)
	require.Equal(t, 200, status)
	require.JSONEq(t, `{"pools":[]}`, body)
	status, _ = get(t, base+"/healthz", "")
	require.Equal(t, 200, status)
	status, body = get(t, base+"/metrics", token)
	require.Equal(t, 200, status)
	require.Contains(t, body, "strata_target_available 1")

	c := api.NewClient(base, token, nil)
	_, created, err := c.CreatePool(context.Background(), api.PoolRequest{Name: "p", URI: "malloc:///?size=4MiB"})
	require.NoError(t, err)
	require.True(t, created)

	// The metrics listener: metrics and liveness only, no token, no API.
	mbase := "http://" + ev["metrics_listen"].(string)
	status, body = get(t, mbase+"/metrics", "")
	require.Equal(t, 200, status)
	require.Contains(t, body, `strata_pool_capacity_bytes{pool="p"} 4.194304e+06`)
	status, _ = get(t, mbase+"/healthz", "")
	require.Equal(t, 200, status)
	status, _ = get(t, mbase+"/v1/pools", "")
	require.Equal(t, 404, status)
	require.NoError(t, r.stop(t))
	require.NotNil(t, r.logs.event("stopped"))
}

func TestConfigErrors(t *testing.T) {
	dir := t.TempDir()
	short := filepath.Join(dir, "short")
	require.NoError(t, os.WriteFile(short, []byte("abc\n"), 0o600))
	spaced := filepath.Join(dir, "spaced")
	require.NoError(t, os.WriteFile(spaced, []byte("0123456789 abcdefghij"), 0o600))
	for _, tc := range []struct {
		cfg Config
		msg string
	}{
		{Config{APIListen: "127.0.0.1:0"}, "needs --api-token-file"},
		{Config{APITokenFile: short}, "without --api-listen"},
		{Config{APIListen: "127.0.0.1:0", APITokenFile: filepath.Join(dir, "none")}, "no such file"},
		{Config{APIListen: "127.0.0.1:0", APITokenFile: short}, "at least 16 characters"},
		{Config{APIListen: "127.0.0.1:0", APITokenFile: spaced}, "one word"},
		{Config{Cores: []int{4000}}, "not in this process's CPU set"},
		{Config{MetricsListen: "256.0.0.1:1"}, "metrics listener"},
	} {
		tc.cfg.DataDir = filepath.Join(dir, "data")
		tc.cfg.APISocket = filepath.Join(dir, "s.sock")
		err := Run(context.Background(), tc.cfg)
		require.ErrorContains(t, err, tc.msg, "%+v", tc.cfg)
	}
	// A failed start leaves the data directory free for the next one.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	require.NoError(t, Run(ctx, Config{DataDir: filepath.Join(dir, "data"), APISocket: filepath.Join(dir, "s.sock"), Cores: []int{0}}))
}

func TestAPISocket(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "run", "strata", "api.sock") // parents are created
	r := start(t, Config{DataDir: filepath.Join(dir, "data"), APISocket: sock})
	r.ready(t)
	fi, err := os.Stat(sock)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), fi.Mode().Perm())

	// A second daemon (on another data directory) must not steal a live
	// socket.
	err = Run(context.Background(), Config{DataDir: filepath.Join(dir, "data2"), APISocket: sock, Cores: []int{0}})
	require.ErrorContains(t, err, "another daemon is serving it")
	// Nor may it share the data directory.
	err = Run(context.Background(), Config{DataDir: filepath.Join(dir, "data"), APISocket: filepath.Join(dir, "other.sock"), Cores: []int{0}})
	require.ErrorContains(t, err, "in use by another strata")
	require.NoError(t, r.stop(t))

	// A stale socket (nobody listening) is replaced; a file that is not a
	// socket is not.
	l, err := net.Listen("unix", sock)
	require.NoError(t, err)
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close()
	r = start(t, Config{DataDir: filepath.Join(dir, "data"), APISocket: sock})
	r.ready(t)
	require.NoError(t, r.stop(t))
	notSock := filepath.Join(dir, "plain")
	require.NoError(t, os.WriteFile(notSock, nil, 0o600))
	err = Run(context.Background(), Config{DataDir: filepath.Join(dir, "data"), APISocket: notSock, Cores: []int{0}})
	require.ErrorContains(t, err, "is not a socket")
}
