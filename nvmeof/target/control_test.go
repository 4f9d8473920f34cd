package target_test

import (
	"context"
	"errors"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/strata-storage/strata/bdev/malloc"
	"github.com/strata-storage/strata/nvmeof/host"
	"github.com/strata-storage/strata/nvmeof/nqn"
	"github.com/strata-storage/strata/nvmeof/nvme"
	"github.com/strata-storage/strata/nvmeof/target"
)

func TestHostAllowList(t *testing.T) {
	allowed := "nqn.2024-01.io.strata:host-a"
	f := newFixture(t, func(c *target.SubsystemConfig) {
		c.AllowAnyHost = false
		c.Hosts = []string{allowed}
	})
	_, err := host.Connect(ctx(t), f.addr, testNQN, host.Config{HostNQN: "nqn.2024-01.io.strata:intruder"})
	require.ErrorIs(t, err, nvme.ConnectInvalidHost)
	c := connect(t, f, host.Config{HostNQN: allowed})
	require.Equal(t, testNQN, c.Identify().SubNQN())

	_, err = host.Connect(ctx(t), f.addr, "nqn.2024-01.io.strata:nosuch", host.Config{})
	require.ErrorIs(t, err, nvme.ConnectInvalidParam)
}

func TestKeepAliveExpiryTearsDownController(t *testing.T) {
	f := newFixture(t, nil)
	// KATO of 300 ms with the host's own keep-alives turned off: the host
	// library sends them at KATO/2, so give it a huge KATO and then shrink
	// the target's timer through Set Features.
	c := connect(t, f, host.Config{KeepAlive: time.Hour})
	cmd := nvme.Command(make([]byte, 64))
	cmd.SetOpcode(nvme.AdminSetFeatures)
	cmd.SetCDW(10, nvme.FeatKeepAliveTimer)
	cmd.SetCDW(11, 300)
	_, err := c.Admin().Exec(ctx(t), cmd, nil, false)
	require.NoError(t, err)
	require.Eventually(t, func() bool { return c.Admin().Err() != nil && c.IOQueues()[0].Err() != nil },
		10*time.Second, 10*time.Millisecond, "the controller's queues are closed after KATO")
	require.Eventually(t, func() bool { return f.t.Stats().Controllers == 0 }, 5*time.Second, 10*time.Millisecond)
	require.EqualValues(t, 1, f.t.Stats().KeepAliveExpiries)

	// Keep-alives from the host keep a controller alive past its KATO.
	alive := connect(t, f, host.Config{KeepAlive: 400 * time.Millisecond})
	time.Sleep(1500 * time.Millisecond)
	var req host.Request
	req.SetRead(1, 0, 1, make([]byte, 512))
	do(alive.IOQueues()[0], &req)
	require.NoError(t, req.Err)
}

func TestDiscovery(t *testing.T) {
	f := newFixture(t, nil)
	// A second subsystem the host is not allowed into stays hidden.
	dev, err := malloc.New("hidden", 1<<20, 512)
	require.NoError(t, err)
	defer dev.Close()
	require.NoError(t, f.t.AddSubsystem(target.SubsystemConfig{
		NQN: "nqn.2024-01.io.strata:hidden", Serial: "H1", Hosts: []string{"nqn.2024-01.io.strata:someone"},
		Namespaces: []target.Namespace{{ID: 1, Device: dev}},
	}))
	entries, err := host.Discover(ctx(t), f.addr, host.Config{})
	require.NoError(t, err)
	_, port, _ := net.SplitHostPort(f.addr)
	var subs []string
	for _, e := range entries {
		require.EqualValues(t, nvme.TrTypeTCP, e.TrType)
		require.Equal(t, "127.0.0.1", e.Addr)
		require.Equal(t, port, e.SvcID)
		subs = append(subs, e.SubNQN)
	}
	require.ElementsMatch(t, []string{nqn.Discovery, testNQN}, subs)
	require.NoError(t, f.t.RemoveSubsystem(context.Background(), "nqn.2024-01.io.strata:hidden"))
	_, err = strconv.Atoi(port)
	require.NoError(t, err)
}

// A subsystem restricted to some listeners is reachable and discoverable
// only through those; the others (a discovery-only port, say) refuse
// Connect to it.
func TestSubsystemListeners(t *testing.T) {
	f := newFixture(t, nil)
	ioAddr, err := f.t.Listen("127.0.0.1:0")
	require.NoError(t, err)
	dev, err := malloc.New("scoped", 1<<20, 512)
	require.NoError(t, err)
	defer dev.Close()
	const scoped = "nqn.2024-01.io.strata:scoped"
	require.NoError(t, f.t.AddSubsystem(target.SubsystemConfig{
		NQN: scoped, Serial: "S1", AllowAnyHost: true, Listeners: []string{ioAddr.String()},
		Namespaces: []target.Namespace{{ID: 1, Device: dev}},
	}))

	_, err = host.Connect(ctx(t), f.addr, scoped, host.Config{})
	require.ErrorIs(t, err, nvme.ConnectInvalidParam, "not served on the fixture's listener")
	c, err := host.Connect(ctx(t), ioAddr.String(), scoped, host.Config{})
	require.NoError(t, err)
	require.Equal(t, 1, f.t.Controllers(scoped))
	require.Equal(t, 2, f.t.Connections(scoped), "admin queue and one I/O queue")
	c.Close()
	require.Eventually(t, func() bool { return f.t.Controllers(scoped) == 0 }, 5*time.Second, 10*time.Millisecond)

	entries, err := host.Discover(ctx(t), f.addr, host.Config{})
	require.NoError(t, err)
	where := map[string][]string{}
	for _, e := range entries {
		where[e.SubNQN] = append(where[e.SubNQN], net.JoinHostPort(e.Addr, e.SvcID))
	}
	require.ElementsMatch(t, []string{ioAddr.String()}, where[scoped])
	require.ElementsMatch(t, []string{f.addr, ioAddr.String()}, where[testNQN], "an unrestricted subsystem is on every listener")
	require.Len(t, where[nqn.Discovery], 2)
}

// A wildcard listener is listed in the discovery log under the address
// the host reached it at: 0.0.0.0 is nothing a host can dial.
func TestDiscoveryOnWildcardListener(t *testing.T) {
	f := newFixture(t, nil)
	require.NoError(t, f.t.CloseListener(f.addr))
	addr, err := f.t.Listen("0.0.0.0:0")
	require.NoError(t, err)
	_, port, _ := net.SplitHostPort(addr.String())
	entries, err := host.Discover(ctx(t), net.JoinHostPort("127.0.0.1", port), host.Config{})
	require.NoError(t, err)
	require.NotEmpty(t, entries)
	for _, e := range entries {
		require.Equal(t, "127.0.0.1", e.Addr)
		require.Equal(t, port, e.SvcID)
	}
}

func TestRemoveSubsystemDisconnectsHosts(t *testing.T) {
	f := newFixture(t, nil)
	c := connect(t, f, host.Config{})
	require.NoError(t, f.t.RemoveSubsystem(ctx(t), testNQN))
	require.Eventually(t, func() bool { return c.IOQueues()[0].Err() != nil }, 5*time.Second, 10*time.Millisecond)
	require.ErrorIs(t, f.t.RemoveSubsystem(ctx(t), testNQN), target.ErrNoSubsystem)
	_, err := host.Connect(ctx(t), f.addr, testNQN, host.Config{})
	require.Error(t, err)
}

func TestSubsystemConfigValidation(t *testing.T) {
	f := newFixture(t, nil)
	dev, err := malloc.New("v", 1<<20, 512)
	require.NoError(t, err)
	defer dev.Close()
	ns := []target.Namespace{{ID: 1, Device: dev}}
	for name, cfg := range map[string]target.SubsystemConfig{
		"bad nqn":        {NQN: "not-an-nqn", Serial: "S", Namespaces: ns},
		"discovery nqn":  {NQN: nqn.Discovery, Serial: "S"},
		"no serial":      {NQN: "nqn.2024-01.io.strata:v"},
		"long serial":    {NQN: "nqn.2024-01.io.strata:v", Serial: "123456789012345678901"},
		"bad host":       {NQN: "nqn.2024-01.io.strata:v", Serial: "S", Hosts: []string{"h"}},
		"nsid 0":         {NQN: "nqn.2024-01.io.strata:v", Serial: "S", Namespaces: []target.Namespace{{ID: 0, Device: dev}}},
		"duplicate nsid": {NQN: "nqn.2024-01.io.strata:v", Serial: "S", Namespaces: append(ns, ns...)},
		"no device":      {NQN: "nqn.2024-01.io.strata:v", Serial: "S", Namespaces: []target.Namespace{{ID: 1}}},
		"cntlid range":   {NQN: "nqn.2024-01.io.strata:v", Serial: "S", MinControllerID: 10, MaxControllerID: 5},
	} {
		require.ErrorIs(t, f.t.AddSubsystem(cfg), target.ErrBadConfig, name)
	}
	err = f.t.AddSubsystem(target.SubsystemConfig{NQN: testNQN, Serial: "S"})
	require.ErrorIs(t, err, target.ErrSubsystemExists)
}

// Two targets exporting one subsystem for multipath hand out disjoint
// controller IDs from their configured ranges, and a range runs out.
func TestControllerIDRange(t *testing.T) {
	f := newFixture(t, func(c *target.SubsystemConfig) { c.MinControllerID, c.MaxControllerID = 100, 101 })
	a := connect(t, f, host.Config{})
	b := connect(t, f, host.Config{})
	require.ElementsMatch(t, []uint16{100, 101}, []uint16{a.ControllerID(), b.ControllerID()})
	_, err := host.Connect(ctx(t), f.addr, testNQN, host.Config{})
	require.True(t, errors.Is(err, nvme.ConnectBusy), "%v", err)
}
