package nvme

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
)

// Connect command fields (NVMe-oF 1.1, 3.3, Figure 19): RECFMT at byte 40,
// QID 42, SQSIZE (0's based) 44, CATTR 46, KATO (ms) 48.
const (
	connRECFMT = 40
	connQID    = 42
	connSQSIZE = 44
	connCATTR  = 46
	connKATO   = 48
)

// CATTR bits.
const (
	CAttrPriorityUrgent = 1 << 1
	CAttrDisableSQFlow  = 1 << 2
)

// ConnectRecFmt returns the record format (0).
func (c Command) ConnectRecFmt() uint16 { return binary.LittleEndian.Uint16(c[connRECFMT:]) }

// ConnectQID returns the queue being connected (0: admin).
func (c Command) ConnectQID() uint16 { return binary.LittleEndian.Uint16(c[connQID:]) }

// ConnectSQSize returns the queue size in entries (SQSIZE + 1).
func (c Command) ConnectSQSize() uint32 {
	return uint32(binary.LittleEndian.Uint16(c[connSQSIZE:])) + 1
}

// ConnectCAttr returns the connect attributes.
func (c Command) ConnectCAttr() uint8 { return c[connCATTR] }

// ConnectKATO returns the keep alive timeout in milliseconds.
func (c Command) ConnectKATO() uint32 { return binary.LittleEndian.Uint32(c[connKATO:]) }

// SetConnect writes a Connect command's fields (fabrics opcode and type too).
func (c Command) SetConnect(qid uint16, sqsize uint32, cattr uint8, katoMs uint32) {
	c.SetOpcode(OpcodeFabrics)
	c.SetFCType(FabricsConnect)
	binary.LittleEndian.PutUint16(c[connRECFMT:], 0)
	binary.LittleEndian.PutUint16(c[connQID:], qid)
	binary.LittleEndian.PutUint16(c[connSQSIZE:], uint16(sqsize-1))
	c[connCATTR] = cattr
	binary.LittleEndian.PutUint32(c[connKATO:], katoMs)
}

// ConnectDataSize is the size of the Connect command's data.
const ConnectDataSize = 1024

// ConnectData is the data of a Connect command (NVMe-oF 1.1, Figure 20):
// HOSTID 0-15, CNTLID 16-17, SUBNQN 256-511, HOSTNQN 512-767.
type ConnectData []byte

const (
	cdHostID  = 0
	cdCntlID  = 16
	cdSubNQN  = 256
	cdHostNQN = 512
	nqnField  = 256
)

// ErrBadConnectData reports a malformed Connect data structure.
var ErrBadConnectData = errors.New("nvme: malformed connect data")

// ConnectDataError names the malformed field of a Connect data structure;
// it matches ErrBadConnectData.
type ConnectDataError struct {
	Offset int // of the field in the data: what Connect Invalid Parameters reports
	Reason string
}

func (e *ConnectDataError) Error() string {
	return fmt.Sprintf("%v: byte %d: %s", ErrBadConnectData, e.Offset, e.Reason)
}

// Is makes errors.Is(err, ErrBadConnectData) true.
func (e *ConnectDataError) Is(target error) bool { return target == ErrBadConnectData }

// Validate checks the size and that both NQNs are NUL-terminated; its
// error is a *ConnectDataError.
func (d ConnectData) Validate() error {
	if len(d) != ConnectDataSize {
		return &ConnectDataError{Offset: 0, Reason: fmt.Sprintf("%d bytes, want %d", len(d), ConnectDataSize)}
	}
	for _, off := range []int{cdSubNQN, cdHostNQN} {
		if bytes.IndexByte(d[off:off+nqnField], 0) < 0 {
			return &ConnectDataError{Offset: off, Reason: "NQN not NUL-terminated"}
		}
	}
	return nil
}

// HostID returns HOSTID.
func (d ConnectData) HostID() (id [16]byte) { copy(id[:], d[cdHostID:]); return }

// ControllerID returns CNTLID (0xFFFF: any, dynamic model).
func (d ConnectData) ControllerID() uint16 { return binary.LittleEndian.Uint16(d[cdCntlID:]) }

// SubNQN returns the subsystem NQN (Validate first).
func (d ConnectData) SubNQN() string { return CString(d[cdSubNQN : cdSubNQN+nqnField]) }

// HostNQN returns the host NQN (Validate first).
func (d ConnectData) HostNQN() string { return CString(d[cdHostNQN : cdHostNQN+nqnField]) }

// Set writes every field.
func (d ConnectData) Set(hostID [16]byte, cntlID uint16, subNQN, hostNQN string) {
	clear(d[:ConnectDataSize])
	copy(d[cdHostID:], hostID[:])
	binary.LittleEndian.PutUint16(d[cdCntlID:], cntlID)
	copy(d[cdSubNQN:cdSubNQN+nqnField-1], subNQN)
	copy(d[cdHostNQN:cdHostNQN+nqnField-1], hostNQN)
}

// Property Get/Set fields (NVMe-oF 1.1, 3.4 and 3.5): ATTRIB at byte 40
// (bits 2:0: 0 = 4 bytes, 1 = 8 bytes), OFST at 44, VALUE at 48 (Set).
const (
	propATTRIB = 40
	propOFST   = 44
	propVALUE  = 48
)

// PropertySize8 reports an 8-byte property access.
func (c Command) PropertySize8() bool { return c[propATTRIB]&7 == 1 }

// PropertyOffset returns OFST.
func (c Command) PropertyOffset() uint32 { return binary.LittleEndian.Uint32(c[propOFST:]) }

// PropertyValue returns a Property Set's VALUE.
func (c Command) PropertyValue() uint64 { return binary.LittleEndian.Uint64(c[propVALUE:]) }

// SetProperty writes a Property Get (set=false) or Set command's fields.
func (c Command) SetProperty(set bool, size8 bool, off uint32, val uint64) {
	c.SetOpcode(OpcodeFabrics)
	if set {
		c.SetFCType(FabricsPropertySet)
	} else {
		c.SetFCType(FabricsPropertyGet)
	}
	c[propATTRIB] = 0
	if size8 {
		c[propATTRIB] = 1
	}
	binary.LittleEndian.PutUint32(c[propOFST:], off)
	binary.LittleEndian.PutUint64(c[propVALUE:], val)
}

// Get Log Page fields (NVMe Base 2.0, 5.16, Figure 197-199): LID in CDW10
// bits 7:0, LSP 14:8, RAE bit 15, NUMDL 31:16; NUMDU in CDW11 15:0; LPOL and
// LPOU in CDW12-13 (byte offset).

// LogPageID returns LID.
func (c Command) LogPageID() uint8 { return uint8(c.CDW(10)) }

// LogPageBytes returns the number of bytes asked for ((NUMD + 1) dwords).
func (c Command) LogPageBytes() uint64 {
	numd := uint64(c.CDW(10)>>16) | uint64(c.CDW(11)&0xffff)<<16
	return (numd + 1) * 4
}

// LogPageOffset returns the byte offset into the log.
func (c Command) LogPageOffset() uint64 { return uint64(c.CDW(12)) | uint64(c.CDW(13))<<32 }

// SetGetLogPage writes a Get Log Page command's fields.
func (c Command) SetGetLogPage(lid uint8, bytes uint32, offset uint64) {
	c.SetOpcode(AdminGetLogPage)
	numd := bytes/4 - 1
	c.SetCDW(10, uint32(lid)|numd<<16)
	c.SetCDW(11, numd>>16)
	c.SetCDW(12, uint32(offset))
	c.SetCDW(13, uint32(offset>>32))
}

// Discovery log page (NVMe-oF 1.1, 5.3, Figures 30-31): a 1024-byte header
// (GENCTR at 0, NUMREC at 8, RECFMT at 16) followed by 1024-byte entries.
const (
	DiscoveryHeaderSize = 1024
	DiscoveryEntrySize  = 1024
)

// DiscoveryEntry describes one way to reach a subsystem.
type DiscoveryEntry struct {
	TrType  uint8 // 3: TCP
	AdrFam  uint8 // 1: IPv4, 2: IPv6
	SubType uint8 // 1: referral/discovery, 2: NVM subsystem, 3: current discovery
	TReq    uint8 // transport requirements: secure channel, SQ flow control disable
	PortID  uint16
	CntlID  uint16 // 0xFFFF: dynamic model
	AdminSQ uint16 // ASQSZ
	SvcID   string // TRSVCID, e.g. "4420"
	SubNQN  string
	Addr    string // TRADDR
	TSAS    [256]byte
}

// Discovery entry field values.
const (
	TrTypeTCP          = 3
	AdrFamIPv4         = 1
	AdrFamIPv6         = 2
	SubTypeDiscovery   = 1
	SubTypeNVM         = 2
	SubTypeCurrentDisc = 3
	TReqNotSpecified   = 0
	TReqSQFlowDisable  = 1 << 2
	TCPSecTypeNone     = 0
)

// EncodeDiscoveryLog writes the header and entries into b, which must hold
// DiscoveryHeaderSize + len(entries)*DiscoveryEntrySize bytes.
func EncodeDiscoveryLog(b []byte, genCtr uint64, entries []DiscoveryEntry) {
	clear(b)
	le := binary.LittleEndian
	le.PutUint64(b[0:], genCtr)
	le.PutUint64(b[8:], uint64(len(entries)))
	le.PutUint16(b[16:], 0)
	for i, e := range entries {
		r := b[DiscoveryHeaderSize+i*DiscoveryEntrySize:]
		r[0], r[1], r[2], r[3] = e.TrType, e.AdrFam, e.SubType, e.TReq
		le.PutUint16(r[4:], e.PortID)
		le.PutUint16(r[6:], e.CntlID)
		le.PutUint16(r[8:], e.AdminSQ)
		PutPadded(r[32:64], e.SvcID)
		copy(r[256:511], e.SubNQN)
		PutPadded(r[512:768], e.Addr)
		copy(r[768:1024], e.TSAS[:])
	}
}

// DecodeDiscoveryLog parses a discovery log page (header and the entries
// present in b).
func DecodeDiscoveryLog(b []byte) (genCtr uint64, entries []DiscoveryEntry, err error) {
	if len(b) < DiscoveryHeaderSize {
		return 0, nil, fmt.Errorf("nvme: discovery log of %d bytes, shorter than its header", len(b))
	}
	le := binary.LittleEndian
	genCtr = le.Uint64(b[0:])
	n := le.Uint64(b[8:])
	if n > uint64((len(b)-DiscoveryHeaderSize)/DiscoveryEntrySize) {
		return genCtr, nil, fmt.Errorf("nvme: discovery log claims %d records in %d bytes", n, len(b))
	}
	for i := range int(n) {
		r := b[DiscoveryHeaderSize+i*DiscoveryEntrySize:]
		e := DiscoveryEntry{
			TrType: r[0], AdrFam: r[1], SubType: r[2], TReq: r[3],
			PortID: le.Uint16(r[4:]), CntlID: le.Uint16(r[6:]), AdminSQ: le.Uint16(r[8:]),
			SvcID: trimField(r[32:64]), SubNQN: CString(r[256:512]), Addr: trimField(r[512:768]),
		}
		copy(e.TSAS[:], r[768:1024])
		entries = append(entries, e)
	}
	return genCtr, entries, nil
}

func trimField(b []byte) string {
	s := CString(b)
	for len(s) > 0 && s[len(s)-1] == ' ' {
		s = s[:len(s)-1]
	}
	return s
}
