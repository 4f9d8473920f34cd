package daemon

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/strata-storage/strata/engine"
	"github.com/strata-storage/strata/internal/syncbuf"
	"github.com/strata-storage/strata/nvmeof/host"
	"github.com/strata-storage/strata/nvmeof/nvme"
)

// freePort returns a loopback TCP port nobody listens on right now.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// do runs one NVMe request and waits for it.
func do(t *testing.T, q *host.Queue, req *host.Request) {
	t.Helper()
	done := make(chan struct{})
	req.Callback = func(*host.Request) { close(done) }
	q.Submit(req)
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("NVMe request timed out")
	}
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// scrape returns the metrics exposition as "name{labels} value" lines.
func scrape(t *testing.T, addr string) string {
	t.Helper()
	code, body := get(t, "http://"+addr+"/metrics", "")
	require.Equal(t, 200, code)
	return body
}

// metric returns the value of the sample that starts with prefix
// ("name{labels}"), 0 when there is none.
func metric(t *testing.T, exposition, prefix string) float64 {
	t.Helper()
	for _, line := range strings.Split(exposition, "\n") {
		if v, ok := strings.CutPrefix(line, prefix+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			require.NoError(t, err, line)
			return f
		}
	}
	return 0
}

// strata serve --dev shares its volume through the real NVMe/TCP target:
// discovery on the discovery port lists it, a host connects and does I/O,
// the metrics show exactly that I/O, a clean stop drains the host, and the
// data is there after a restart.
func TestDevShareThroughTarget(t *testing.T) {
	dir := t.TempDir()
	ioPort, discPort := freePort(t), freePort(t)
	listen := fmt.Sprintf("127.0.0.1:%d", ioPort)
	out := &syncbuf.Buffer{}
	cfg := Config{DataDir: dir, Dev: true, DevListen: listen, DiscoveryPort: discPort, MetricsListen: "127.0.0.1:0", Out: out}
	r := start(t, cfg)
	ready := r.ready(t)
	metricsAddr := ready["metrics_listen"].(string)
	require.Eventually(t, func() bool { return strings.Contains(out.String(), "Ctrl-C") }, 5*time.Second, 10*time.Millisecond)
	banner := out.String()
	require.Contains(t, banner, fmt.Sprintf("attach:   nvme connect -t tcp -a 127.0.0.1 -s %d -n %s\n", ioPort, DevNQN))
	require.Contains(t, banner, fmt.Sprintf("discover: nvme discover -t tcp -a 127.0.0.1 -s %d\n", discPort))

	entries, err := host.Discover(testCtx(t), fmt.Sprintf("127.0.0.1:%d", discPort), host.Config{})
	require.NoError(t, err)
	var listed []string
	for _, e := range entries {
		listed = append(listed, e.SubNQN+"@"+net.JoinHostPort(e.Addr, e.SvcID))
	}
	require.Contains(t, listed, DevNQN+"@"+listen, "the share is listed at its I/O listener")
	require.NotContains(t, listed, DevNQN+fmt.Sprintf("@127.0.0.1:%d", discPort), "the discovery port serves no I/O")
	_, err = host.Connect(testCtx(t), fmt.Sprintf("127.0.0.1:%d", discPort), DevNQN, host.Config{})
	require.ErrorIs(t, err, nvme.ConnectInvalidParam)

	c, err := host.Connect(testCtx(t), listen, DevNQN, host.Config{})
	require.NoError(t, err)
	defer c.Close()
	ns, err := c.Namespace(testCtx(t), engine.VolumeNSID)
	require.NoError(t, err)
	bs := uint64(ns.BlockSize())
	require.EqualValues(t, DevVolumeBytes, ns.Blocks()*bs)
	q := c.IOQueues()[0]
	before := scrape(t, metricsAddr)

	// Known I/O: 5 writes of 8 KiB, 3 reads of 4 KiB, one read past the end.
	pattern := make([]byte, 5*8192)
	rand.Read(pattern)
	var req host.Request
	for i := range 5 {
		req.SetWrite(1, uint64(i*8192)/bs, uint32(8192/bs), false, pattern[i*8192:(i+1)*8192])
		do(t, q, &req)
		require.NoError(t, req.Err)
		require.True(t, req.Status.OK(), req.Status)
	}
	got := make([]byte, 4096)
	for i := range 3 {
		req.SetRead(1, uint64(i*8192)/bs, uint32(4096/bs), got)
		do(t, q, &req)
		require.True(t, req.Status.OK(), req.Status)
		require.Equal(t, pattern[i*8192:i*8192+4096], got)
	}
	req.SetRead(1, DevVolumeBytes/bs, uint32(4096/bs), got)
	do(t, q, &req)
	require.Equal(t, nvme.LBAOutOfRange, req.Status)

	after := scrape(t, metricsAddr)
	vol := `{pool="dev",volume="vol0"}`
	delta := func(name string) float64 { return metric(t, after, name+vol) - metric(t, before, name+vol) }
	require.Equal(t, 5.0, delta("strata_volume_write_ops_total"))
	require.Equal(t, 5.0*8192, delta("strata_volume_write_bytes_total"))
	require.Equal(t, 3.0, delta("strata_volume_read_ops_total"))
	require.Equal(t, 3.0*4096, delta("strata_volume_read_bytes_total"))
	require.Equal(t, 5.0, delta("strata_volume_write_latency_seconds_count"))
	require.Equal(t, 3.0, delta("strata_volume_read_latency_seconds_count"))
	require.Equal(t, 1.0, delta("strata_volume_errors_total"), "the out-of-range read")
	require.Equal(t, 1.0, metric(t, after, `strata_nvmeof_failed_commands_total{sc="128",sct="0",status="LBA out of range"}`)-
		metric(t, before, `strata_nvmeof_failed_commands_total{sc="128",sct="0",status="LBA out of range"}`))
	require.Equal(t, 1.0, metric(t, after, `strata_share_controllers{share="vol0"}`))
	require.Equal(t, 2.0, metric(t, after, `strata_share_connections{share="vol0"}`), "admin and one I/O queue")

	// A clean stop drains: the host is disconnected, the state is written.
	require.NoError(t, r.stop(t))
	require.Eventually(t, func() bool { return q.Err() != nil }, 10*time.Second, 10*time.Millisecond)
	_, err = net.DialTimeout("tcp", listen, time.Second)
	require.Error(t, err, "nothing listens after the stop")

	r = start(t, cfg)
	r.ready(t)
	c2, err := host.Connect(testCtx(t), listen, DevNQN, host.Config{})
	require.NoError(t, err)
	defer c2.Close()
	back := make([]byte, len(pattern))
	req.SetRead(1, 0, uint32(uint64(len(back))/bs), back)
	do(t, c2.IOQueues()[0], &req)
	require.True(t, req.Status.OK(), req.Status)
	require.Equal(t, pattern, back, "the data survives the restart")
	ident := c2.Identify()
	require.Equal(t, DevNQN, ident.SubNQN())
	require.NoError(t, r.stop(t))
}

// A share whose listener address is taken is refused as a conflict, and
// nothing of it stays behind.
func TestShareOnBusyAddress(t *testing.T) {
	dir := t.TempDir()
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer busy.Close()
	cfg := Config{DataDir: dir, Dev: true, DevListen: busy.Addr().String(), DiscoveryPort: -1, MetricsListen: "127.0.0.1:0", Out: &syncbuf.Buffer{}}
	r := start(t, cfg)
	r.ready(t)
	ev := r.logs.event("--dev: volume not shared")
	require.NotNil(t, ev)
	require.Contains(t, ev["err"], "in use by another program")
	require.NoError(t, r.stop(t))
	b, err := os.ReadFile(filepath.Join(dir, engine.StateFile))
	require.NoError(t, err)
	var st struct{ Shares []any }
	require.NoError(t, json.Unmarshal(b, &st))
	require.Empty(t, st.Shares)
}
