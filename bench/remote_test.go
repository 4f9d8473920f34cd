package bench

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/strata-storage/strata/bdev/malloc"
	"github.com/strata-storage/strata/nvmeof/host"
	"github.com/strata-storage/strata/nvmeof/target"
	"github.com/strata-storage/strata/reactor"
)

const remoteNQN = "nqn.2024-01.io.strata:bench"

// remoteTarget serves a RAM namespace in-process and connects to it.
func remoteTarget(t *testing.T, queues int) (*host.Controller, Namespace, *malloc.Device) {
	g, err := reactor.StartGroup(nil, reactor.Config{})
	require.NoError(t, err)
	t.Cleanup(g.Stop)
	dev, err := malloc.New("ram", 16<<20, 512)
	require.NoError(t, err)
	t.Cleanup(func() { dev.Close() })
	tg := target.New(g, target.Config{})
	require.NoError(t, tg.AddSubsystem(target.SubsystemConfig{NQN: remoteNQN, Serial: "B1", AllowAnyHost: true,
		Namespaces: []target.Namespace{{ID: 1, Device: dev}}}))
	addr, err := tg.Listen("127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { tg.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := host.Connect(ctx, addr.String(), remoteNQN, host.Config{IOQueues: queues, QueueDepth: 32})
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return c, Namespace{ID: 1, BlockSize: 512, Blocks: dev.Info().Blocks}, dev
}

func TestRemoteRunAndVerify(t *testing.T) {
	c, ns, dev := remoteTarget(t, 2)
	job := Job{Pattern: Write, BlockSize: 8192, QueueDepth: 8, IOs: (1 << 20) / 8192, Span: 1 << 20, Verify: true, Seed: 3}
	// Prefill: each queue writes the span once, sequentially.
	res, err := RunRemote(c.IOQueues()[:1], ns, job)
	require.NoError(t, err)
	require.Zero(t, res.Errors)
	job.Pattern, job.ReadPct, job.IOs = RandRW, 70, 4000
	res, err = RunRemote(c.IOQueues(), ns, job)
	require.NoError(t, err)
	require.EqualValues(t, 4000, res.IOs)
	require.Zero(t, res.Errors)
	require.Zero(t, res.Mismatches)

	// Corrupt one block behind the target's back: a full verifying read pass
	// finds exactly that block.
	ch, err := openChannel(dev)
	require.NoError(t, err)
	junk := make([]byte, 512)
	junk[100] = 1
	require.NoError(t, ch(777, junk))
	job.Pattern, job.IOs = Read, (1<<20)/8192
	res, err = RunRemote(c.IOQueues()[:1], ns, job)
	require.NoError(t, err)
	require.EqualValues(t, 1, res.Mismatches)
}
