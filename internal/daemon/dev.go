package daemon

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"time"

	"github.com/strata-storage/strata/engine"
	"github.com/strata-storage/strata/internal/buildinfo"
)

// The development setup strata serve --dev makes in an empty state.
const (
	DevPool          = "dev"
	DevPoolFile      = "dev-pool.img"
	DevPoolSize      = "1GiB"
	DevVolume        = "vol0"
	DevVolumeBytes   = 512 << 20
	DevNQN           = "nqn.2024-01.io.strata:dev"
	DevListen        = "127.0.0.1:4420"
	DevMetricsListen = "127.0.0.1:9464"
)

// devSetupTimeout bounds the setup calls (the volume's space is unmapped).
const devSetupTimeout = 2 * time.Minute

// devSetup creates the development pool (a volume store), its thin
// volume and share when the state is empty; an existing state is used
// as it is. A share that cannot be
// exported (the port is taken, say) is a warning, not a failure: the
// banner says so and the API can still fix it.
func (d *daemon) devSetup() error {
	e := d.e
	ctx, cancel := context.WithTimeout(context.Background(), devSetupTimeout)
	defer cancel()
	if e.Empty() {
		uri := "uring://" + filepath.Join(d.cfg.DataDir, DevPoolFile) + "?size=" + DevPoolSize
		if _, _, err := e.CreatePool(ctx, engine.PoolSpec{Name: DevPool, URI: uri, Format: engine.FormatLvol}); err != nil {
			return fmt.Errorf("--dev: create pool %s: %w", DevPool, err)
		}
		if _, _, err := e.CreateVolume(ctx, engine.VolumeSpec{Name: DevVolume, Pool: DevPool, SizeBytes: DevVolumeBytes, Thin: true}); err != nil {
			return fmt.Errorf("--dev: create volume %s: %w", DevVolume, err)
		}
		_, _, err := e.CreateShare(ctx, engine.ShareSpec{
			Volume: DevVolume, NQN: DevNQN, Listeners: []string{d.cfg.DevListen}, AllowAnyHost: true,
		})
		if err != nil {
			d.log.Warn("--dev: volume not shared", "volume", DevVolume, "nqn", DevNQN, "err", err)
			d.devShareErr = err
		}
		d.log.Info("--dev: development setup created", "pool", DevPool, "volume", DevVolume)
	}
	if sh, err := e.Share(DevVolume); err == nil {
		if sh.State == engine.StateExported {
			d.devShare = &sh
		} else {
			d.devShareErr = errors.New(sh.Error)
		}
	}
	return nil
}

// banner tells the developer how to use the running daemon.
func (d *daemon) banner() {
	w := d.cfg.Out
	fmt.Fprintf(w, "\nstrata %s is running in development mode\n", buildinfo.Version)
	fmt.Fprintf(w, "  data:     %s\n", d.cfg.DataDir)
	fmt.Fprintf(w, "  API:      %s   (try: strata --socket %s status)\n", d.cfg.APISocket, d.cfg.APISocket)
	if d.metricsL != nil {
		fmt.Fprintf(w, "  metrics:  http://%s/metrics\n", d.metricsL.Addr())
	} else {
		fmt.Fprintf(w, "  metrics:  curl --unix-socket %s http://strata/metrics\n", d.cfg.APISocket)
	}
	if sh := d.devShare; sh != nil {
		for _, l := range sh.Listeners {
			ap := netip.MustParseAddrPort(l) // the engine stores them canonical
			fmt.Fprintf(w, "  attach:   nvme connect -t tcp -a %s -s %d -n %s\n", ap.Addr(), ap.Port(), sh.NQN)
		}
		if d.cfg.DiscoveryPort > 0 {
			ap := netip.MustParseAddrPort(sh.Listeners[0])
			fmt.Fprintf(w, "  discover: nvme discover -t tcp -a %s -s %d\n", ap.Addr(), d.cfg.DiscoveryPort)
		}
	} else {
		fmt.Fprintf(w, "  attach:   volume %s is not shared: %v\n", DevVolume, d.devShareErr)
	}
	fmt.Fprintf(w, "  stop:     Ctrl-C\n\n")
}
