package cli

import (
	"flag"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/strata-storage/strata/api"
	"github.com/strata-storage/strata/engine"
)

var poolCommands = map[string]command{
	"create": {args: "NAME URI", nargs: 2, summary: "make a device a pool (uring:///path?size=10GiB, malloc:///?size=1GiB, null:///)",
		setup: func(fs *flag.FlagSet) func(*invocation) error {
			format := fs.String("format", engine.FormatExtent, "extent: contiguous volumes kept in the state file; lvol: a volume store on the device (thin volumes, snapshots, clones)")
			var cluster sizeFlag
			fs.Var(&cluster, "cluster-size", "a volume store's allocation unit, a power of two (default 1MiB)")
			return func(inv *invocation) error {
				p, created, err := inv.api.CreatePool(inv.ctx, api.PoolRequest{Name: inv.args[0], URI: inv.args[1], Format: *format, ClusterSize: api.Size(cluster.bytes)})
				return printPool(inv, p, created, err)
			}
		}},
	"import": {args: "NAME URI", nargs: 2, summary: "open the volume store a device holds, with its volumes (a lost data directory, a disk moved here)",
		setup: func(*flag.FlagSet) func(*invocation) error {
			return func(inv *invocation) error {
				p, created, err := inv.api.CreatePool(inv.ctx, api.PoolRequest{Name: inv.args[0], URI: inv.args[1], Import: true})
				return printPool(inv, p, created, err)
			}
		}},
	"check": {args: "NAME", nargs: 1, summary: "verify every invariant of a volume store pool, and print what is wrong",
		setup: func(*flag.FlagSet) func(*invocation) error {
			return func(inv *invocation) error {
				faults, err := inv.api.CheckPool(inv.ctx, inv.args[0])
				if err != nil {
					return err
				}
				if inv.json {
					return inv.printJSON(api.CheckResponse{Pool: inv.args[0], Faults: faults})
				}
				if len(faults) == 0 {
					_, err = fmt.Fprintf(inv.stdout, "pool %s: no faults\n", inv.args[0])
					return err
				}
				for _, f := range faults {
					fmt.Fprintf(inv.stdout, "%s\n", f)
				}
				return fmt.Errorf("pool %s: %d faults", inv.args[0], len(faults))
			}
		}},
	"list": {summary: "list pools", setup: func(*flag.FlagSet) func(*invocation) error {
		return func(inv *invocation) error {
			pools, err := inv.api.Pools(inv.ctx)
			if err != nil {
				return err
			}
			if inv.json {
				return inv.printJSON(api.PoolList{Pools: pools})
			}
			var rows [][]string
			for _, p := range pools {
				rows = append(rows, []string{p.Name, p.State, formatBytes(p.CapacityBytes), formatBytes(p.FreeBytes), strconv.Itoa(p.Volumes), p.URI, p.Format, formatBytes(p.CommittedBytes), p.Error})
			}
			// New columns go before ERROR: scripts read the others by place.
			return inv.table([]string{"NAME", "STATE", "CAPACITY", "FREE", "VOLUMES", "URI", "FORMAT", "COMMITTED", "ERROR"}, rows)
		}
	}},
	"delete": {args: "NAME", nargs: 1, summary: "forget a pool with no volumes (its device's data is left alone)",
		setup: func(*flag.FlagSet) func(*invocation) error {
			return func(inv *invocation) error {
				if err := inv.api.DeletePool(inv.ctx, inv.args[0]); err != nil {
					return err
				}
				return inv.deleted("pool", inv.args[0])
			}
		}},
}

var volumeCommands = map[string]command{
	"create": {args: "NAME (--pool P --size S [--thin] | --snapshot SNAP [--size S])", nargs: 1, summary: "carve a volume out of a pool, or clone a snapshot",
		setup: func(fs *flag.FlagSet) func(*invocation) error {
			pool := fs.String("pool", "", "the pool to carve the volume from")
			var size sizeFlag
			fs.Var(&size, "size", "volume size, e.g. 512MiB, 10GiB (a clone: at least its snapshot's)")
			thin := fs.Bool("thin", false, "allocate on first write (volume store pools)")
			snap := fs.String("snapshot", "", "make a writable thin clone of this snapshot, in its pool")
			return func(inv *invocation) error {
				if *snap == "" && (*pool == "" || !size.set) {
					return usagef("give --pool and --size, or --snapshot")
				}
				v, created, err := inv.api.CreateVolume(inv.ctx, api.VolumeRequest{Name: inv.args[0], Pool: *pool, Size: api.Size(size.bytes), Thin: *thin, Snapshot: *snap})
				if err != nil {
					return err
				}
				if inv.json {
					return inv.printJSON(v)
				}
				_, err = fmt.Fprintf(inv.stdout, "volume %s %s: %s in pool %s, uuid %s, serial %s\n", v.Name, createdWord(created), formatBytes(v.SizeBytes), v.Pool, v.UUID, v.Serial)
				return err
			}
		}},
	"list": {summary: "list volumes", setup: func(*flag.FlagSet) func(*invocation) error {
		return func(inv *invocation) error {
			vols, err := inv.api.Volumes(inv.ctx)
			if err != nil {
				return err
			}
			if inv.json {
				return inv.printJSON(api.VolumeList{Volumes: vols})
			}
			var rows [][]string
			for _, v := range vols {
				rows = append(rows, []string{v.Name, v.Pool, formatBytes(v.SizeBytes), volumeState(v), orDash(v.Share), v.UUID, formatBytes(v.AllocatedBytes), v.Error})
			}
			return inv.table([]string{"NAME", "POOL", "SIZE", "STATE", "SHARE", "UUID", "ALLOCATED", "ERROR"}, rows)
		}
	}},
	"resize": {args: "NAME --size S", nargs: 1, summary: "grow a volume (an extent volume in place), or shrink a volume store's",
		setup: func(fs *flag.FlagSet) func(*invocation) error {
			var size sizeFlag
			fs.Var(&size, "size", "the new size, e.g. 20GiB")
			return func(inv *invocation) error {
				if !size.set {
					return usagef("give --size")
				}
				v, err := inv.api.ResizeVolume(inv.ctx, inv.args[0], api.Size(size.bytes))
				if err != nil {
					return err
				}
				if inv.json {
					return inv.printJSON(v)
				}
				_, err = fmt.Fprintf(inv.stdout, "volume %s is %s\n", v.Name, formatBytes(v.SizeBytes))
				return err
			}
		}},
	"delete": {args: "NAME", nargs: 1, summary: "delete a volume that is not shared",
		setup: func(*flag.FlagSet) func(*invocation) error {
			return func(inv *invocation) error {
				if err := inv.api.DeleteVolume(inv.ctx, inv.args[0]); err != nil {
					return err
				}
				return inv.deleted("volume", inv.args[0])
			}
		}},
}

var snapshotCommands = map[string]command{
	"create": {args: "VOLUME NAME", nargs: 2, summary: "snapshot a volume store volume while it runs (read-only, crash-consistent)",
		setup: func(*flag.FlagSet) func(*invocation) error {
			return func(inv *invocation) error {
				s, created, err := inv.api.CreateSnapshot(inv.ctx, api.SnapshotRequest{Volume: inv.args[0], Name: inv.args[1]})
				if err != nil {
					return err
				}
				if inv.json {
					return inv.printJSON(s)
				}
				_, err = fmt.Fprintf(inv.stdout, "snapshot %s %s: of volume %s, %s, I/O paused %dus\n", s.Name, createdWord(created), s.Volume, formatBytes(s.SizeBytes), s.PausedMicros)
				return err
			}
		}},
	"list": {args: "[VOLUME]", optional: 1, summary: "list snapshots, of every volume or of one",
		setup: func(*flag.FlagSet) func(*invocation) error {
			return func(inv *invocation) error {
				volume := ""
				if len(inv.args) > 0 {
					volume = inv.args[0]
				}
				snaps, err := inv.api.Snapshots(inv.ctx, volume)
				if err != nil {
					return err
				}
				if inv.json {
					return inv.printJSON(api.SnapshotList{Snapshots: snaps})
				}
				var rows [][]string
				for _, s := range snaps {
					rows = append(rows, []string{s.Name, orDash(s.Volume), s.Pool, formatBytes(s.SizeBytes), formatBytes(s.AllocatedBytes), s.CreatedAt.Format(time.RFC3339), s.UUID})
				}
				return inv.table([]string{"NAME", "VOLUME", "POOL", "SIZE", "ALLOCATED", "CREATED", "UUID"}, rows)
			}
		}},
	"delete": {args: "NAME", nargs: 1, summary: "delete a snapshot (its clones and volume keep what they map)",
		setup: func(*flag.FlagSet) func(*invocation) error {
			return func(inv *invocation) error {
				if err := inv.api.DeleteSnapshot(inv.ctx, inv.args[0]); err != nil {
					return err
				}
				return inv.deleted("snapshot", inv.args[0])
			}
		}},
}

// printPool answers a pool's creation or import.
func printPool(inv *invocation, p engine.Pool, created bool, err error) error {
	if err != nil {
		return err
	}
	if inv.json {
		return inv.printJSON(p)
	}
	kind := ""
	if p.Format == engine.FormatLvol {
		kind = fmt.Sprintf(" (volume store, %s clusters, %d volumes)", formatBytes(p.ClusterSize), p.Volumes)
	}
	_, err = fmt.Fprintf(inv.stdout, "pool %s %s: %s, %s%s\n", p.Name, createdWord(created), formatBytes(p.CapacityBytes), p.URI, kind)
	return err
}

var shareCommands = map[string]command{
	"add": {args: "VOLUME --nqn NQN --listen ADDR:PORT [--host NQN]...", nargs: 1, summary: "export a volume over NVMe/TCP",
		setup: func(fs *flag.FlagSet) func(*invocation) error {
			nqn := fs.String("nqn", "", "the subsystem NQN, e.g. nqn.2024-01.io.strata:vol0")
			var listen, hosts listFlag
			fs.Var(&listen, "listen", "IP:PORT to accept connections on (repeatable)")
			fs.Var(&hosts, "host", "a host NQN allowed to connect (repeatable; none: any host)")
			anyHost := fs.Bool("allow-any-host", false, "let any host connect (the default without --host)")
			return func(inv *invocation) error {
				if *nqn == "" || len(listen) == 0 {
					return usagef("give --nqn and at least one --listen")
				}
				if *anyHost && len(hosts) > 0 {
					return usagef("--allow-any-host and --host exclude each other")
				}
				req := api.ShareRequest{Volume: inv.args[0], NQN: *nqn, Listeners: listen, Hosts: hosts, AllowAnyHost: len(hosts) == 0}
				sh, created, err := inv.api.CreateShare(inv.ctx, req)
				if err != nil {
					return err
				}
				if inv.json {
					return inv.printJSON(sh)
				}
				if req.AllowAnyHost && !*anyHost {
					fmt.Fprintln(inv.stderr, "note: any host may connect; give --host NQN to restrict it")
				}
				_, err = fmt.Fprintf(inv.stdout, "share %s %s: %s on %s, %s\n", sh.Name, createdWord(created), sh.NQN, strings.Join(sh.Listeners, " "), hostsText(sh))
				return err
			}
		}},
	"list": {summary: "list shares", setup: func(*flag.FlagSet) func(*invocation) error {
		return func(inv *invocation) error {
			shares, err := inv.api.Shares(inv.ctx)
			if err != nil {
				return err
			}
			if inv.json {
				return inv.printJSON(api.ShareList{Shares: shares})
			}
			var rows [][]string
			for _, s := range shares {
				rows = append(rows, []string{s.Name, s.NQN, strings.Join(s.Listeners, ","), hostsText(s), s.State, strconv.Itoa(s.Connections), s.Error})
			}
			return inv.table([]string{"NAME", "NQN", "LISTENERS", "HOSTS", "STATE", "CONNECTIONS", "ERROR"}, rows)
		}
	}},
	"remove": {args: "NAME", nargs: 1, summary: "stop exporting a volume (NAME is the volume's)",
		setup: func(*flag.FlagSet) func(*invocation) error {
			return func(inv *invocation) error {
				if err := inv.api.DeleteShare(inv.ctx, inv.args[0]); err != nil {
					return err
				}
				return inv.deleted("share", inv.args[0])
			}
		}},
}

func hostsText(s engine.Share) string {
	if s.AllowAnyHost {
		return "any host"
	}
	return strings.Join(s.Hosts, ",")
}

var hostCommands = map[string]command{
	"add": {args: "NAME --nqn NQN", nargs: 1, summary: "name a host by its host NQN",
		setup: func(fs *flag.FlagSet) func(*invocation) error {
			nqn := fs.String("nqn", "", "the host NQN (cat /etc/nvme/hostnqn on the host)")
			return func(inv *invocation) error {
				if *nqn == "" {
					return usagef("give --nqn")
				}
				h, created, err := inv.api.CreateHost(inv.ctx, api.HostRequest{Name: inv.args[0], NQN: *nqn})
				if err != nil {
					return err
				}
				if inv.json {
					return inv.printJSON(h)
				}
				_, err = fmt.Fprintf(inv.stdout, "host %s %s: %s\n", h.Name, createdWord(created), h.NQN)
				return err
			}
		}},
	"list": {summary: "list hosts", setup: func(*flag.FlagSet) func(*invocation) error {
		return func(inv *invocation) error {
			hosts, err := inv.api.Hosts(inv.ctx)
			if err != nil {
				return err
			}
			if inv.json {
				return inv.printJSON(api.HostList{Hosts: hosts})
			}
			var rows [][]string
			for _, h := range hosts {
				rows = append(rows, []string{h.Name, h.NQN, orDash(strings.Join(h.Shares, ","))})
			}
			return inv.table([]string{"NAME", "NQN", "SHARES"}, rows)
		}
	}},
	"remove": {args: "NAME", nargs: 1, summary: "forget a host no share allows",
		setup: func(*flag.FlagSet) func(*invocation) error {
			return func(inv *invocation) error {
				if err := inv.api.DeleteHost(inv.ctx, inv.args[0]); err != nil {
					return err
				}
				return inv.deleted("host", inv.args[0])
			}
		}},
}

// volumeState is a volume's state, with how far its device work is while
// it has some: "creating 40%".
func volumeState(v engine.Volume) string {
	if p := v.Progress; p != nil && p.TotalBytes > 0 {
		return fmt.Sprintf("%s %d%%", v.State, 100*p.DoneBytes/p.TotalBytes)
	}
	return v.State
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

var statusCmd = command{summary: "the daemon's reactors, pools and volume I/O",
	setup: func(*flag.FlagSet) func(*invocation) error {
		return func(inv *invocation) error {
			st, err := inv.api.Status(inv.ctx)
			if err != nil {
				return err
			}
			if inv.json {
				return inv.printJSON(st)
			}
			target := "not available"
			if st.TargetAvailable {
				target = "available"
			}
			fmt.Fprintf(inv.stdout, "strata %s, up %s; NVMe-oF target %s; %d shares, %d connections\n\n",
				st.Version, (time.Duration(st.UptimeSeconds) * time.Second).String(), target, st.Shares, st.Connections)
			var rows [][]string
			for _, r := range st.Reactors {
				rows = append(rows, []string{strconv.Itoa(r.ID), strconv.Itoa(r.Core), fmt.Sprintf("%.1f", r.BusyPercent),
					seconds(r.BusyNs), seconds(r.IdleNs), strconv.FormatUint(r.Wakeups, 10)})
			}
			if err := inv.table([]string{"REACTOR", "CORE", "BUSY%", "BUSY", "IDLE", "WAKEUPS"}, rows); err != nil {
				return err
			}
			fmt.Fprintln(inv.stdout)
			rows = rows[:0]
			for _, p := range st.Pools {
				rows = append(rows, []string{p.Name, p.State, formatBytes(p.CapacityBytes), formatBytes(p.FreeBytes), strconv.Itoa(p.Volumes)})
			}
			if err := inv.table([]string{"POOL", "STATE", "CAPACITY", "FREE", "VOLUMES"}, rows); err != nil {
				return err
			}
			fmt.Fprintln(inv.stdout)
			rows = rows[:0]
			for _, v := range st.Volumes {
				rows = append(rows, []string{v.Name, v.Pool, formatBytes(v.SizeBytes), v.State,
					fmt.Sprintf("%.0f", v.ReadIOPS), fmt.Sprintf("%.0f", v.WriteIOPS),
					formatBytes(uint64(v.ReadBytesPerSec)) + "/s", formatBytes(uint64(v.WriteBytesPerSec)) + "/s"})
			}
			return inv.table([]string{"VOLUME", "POOL", "SIZE", "STATE", "READ IOPS", "WRITE IOPS", "READ", "WRITE"}, rows)
		}
	}}

func seconds(ns uint64) string {
	return (time.Duration(ns) / time.Millisecond * time.Millisecond).String()
}
