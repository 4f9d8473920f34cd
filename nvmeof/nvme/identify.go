package nvme

import (
	"encoding/binary"
	"strings"
)

// IdentifySize is the size of every Identify data structure.
const IdentifySize = 4096

// ControllerInfo is what Identify Controller reports (NVMe Base 2.0,
// Figure 275; the fabrics fields from NVMe-oF 1.1, Figure 28).
type ControllerInfo struct {
	VendorID        uint16
	Serial          string // SN, 20 bytes, space padded
	Model           string // MN, 40 bytes
	Firmware        string // FR, 8 bytes
	MDTS            uint8  // max transfer, 2^MDTS * 4 KiB pages; 0: no limit
	ControllerID    uint16
	Version         uint32
	AERLimit        uint8  // AERL, 0's based
	KeepAliveGranMs uint16 // KAS, in 100 ms units
	MaxCmd          uint16 // MAXCMD: outstanding commands per queue
	Namespaces      uint32 // NN: largest NSID
	ONCS            uint16 // optional NVM commands
	VolatileCache   bool
	SGLSupport      uint32 // SGLS
	SubNQN          string
	IOCCSZ          uint32 // I/O queue command capsule size, 16-byte units
	IORCSZ          uint32 // response capsule size, 16-byte units
	ICDOFF          uint16 // in-capsule data offset, 16-byte units
	ControllerModel uint8  // FCATT bit 0: 0 dynamic, 1 static
	MaxSGLDescs     uint8  // MSDBD
	Discovery       bool   // CNTRLTYPE 2 (discovery) vs 1 (I/O)
	OAES            uint32 // optional asynchronous events supported
	LPA             uint8  // log page attributes
	ErrorLogEntries uint8  // ELPE, 0's based
	FirmwareUpdates uint8  // FRMW
	CommandsEffects bool
}

// Identify Controller byte offsets.
const (
	ictlVID      = 0
	ictlSSVID    = 2
	ictlSN       = 4
	ictlMN       = 24
	ictlFR       = 64
	ictlRAB      = 72
	ictlIEEE     = 73
	ictlCMIC     = 76
	ictlMDTS     = 77
	ictlCNTLID   = 78
	ictlVER      = 80
	ictlOAES     = 92
	ictlCTRATT   = 96
	ictlCNTRLTYP = 111
	ictlOACS     = 256
	ictlACL      = 258
	ictlAERL     = 259
	ictlFRMW     = 260
	ictlLPA      = 261
	ictlELPE     = 262
	ictlNPSS     = 263
	ictlKAS      = 320
	ictlSQES     = 512
	ictlCQES     = 513
	ictlMAXCMD   = 514
	ictlNN       = 516
	ictlONCS     = 520
	ictlFUSES    = 522
	ictlFNA      = 524
	ictlVWC      = 525
	ictlAWUN     = 526
	ictlAWUPF    = 528
	ictlSGLS     = 536
	ictlMNAN     = 540
	ictlSUBNQN   = 768
	ictlIOCCSZ   = 1792
	ictlIORCSZ   = 1796
	ictlICDOFF   = 1800
	ictlFCATT    = 1802
	ictlMSDBD    = 1803
	ictlOFCS     = 1804
)

// ONCS bits.
const (
	ONCSCompare     = 1 << 0
	ONCSDatasetMgmt = 1 << 2
	ONCSWriteZeroes = 1 << 3
)

// SGLS bits: SGLs supported (bits 1:0 = 01b), Keyed SGL Data Block (bit 2),
// SGL Offset (bit 20), Transport SGL Data Block (bit 21).
const SGLSupportTCP = 1<<0 | 1<<20 | 1<<21

// EncodeIdentifyController fills b (IdentifySize bytes) with ci.
func EncodeIdentifyController(b []byte, ci *ControllerInfo) {
	clear(b[:IdentifySize])
	le := binary.LittleEndian
	le.PutUint16(b[ictlVID:], ci.VendorID)
	le.PutUint16(b[ictlSSVID:], ci.VendorID)
	PutPadded(b[ictlSN:ictlSN+20], ci.Serial)
	PutPadded(b[ictlMN:ictlMN+40], ci.Model)
	PutPadded(b[ictlFR:ictlFR+8], ci.Firmware)
	b[ictlRAB] = 6
	b[ictlCMIC] = 1 << 1 // may have several controllers (dynamic model, multipath)
	b[ictlMDTS] = ci.MDTS
	le.PutUint16(b[ictlCNTLID:], ci.ControllerID)
	le.PutUint32(b[ictlVER:], ci.Version)
	le.PutUint32(b[ictlOAES:], ci.OAES)
	if ci.Discovery {
		b[ictlCNTRLTYP] = 2
	} else {
		b[ictlCNTRLTYP] = 1
	}
	b[ictlACL] = 3
	b[ictlAERL] = ci.AERLimit
	b[ictlFRMW] = ci.FirmwareUpdates
	b[ictlLPA] = ci.LPA
	b[ictlELPE] = ci.ErrorLogEntries
	le.PutUint16(b[ictlKAS:], ci.KeepAliveGranMs)
	b[ictlSQES] = 6<<4 | 6 // required and maximum 64 bytes
	b[ictlCQES] = 4<<4 | 4 // 16 bytes
	le.PutUint16(b[ictlMAXCMD:], ci.MaxCmd)
	le.PutUint32(b[ictlNN:], ci.Namespaces)
	le.PutUint16(b[ictlONCS:], ci.ONCS)
	if ci.VolatileCache {
		b[ictlVWC] = 1 | 3<<1 // present; Flush with NSID FFFFFFFFh supported
	}
	le.PutUint32(b[ictlSGLS:], ci.SGLSupport)
	copy(b[ictlSUBNQN:ictlSUBNQN+256], ci.SubNQN)
	le.PutUint32(b[ictlIOCCSZ:], ci.IOCCSZ)
	le.PutUint32(b[ictlIORCSZ:], ci.IORCSZ)
	le.PutUint16(b[ictlICDOFF:], ci.ICDOFF)
	b[ictlFCATT] = ci.ControllerModel
	b[ictlMSDBD] = ci.MaxSGLDescs
}

// IdentifyController is a view of an Identify Controller structure, for hosts.
type IdentifyController []byte

// Serial, Model, SubNQN, ... read the fields.
func (b IdentifyController) Serial() string {
	return strings.TrimRight(string(b[ictlSN:ictlSN+20]), " \x00")
}

// Model returns MN.
func (b IdentifyController) Model() string {
	return strings.TrimRight(string(b[ictlMN:ictlMN+40]), " \x00")
}

// ControllerID returns CNTLID.
func (b IdentifyController) ControllerID() uint16 { return binary.LittleEndian.Uint16(b[ictlCNTLID:]) }

// VolatileCache reports VWC bit 0: a volatile write cache is present.
func (b IdentifyController) VolatileCache() bool { return b[ictlVWC]&1 != 0 }

// MDTS returns the maximum data transfer size exponent.
func (b IdentifyController) MDTS() uint8 { return b[ictlMDTS] }

// Namespaces returns NN.
func (b IdentifyController) Namespaces() uint32 { return binary.LittleEndian.Uint32(b[ictlNN:]) }

// SubNQN returns the subsystem NQN.
func (b IdentifyController) SubNQN() string { return CString(b[ictlSUBNQN : ictlSUBNQN+256]) }

// IOCCSZ returns the I/O command capsule size in 16-byte units.
func (b IdentifyController) IOCCSZ() uint32 { return binary.LittleEndian.Uint32(b[ictlIOCCSZ:]) }

// MaxCmd returns MAXCMD.
func (b IdentifyController) MaxCmd() uint16 { return binary.LittleEndian.Uint16(b[ictlMAXCMD:]) }

// KAS returns the keep alive granularity in 100 ms units.
func (b IdentifyController) KAS() uint16 { return binary.LittleEndian.Uint16(b[ictlKAS:]) }

// ONCS returns the optional NVM command support bits.
func (b IdentifyController) ONCS() uint16 { return binary.LittleEndian.Uint16(b[ictlONCS:]) }

// NamespaceInfo is what Identify Namespace reports (NVM Command Set 1.0, Figure 97).
type NamespaceInfo struct {
	Blocks        uint64 // NSZE = NCAP = NUSE
	BlockSizeLog2 uint8  // LBADS of the one LBA format
	NGUID         [16]byte
	EUI64         [8]byte
	// DeallocatedZeroes says deallocated blocks read back as zeroes (DLFEAT)
	// and that Write Zeroes deallocates (NSFEAT bit 3).
	DeallocatedZeroes bool
	OptimalIOBlocks   uint16 // NOWS/NPWG hint, 0's based; 0: none
	// Shared says the namespace may be attached to several controllers at
	// once (NMIC bit 0): hosts then accept it through a second controller
	// (multipath, reservations), which Linux refuses for a private one.
	Shared bool
}

const (
	idnsNSZE   = 0
	idnsNCAP   = 8
	idnsNUSE   = 16
	idnsNSFEAT = 24
	idnsNLBAF  = 25
	idnsFLBAS  = 26
	idnsNMIC   = 30
	idnsDLFEAT = 33
	idnsNGUID  = 104
	idnsEUI64  = 120
	idnsLBAF0  = 128
)

// EncodeIdentifyNamespace fills b (IdentifySize bytes) with ni.
func EncodeIdentifyNamespace(b []byte, ni *NamespaceInfo) {
	clear(b[:IdentifySize])
	le := binary.LittleEndian
	le.PutUint64(b[idnsNSZE:], ni.Blocks)
	le.PutUint64(b[idnsNCAP:], ni.Blocks)
	le.PutUint64(b[idnsNUSE:], ni.Blocks)
	b[idnsNLBAF] = 0 // one format, 0's based
	b[idnsFLBAS] = 0
	if ni.Shared {
		b[idnsNMIC] = 1
	}
	if ni.DeallocatedZeroes {
		b[idnsDLFEAT] = 1 | 1<<3 // deallocated reads zeroes; Write Zeroes may deallocate
	}
	copy(b[idnsNGUID:idnsNGUID+16], ni.NGUID[:])
	copy(b[idnsEUI64:idnsEUI64+8], ni.EUI64[:])
	// LBA format 0: no metadata, LBADS in bits 23:16, best relative performance.
	le.PutUint32(b[idnsLBAF0:], uint32(ni.BlockSizeLog2)<<16)
}

// IdentifyNamespace is a view of an Identify Namespace structure, for hosts.
type IdentifyNamespace []byte

// Blocks returns NSZE.
func (b IdentifyNamespace) Blocks() uint64 { return binary.LittleEndian.Uint64(b[idnsNSZE:]) }

// BlockSize returns the block size of the formatted LBA format.
func (b IdentifyNamespace) BlockSize() uint32 {
	f := int(b[idnsFLBAS] & 0xf)
	return 1 << (binary.LittleEndian.Uint32(b[idnsLBAF0+4*f:]) >> 16 & 0xff)
}

// Shared reports NMIC bit 0: the namespace may be attached to several
// controllers.
func (b IdentifyNamespace) Shared() bool { return b[idnsNMIC]&1 != 0 }

// WriteZeroesDeallocates reports DLFEAT bit 3: Write Zeroes with DEAC set
// may deallocate the blocks (they still read back as zeroes).
func (b IdentifyNamespace) WriteZeroesDeallocates() bool { return b[idnsDLFEAT]&(1<<3) != 0 }

// NGUID returns the namespace GUID.
func (b IdentifyNamespace) NGUID() (g [16]byte) { copy(g[:], b[idnsNGUID:]); return }

// Namespace identification descriptor types (NVMe Base 2.0, Figure 276).
const (
	NIDTEUI64 = 1
	NIDTNGUID = 2
	NIDTUUID  = 3
	NIDTCSI   = 4
)

// EncodeNSDescriptors fills b (IdentifySize bytes) with the descriptor list
// of a namespace: EUI-64, NGUID, UUID and the command set (NVM).
func EncodeNSDescriptors(b []byte, eui64 [8]byte, nguid, uuid [16]byte) {
	clear(b[:IdentifySize])
	off := 0
	put := func(typ uint8, v []byte) {
		b[off], b[off+1] = typ, uint8(len(v))
		copy(b[off+4:], v)
		off += 4 + len(v)
	}
	put(NIDTEUI64, eui64[:])
	put(NIDTNGUID, nguid[:])
	put(NIDTUUID, uuid[:])
	put(NIDTCSI, []byte{0}) // NVM command set
}

// EncodeNSList fills b (IdentifySize bytes) with the NSIDs greater than
// after, in increasing order, at most 1024.
func EncodeNSList(b []byte, ids []uint32, after uint32) {
	clear(b[:IdentifySize])
	n := 0
	for _, id := range ids {
		if id > after && n < IdentifySize/4 {
			binary.LittleEndian.PutUint32(b[4*n:], id)
			n++
		}
	}
}

// PutPadded writes s into b, padded with spaces (ASCII string fields).
func PutPadded(b []byte, s string) {
	n := copy(b, s)
	for i := n; i < len(b); i++ {
		b[i] = ' '
	}
}

// CString returns the NUL-terminated string at the start of b.
func CString(b []byte) string {
	for i, c := range b {
		if c == 0 {
			return string(b[:i])
		}
	}
	return string(b)
}
