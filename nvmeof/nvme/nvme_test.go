package nvme

import (
	"encoding/binary"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestCommandOffsets(t *testing.T) {
	c := Command(make([]byte, CommandSize))
	c.SetOpcode(IOWrite)
	c.SetFlags(FlagsSGL)
	c.SetCID(0xbeef)
	c.SetNSID(7)
	c.SetSLBA(0x0102030405060708)
	c.SetBlocks(8, true)
	c.SGL().Set(SGLTransportDataBlock, 0, 32768)
	require.EqualValues(t, 0x01, c[0])
	require.EqualValues(t, 0x40, c[1], "PSDT 01b")
	require.EqualValues(t, 0xbeef, binary.LittleEndian.Uint16(c[2:]))
	require.EqualValues(t, 7, binary.LittleEndian.Uint32(c[4:]))
	require.EqualValues(t, 0x0102030405060708, binary.LittleEndian.Uint64(c[40:]), "SLBA in CDW10-11")
	require.EqualValues(t, 7|1<<30, binary.LittleEndian.Uint32(c[48:]), "NLB 0's based, FUA bit 30 of CDW12")
	require.EqualValues(t, 32768, binary.LittleEndian.Uint32(c[32:]), "SGL length at byte 8 of the descriptor")
	require.EqualValues(t, 0x5a, c[39], "SGL identifier at byte 15")
	require.EqualValues(t, 8, c.Blocks())
	require.True(t, c.FUA())
	require.Equal(t, uint8(SGLTransportDataBlock), c.SGL().ID())
	require.Contains(t, c.String(), "cid=48879")
}

func TestCompletionOffsets(t *testing.T) {
	c := Completion(make([]byte, CompletionSize))
	c.Set(0x11111111, 0x22222222, 5, 3, 0x1234, LBAOutOfRange)
	require.EqualValues(t, 0x11111111, binary.LittleEndian.Uint32(c[0:]))
	require.EqualValues(t, 5, binary.LittleEndian.Uint16(c[8:]), "SQHD")
	require.EqualValues(t, 3, binary.LittleEndian.Uint16(c[10:]), "SQID")
	require.EqualValues(t, 0x1234, binary.LittleEndian.Uint16(c[12:]), "CID")
	sf := binary.LittleEndian.Uint16(c[14:])
	require.Zero(t, sf&1, "phase")
	require.EqualValues(t, 0x80, (sf>>1)&0xff, "SC")
	require.EqualValues(t, 0, (sf>>9)&7, "SCT")
	require.NotZero(t, sf&(1<<15), "DNR")
	require.Equal(t, LBAOutOfRange, c.Status())
	require.EqualValues(t, 0x22222222, c.DW1())
}

func TestStatus(t *testing.T) {
	require.True(t, Success.OK())
	require.False(t, WriteFault.OK())
	require.EqualValues(t, SCTMediaError, WriteFault.Type())
	require.EqualValues(t, 0x80, WriteFault.Code())
	require.True(t, InvalidField.DoNotRetry())
	require.Equal(t, "write fault", WriteFault.String())
	require.Equal(t, "write fault (dnr)", WriteFault.DNR().String())
	require.Equal(t, "LBA out of range (retryable)", MakeStatus(SCTGeneric, 0x80).String())
	require.Contains(t, MakeStatus(7, 0x99).String(), "sct=7")
	for s := range statusNames {
		require.NotEmpty(t, s.String())
	}
	var err error = NamespaceNotReady
	require.EqualError(t, err, "nvme: namespace not ready")

	require.Equal(t, MakeStatus(SCTGeneric, 0x80), LBAOutOfRange.DNR().Kind())
	require.Equal(t, "LBA out of range", LBAOutOfRange.DNR().Name())
	require.Equal(t, "invalid opcode", InvalidOpcode.Kind().Name(), "the kind of a DNR status keeps its name")
	require.Equal(t, "sct=7 sc=0x99", MakeStatus(7, 0x99).Name())
}

func TestIdentifyControllerOffsets(t *testing.T) {
	b := make([]byte, IdentifySize)
	EncodeIdentifyController(b, &ControllerInfo{
		Serial: "SN1", Model: "Strata", Firmware: "1.0", MDTS: 5, ControllerID: 9, Version: 0x20000,
		KeepAliveGranMs: 100, MaxCmd: 128, Namespaces: 1024, ONCS: ONCSWriteZeroes, VolatileCache: true,
		SGLSupport: SGLSupportTCP, SubNQN: "nqn.2024-01.io.strata:x", IOCCSZ: 516, IORCSZ: 1,
	})
	require.Equal(t, "SN1                 ", string(b[4:24]))
	require.Equal(t, "Strata", string(b[24:30]))
	require.EqualValues(t, 5, b[77])
	require.EqualValues(t, 9, binary.LittleEndian.Uint16(b[78:]))
	require.EqualValues(t, 0x20000, binary.LittleEndian.Uint32(b[80:]))
	require.EqualValues(t, 1, b[111], "I/O controller")
	require.EqualValues(t, 100, binary.LittleEndian.Uint16(b[320:]), "KAS")
	require.EqualValues(t, 0x66, b[512], "SQES")
	require.EqualValues(t, 0x44, b[513], "CQES")
	require.EqualValues(t, 128, binary.LittleEndian.Uint16(b[514:]))
	require.EqualValues(t, 1024, binary.LittleEndian.Uint32(b[516:]))
	require.EqualValues(t, ONCSWriteZeroes, binary.LittleEndian.Uint16(b[520:]))
	require.EqualValues(t, 1, b[525]&1, "VWC present")
	require.EqualValues(t, SGLSupportTCP, binary.LittleEndian.Uint32(b[536:]))
	require.Equal(t, "nqn.2024-01.io.strata:x", CString(b[768:1024]))
	require.EqualValues(t, 516, binary.LittleEndian.Uint32(b[1792:]), "IOCCSZ")
	require.EqualValues(t, 1, binary.LittleEndian.Uint32(b[1796:]), "IORCSZ")
	ic := IdentifyController(b)
	require.Equal(t, "SN1", ic.Serial())
	require.Equal(t, "Strata", ic.Model())
	require.Equal(t, "nqn.2024-01.io.strata:x", ic.SubNQN())
	require.EqualValues(t, 516, ic.IOCCSZ())
	require.EqualValues(t, 9, ic.ControllerID())
}

func TestIdentifyNamespaceOffsets(t *testing.T) {
	b := make([]byte, IdentifySize)
	ni := &NamespaceInfo{Blocks: 1 << 20, BlockSizeLog2: 12, NGUID: [16]byte{1, 2}, EUI64: [8]byte{3}, DeallocatedZeroes: true}
	EncodeIdentifyNamespace(b, ni)
	require.Zero(t, b[30], "NMIC of a private namespace")
	ni.Shared = true
	EncodeIdentifyNamespace(b, ni)
	require.EqualValues(t, 1, b[30], "NMIC bit 0: shared")
	require.True(t, IdentifyNamespace(b).Shared())
	require.EqualValues(t, 1<<20, binary.LittleEndian.Uint64(b[0:]))
	require.EqualValues(t, 1<<20, binary.LittleEndian.Uint64(b[8:]))
	require.EqualValues(t, 9, b[33], "DLFEAT: deallocated reads zeroes")
	require.EqualValues(t, 1, b[104])
	require.EqualValues(t, 3, b[120])
	require.EqualValues(t, 12, b[130], "LBADS of LBA format 0")
	require.EqualValues(t, 4096, IdentifyNamespace(b).BlockSize())
	require.EqualValues(t, 1<<20, IdentifyNamespace(b).Blocks())

	EncodeNSDescriptors(b, [8]byte{9}, [16]byte{8}, [16]byte{7})
	require.Equal(t, []byte{NIDTEUI64, 8, 0, 0, 9}, b[:5])
	require.Equal(t, []byte{NIDTNGUID, 16, 0, 0, 8}, b[12:17])
	require.Equal(t, []byte{NIDTUUID, 16, 0, 0, 7}, b[32:37])
	require.Equal(t, []byte{NIDTCSI, 1, 0, 0, 0}, b[52:57])

	EncodeNSList(b, []uint32{1, 2, 5}, 1)
	require.EqualValues(t, 2, binary.LittleEndian.Uint32(b[0:]))
	require.EqualValues(t, 5, binary.LittleEndian.Uint32(b[4:]))
	require.Zero(t, binary.LittleEndian.Uint32(b[8:]))
}

func TestConnect(t *testing.T) {
	c := Command(make([]byte, CommandSize))
	c.SetConnect(3, 128, CAttrDisableSQFlow, 15000)
	require.EqualValues(t, 0x7f, c[0])
	require.EqualValues(t, 1, c[4], "FCTYPE")
	require.EqualValues(t, 3, binary.LittleEndian.Uint16(c[42:]))
	require.EqualValues(t, 127, binary.LittleEndian.Uint16(c[44:]), "SQSIZE 0's based")
	require.EqualValues(t, CAttrDisableSQFlow, c[46])
	require.EqualValues(t, 15000, binary.LittleEndian.Uint32(c[48:]))
	require.EqualValues(t, 128, c.ConnectSQSize())

	d := ConnectData(make([]byte, ConnectDataSize))
	d.Set([16]byte{0xaa}, 0xffff, "nqn.2024-01.io.strata:s", "nqn.2024-01.io.strata:h")
	require.NoError(t, d.Validate())
	require.EqualValues(t, 0xaa, d[0])
	require.EqualValues(t, 0xffff, binary.LittleEndian.Uint16(d[16:]))
	require.Equal(t, "nqn.2024-01.io.strata:s", CString(d[256:]))
	require.Equal(t, "nqn.2024-01.io.strata:h", d.HostNQN())
	for i := 512; i < 768; i++ {
		d[i] = 'x'
	}
	require.ErrorIs(t, d.Validate(), ErrBadConnectData)
	require.ErrorIs(t, ConnectData(make([]byte, 10)).Validate(), ErrBadConnectData)
}

func TestPropertyAndLogPageFields(t *testing.T) {
	c := Command(make([]byte, CommandSize))
	c.SetProperty(true, true, 0x14, 0x460001)
	require.EqualValues(t, 0, c[4], "Property Set")
	require.EqualValues(t, 1, c[40], "8-byte access")
	require.EqualValues(t, 0x14, c.PropertyOffset())
	require.EqualValues(t, 0x460001, c.PropertyValue())
	c.SetGetLogPage(LogDiscovery, 3072, 1024)
	require.EqualValues(t, LogDiscovery, c.LogPageID())
	require.EqualValues(t, 3072, c.LogPageBytes())
	require.EqualValues(t, 1024, c.LogPageOffset())
	require.EqualValues(t, 767, c.CDW(10)>>16, "NUMDL 0's based dwords")
}

func TestDiscoveryLogRoundTrip(t *testing.T) {
	entries := []DiscoveryEntry{
		{TrType: TrTypeTCP, AdrFam: AdrFamIPv4, SubType: SubTypeNVM, PortID: 1, CntlID: 0xffff, AdminSQ: 32, SvcID: "4420", SubNQN: "nqn.2024-01.io.strata:a", Addr: "127.0.0.1"},
		{TrType: TrTypeTCP, AdrFam: AdrFamIPv4, SubType: SubTypeCurrentDisc, PortID: 2, CntlID: 0xffff, AdminSQ: 32, SvcID: "8009", SubNQN: "nqn.2014-08.org.nvmexpress.discovery", Addr: "127.0.0.1"},
	}
	b := make([]byte, DiscoveryHeaderSize+2*DiscoveryEntrySize)
	EncodeDiscoveryLog(b, 5, entries)
	require.EqualValues(t, 3, b[1024], "TRTYPE TCP")
	require.Equal(t, "4420", string(b[1024+32:1024+36]))
	require.Equal(t, "127.0.0.1", string(b[1024+512:1024+521]))
	gen, got, err := DecodeDiscoveryLog(b)
	require.NoError(t, err)
	require.EqualValues(t, 5, gen)
	require.Equal(t, entries, got)
	_, _, err = DecodeDiscoveryLog(b[:1500])
	require.Error(t, err)
}

func TestChangedNamespaces(t *testing.T) {
	page := func(ids ...uint32) []byte {
		b := make([]byte, ChangedNSListSize)
		for i, id := range ids {
			binary.LittleEndian.PutUint32(b[4*i:], id)
		}
		return b
	}
	full := make([]uint32, 1024)
	for i := range full {
		full[i] = uint32(i + 1)
	}
	for _, tc := range []struct {
		name string
		page []byte
		want []uint32
	}{
		{"none", page(), []uint32{}},
		{"two", page(1, 7), []uint32{1, 7}},
		{"stops at the first zero", page(3, 0, 9), []uint32{3}},
		{"all 1024 entries", page(full...), full},
		{"overflow", page(0xffffffff, 5), nil},
		{"short page", page(4, 2)[:6], []uint32{4}},
		{"empty page", nil, []uint32{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, ChangedNamespaces(tc.page))
		})
	}
}
