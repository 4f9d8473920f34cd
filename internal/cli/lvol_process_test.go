package cli

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/strata-storage/strata/api"
	"github.com/strata-storage/strata/engine"
	"github.com/strata-storage/strata/nvmeof/host"
)

// writeBlock is block i of the load: 4 KiB at LBA i*stride, saying i.
func writeBlock(i uint64) []byte {
	b := make([]byte, 4096)
	for off := 0; off < len(b); off += 8 {
		binary.LittleEndian.PutUint64(b[off:], i<<20|uint64(off))
	}
	return b
}

// A thin volume of a volume store pool under a write load through
// NVMe/TCP, each write the first into its cluster (so each maps one):
// a snapshot taken while it runs, then kill -9. After the restart the
// volume comes back from the pool's device with its identity, every
// acknowledged write is there, the snapshot holds a prefix of the load
// (every write acknowledged before it, none begun after), a clone of it
// reads that, and the pool checks.
func TestCLIVolumeStoreKillDuringWrites(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "api.sock")
	data := filepath.Join(dir, "data")
	serve := func() *daemonProc {
		d := startServe(t, nil, "--data-dir", data, "--api-socket", sock, "--cores", "0", "--discovery-port", "0")
		d.waitReady(t, sock)
		return d
	}
	d := serve()
	uri := "uring://" + filepath.Join(dir, "s.img") + "?size=64MiB"
	out := strataOK(t, sock, "pool", "create", "s", uri, "--format", "lvol", "--cluster-size", "64KiB")
	require.Equal(t, "pool s created: 61.9 MiB, "+uri+" (volume store, 64 KiB clusters, 0 volumes)\n", out)
	vol := strataJSON[engine.Volume](t, sock, "volume", "create", "t", "--pool", "s", "--size", "32MiB", "--thin")
	require.True(t, vol.Thin)
	listen := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	const nqn = "nqn.2024-01.io.strata:t"
	strataOK(t, sock, "share", "add", "t", "--nqn", nqn, "--listen", listen, "--allow-any-host")

	const stride = 16 // 4 KiB blocks: one 64 KiB cluster each
	const total = 512 // clusters of the 32 MiB volume
	var acked, started atomic.Uint64
	stopped := make(chan error, 1)
	go func() {
		c, err := host.Connect(testCtx(t), listen, nqn, host.Config{})
		if err != nil {
			stopped <- err
			return
		}
		defer c.Close()
		q := c.IOQueues()[0]
		for i := uint64(0); i < total; i++ {
			var req host.Request
			req.SetWrite(1, i*stride, 1, false, writeBlock(i+1))
			done := make(chan struct{})
			req.Callback = func(*host.Request) { close(done) }
			started.Store(i + 1)
			q.Submit(&req)
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				stopped <- fmt.Errorf("write %d timed out", i)
				return
			}
			if req.Err != nil || !req.Status.OK() {
				stopped <- fmt.Errorf("write %d: %v %v", i, req.Err, req.Status)
				return
			}
			acked.Store(i + 1)
		}
		stopped <- nil
	}()
	waitFor := func(n uint64) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for acked.Load() < n {
			select {
			case err := <-stopped:
				t.Fatalf("the load stopped at %d writes: %v", acked.Load(), err)
			default:
			}
			require.True(t, time.Now().Before(deadline), "the load is stuck at %d writes", acked.Load())
			time.Sleep(time.Millisecond)
		}
	}
	waitFor(40)
	before := acked.Load()
	snap := strataJSON[engine.Snapshot](t, sock, "snapshot", "create", "t", "snap")
	after := started.Load()
	require.Equal(t, "t", snap.Volume)
	waitFor(after + 40)
	d.signal(t, syscall.SIGKILL)
	require.Equal(t, -1, d.wait(t))
	<-stopped // the load ends with the daemon
	done := acked.Load()
	t.Logf("snapshot after %d writes acknowledged, %d begun; killed after %d", before, after, done)

	d = serve()
	vols := strataJSON[api.VolumeList](t, sock, "volume", "list")
	require.Len(t, vols.Volumes, 1)
	require.Equal(t, vol.UUID, vols.Volumes[0].UUID, "the volume comes back from the device")
	require.GreaterOrEqual(t, vols.Volumes[0].AllocatedBytes, done*64<<10)
	require.Regexp(t, `(?m)^snap\s+t\s+s\s+32 MiB`, strataOK(t, sock, "snapshot", "list", "t"))
	require.Equal(t, "pool s: no faults\n", strataOK(t, sock, "pool", "check", "s"))
	require.Eventually(t, func() bool {
		sh, err := api.NewUnixClient(sock).Shares(testCtx(t))
		return err == nil && len(sh) == 1 && sh[0].State == engine.StateExported
	}, 10*time.Second, 10*time.Millisecond)

	// Every acknowledged write, read back through the target.
	readBlock := func(addr, subNQN string, i uint64) []byte {
		c, err := host.Connect(testCtx(t), addr, subNQN, host.Config{})
		require.NoError(t, err)
		defer c.Close()
		buf := make([]byte, 4096)
		var req host.Request
		req.SetRead(1, i*stride, 1, buf)
		ch := make(chan struct{})
		req.Callback = func(*host.Request) { close(ch) }
		c.IOQueues()[0].Submit(&req)
		<-ch
		require.NoError(t, req.Err)
		require.True(t, req.Status.OK())
		return buf
	}
	for _, i := range []uint64{0, before / 2, before - 1, after, done / 2, done - 1} {
		require.Equal(t, writeBlock(i+1), readBlock(listen, nqn, i), "acknowledged write %d of %d", i, done)
	}

	// The snapshot, through a clone: a prefix of the load.
	strataOK(t, sock, "volume", "create", "c", "--snapshot", "snap")
	clisten := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	const cnqn = "nqn.2024-01.io.strata:c"
	strataOK(t, sock, "share", "add", "c", "--nqn", cnqn, "--listen", clisten, "--allow-any-host")
	n := uint64(0)
	for n < total && !bytes.Equal(readBlock(clisten, cnqn, n), make([]byte, 4096)) {
		require.Equal(t, writeBlock(n+1), readBlock(clisten, cnqn, n), "snapshot block %d", n)
		n++
	}
	require.GreaterOrEqual(t, n, before, "acknowledged before the snapshot")
	require.LessOrEqual(t, n, after, "begun after it")
	require.Equal(t, make([]byte, 4096), readBlock(clisten, cnqn, n+1))

	d.signal(t, syscall.SIGTERM)
	require.Equal(t, 0, d.wait(t), "stderr:\n%s", d.stderr)
}
