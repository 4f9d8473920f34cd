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
		setup: func(*flag.FlagSet) func(*invocation) error {
			return func(inv *invocation) error {
				p, created, err := inv.api.CreatePool(inv.ctx, api.PoolRequest{Name: inv.args[0], URI: inv.args[1]})
				if err != nil {
					return err
				}
				if inv.json {
					return inv.printJSON(p)
				}
				_, err = fmt.Fprintf(inv.stdout, "pool %s %s: %s, %s\n", p.Name, createdWord(created), formatBytes(p.CapacityBytes), p.URI)
				return err
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
				rows = append(rows, []string{p.Name, p.State, formatBytes(p.CapacityBytes), formatBytes(p.FreeBytes), strconv.Itoa(p.Volumes), p.URI, p.Error})
			}
			return inv.table([]string{"NAME", "STATE", "CAPACITY", "FREE", "VOLUMES", "URI", "ERROR"}, rows)
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
	"create": {args: "NAME --pool P --size S", nargs: 1, summary: "carve a volume out of a pool",
		setup: func(fs *flag.FlagSet) func(*invocation) error {
			pool := fs.String("pool", "", "the pool to carve the volume from")
			var size sizeFlag
			fs.Var(&size, "size", "volume size, e.g. 512MiB, 10GiB")
			return func(inv *invocation) error {
				if *pool == "" || !size.set {
					return usagef("give --pool and --size")
				}
				v, created, err := inv.api.CreateVolume(inv.ctx, api.VolumeRequest{Name: inv.args[0], Pool: *pool, Size: api.Size(size.bytes)})
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
				rows = append(rows, []string{v.Name, v.Pool, formatBytes(v.SizeBytes), volumeState(v), orDash(v.Share), v.UUID, v.Error})
			}
			return inv.table([]string{"NAME", "POOL", "SIZE", "STATE", "SHARE", "UUID", "ERROR"}, rows)
		}
	}},
	"resize": {args: "NAME --size S", nargs: 1, summary: "grow a volume in place (shrinking is refused)",
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
