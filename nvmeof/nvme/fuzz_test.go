package nvme

import "testing"

// FuzzConnectData: peer-supplied Connect data never panics the parser, and
// a structure that validates yields NQNs without their terminators.
func FuzzConnectData(f *testing.F) {
	d := ConnectData(make([]byte, ConnectDataSize))
	d.Set([16]byte{1}, 0xffff, "nqn.2024-01.io.strata:s", "nqn.2024-01.io.strata:h")
	f.Add([]byte(d))
	f.Add(make([]byte, 5))
	f.Fuzz(func(t *testing.T, in []byte) {
		d := ConnectData(in)
		if d.Validate() != nil {
			return
		}
		if len(d.SubNQN()) > 255 || len(d.HostNQN()) > 255 {
			t.Fatal("NQN longer than its field")
		}
		_ = d.HostID()
		_ = d.ControllerID()
	})
}

// FuzzDiscoveryLog: the host parses a log page from the network.
func FuzzDiscoveryLog(f *testing.F) {
	b := make([]byte, DiscoveryHeaderSize+DiscoveryEntrySize)
	EncodeDiscoveryLog(b, 1, []DiscoveryEntry{{TrType: TrTypeTCP, SvcID: "4420", SubNQN: "nqn.2024-01.io.strata:a", Addr: "10.0.0.1"}})
	f.Add(b)
	f.Add(make([]byte, 100))
	f.Fuzz(func(t *testing.T, in []byte) {
		_, entries, err := DecodeDiscoveryLog(in)
		if err != nil && entries != nil {
			t.Fatal("entries and an error")
		}
	})
}

// FuzzCommand: every accessor is safe on any 64-byte command.
func FuzzCommand(f *testing.F) {
	c := Command(make([]byte, CommandSize))
	c.SetConnect(1, 32, 0, 0)
	f.Add([]byte(c))
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) != CommandSize {
			return
		}
		c := Command(in)
		_ = c.Blocks() + uint32(c.Opcode()) + c.NSID()
		_ = c.SLBA() + c.LogPageBytes() + c.LogPageOffset()
		_ = c.SGL().Length()
		_ = c.ConnectSQSize()
		if c.Blocks() == 0 || c.Blocks() > 65536 {
			t.Fatalf("block count %d out of 1..65536", c.Blocks())
		}
	})
}

// FuzzChangedNamespaces: the host parses a log page from the network; the
// IDs it returns are the page's own, non-zero, at most 1024.
func FuzzChangedNamespaces(f *testing.F) {
	f.Add([]byte{1, 0, 0, 0, 2, 0, 0, 0})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Add(make([]byte, 3))
	f.Fuzz(func(t *testing.T, in []byte) {
		ids := ChangedNamespaces(in)
		if len(ids) > ChangedNSListSize/4 || 4*len(ids) > len(in) {
			t.Fatalf("%d IDs from %d bytes", len(ids), len(in))
		}
		for _, id := range ids {
			if id == 0 {
				t.Fatal("a zero ID")
			}
		}
	})
}
