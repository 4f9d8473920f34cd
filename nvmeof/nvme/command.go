package nvme

import (
	"encoding/binary"
	"fmt"
)

// CommandSize and CompletionSize are the queue entry sizes (64 and 16 bytes).
const (
	CommandSize    = 64
	CompletionSize = 16
)

// Command is a submission queue entry (NVMe Base 2.0, 4.1, Figure 88):
//
//	 0      opcode
//	 1      flags: FUSE (1:0), PSDT (7:6; 01b or 10b: SGLs, as on fabrics)
//	 2-3    command identifier
//	 4-7    namespace identifier
//	 8-15   CDW2-3
//	16-23   metadata pointer
//	24-39   data pointer: one SGL descriptor on fabrics
//	40-63   CDW10-CDW15
//
// Fabrics commands (opcode 0x7F) put their type (FCTYPE) at byte 4.
type Command []byte

// Field offsets.
const (
	cmdOpcode = 0
	cmdFlags  = 1
	cmdCID    = 2
	cmdNSID   = 4
	cmdFCType = 4
	cmdSGL    = 24
	cmdCDW10  = 40
)

// cmdPRP1 and cmdPRP2 are the data pointer as PRP entries (PCIe).
const (
	cmdPRP1 = 24
	cmdPRP2 = 32
)

// SetPRP sets the data pointer to PRP entries (PSDT 00b, as on PCIe).
func (c Command) SetPRP(prp1, prp2 uint64) {
	binary.LittleEndian.PutUint64(c[cmdPRP1:], prp1)
	binary.LittleEndian.PutUint64(c[cmdPRP2:], prp2)
}

// PRP returns the data pointer as PRP entries.
func (c Command) PRP() (prp1, prp2 uint64) {
	return binary.LittleEndian.Uint64(c[cmdPRP1:]), binary.LittleEndian.Uint64(c[cmdPRP2:])
}

// Opcode returns the opcode.
func (c Command) Opcode() uint8 { return c[cmdOpcode] }

// Flags returns the flags byte.
func (c Command) Flags() uint8 { return c[cmdFlags] }

// CID returns the command identifier.
func (c Command) CID() uint16 { return binary.LittleEndian.Uint16(c[cmdCID:]) }

// NSID returns the namespace identifier.
func (c Command) NSID() uint32 { return binary.LittleEndian.Uint32(c[cmdNSID:]) }

// FCType returns a fabrics command's type.
func (c Command) FCType() uint8 { return c[cmdFCType] }

// CDW returns command dword n (10..15).
func (c Command) CDW(n int) uint32 { return binary.LittleEndian.Uint32(c[cmdCDW10+4*(n-10):]) }

// SGL returns the data pointer's SGL descriptor.
func (c Command) SGL() SGL { return SGL(c[cmdSGL : cmdSGL+SGLSize]) }

// SetOpcode, SetCID, SetNSID, SetFlags, SetCDW write the fields.
func (c Command) SetOpcode(op uint8) { c[cmdOpcode] = op }

// SetFlags writes the flags byte.
func (c Command) SetFlags(f uint8) { c[cmdFlags] = f }

// SetCID writes the command identifier.
func (c Command) SetCID(id uint16) { binary.LittleEndian.PutUint16(c[cmdCID:], id) }

// SetNSID writes the namespace identifier.
func (c Command) SetNSID(id uint32) { binary.LittleEndian.PutUint32(c[cmdNSID:], id) }

// SetFCType writes a fabrics command's type.
func (c Command) SetFCType(t uint8) { c[cmdFCType] = t }

// SetCDW writes command dword n (10..15).
func (c Command) SetCDW(n int, v uint32) { binary.LittleEndian.PutUint32(c[cmdCDW10+4*(n-10):], v) }

// FlagsSGL is PSDT = 01b: the data pointer is an SGL (all fabrics commands).
const FlagsSGL = 1 << 6

// Read, Write, Write Zeroes, Compare: starting LBA in CDW10-11, 0's based
// block count in CDW12 bits 15:0, Force Unit Access in CDW12 bit 30.

// SLBA returns the starting LBA.
func (c Command) SLBA() uint64 { return binary.LittleEndian.Uint64(c[cmdCDW10:]) }

// SetSLBA writes the starting LBA.
func (c Command) SetSLBA(lba uint64) { binary.LittleEndian.PutUint64(c[cmdCDW10:], lba) }

// Blocks returns the 1-based block count (NLB + 1).
func (c Command) Blocks() uint32 { return c.CDW(12)&0xffff + 1 }

// FUA reports Force Unit Access.
func (c Command) FUA() bool { return c.CDW(12)&(1<<30) != 0 }

// SetBlocks writes NLB for blocks (1..65536) and FUA.
func (c Command) SetBlocks(blocks uint32, fua bool) {
	v := (blocks - 1) & 0xffff
	if fua {
		v |= 1 << 30
	}
	c.SetCDW(12, v)
}

func (c Command) String() string {
	return fmt.Sprintf("cmd(op=%#02x cid=%d nsid=%d)", c.Opcode(), c.CID(), c.NSID())
}

// SGLSize is the size of an SGL descriptor.
const SGLSize = 16

// SGL is an SGL descriptor (NVMe Base 2.0, 4.3.2, Figure 113): address
// (bytes 0-7), length (8-11), type in byte 15 bits 7:4 and subtype in bits
// 3:0. The forms NVMe/TCP uses (TP 8000, 3.3.3):
//
//	Data Block, subtype Offset (0x01): in-capsule data at Address offset
//	Transport Data Block, subtype Transport Specific (0x5A): data moved by
//	  C2HData/R2T+H2CData PDUs
type SGL []byte

// SGL descriptor identifiers (type << 4 | subtype).
const (
	SGLDataBlockOffset    = 0x01
	SGLTransportDataBlock = 0x5a
	sglAddr               = 0
	sglLen                = 8
	sglID                 = 15
)

// Address returns the address (the offset into the capsule for in-capsule data).
func (s SGL) Address() uint64 { return binary.LittleEndian.Uint64(s[sglAddr:]) }

// Length returns the data length in bytes.
func (s SGL) Length() uint32 { return binary.LittleEndian.Uint32(s[sglLen:]) }

// ID returns the descriptor type and subtype byte.
func (s SGL) ID() uint8 { return s[sglID] }

// Set writes a descriptor.
func (s SGL) Set(id uint8, addr uint64, length uint32) {
	clear(s)
	binary.LittleEndian.PutUint64(s[sglAddr:], addr)
	binary.LittleEndian.PutUint32(s[sglLen:], length)
	s[sglID] = id
}

// Completion is a completion queue entry (NVMe Base 2.0, 4.2.1, Figure 92):
//
//	 0-3    DW0, command specific
//	 4-7    DW1
//	 8-9    SQ head pointer
//	10-11   SQ identifier
//	12-13   command identifier
//	14-15   phase tag (bit 0) and status (bits 15:1)
type Completion []byte

const (
	cqeDW0    = 0
	cqeDW1    = 4
	cqeSQHD   = 8
	cqeSQID   = 10
	cqeCID    = 12
	cqeStatus = 14
)

// DW0 returns the command-specific dword 0.
func (c Completion) DW0() uint32 { return binary.LittleEndian.Uint32(c[cqeDW0:]) }

// DW1 returns dword 1.
func (c Completion) DW1() uint32 { return binary.LittleEndian.Uint32(c[cqeDW1:]) }

// SQHD returns the SQ head pointer.
func (c Completion) SQHD() uint16 { return binary.LittleEndian.Uint16(c[cqeSQHD:]) }

// SQID returns the SQ identifier.
func (c Completion) SQID() uint16 { return binary.LittleEndian.Uint16(c[cqeSQID:]) }

// CID returns the command identifier.
func (c Completion) CID() uint16 { return binary.LittleEndian.Uint16(c[cqeCID:]) }

// Status returns the status (without the phase tag).
func (c Completion) Status() Status { return Status(binary.LittleEndian.Uint16(c[cqeStatus:]) >> 1) }

// Set writes every field of the entry; the phase tag is 0 (unused on fabrics).
func (c Completion) Set(dw0, dw1 uint32, sqhd, sqid, cid uint16, st Status) {
	binary.LittleEndian.PutUint32(c[cqeDW0:], dw0)
	binary.LittleEndian.PutUint32(c[cqeDW1:], dw1)
	binary.LittleEndian.PutUint16(c[cqeSQHD:], sqhd)
	binary.LittleEndian.PutUint16(c[cqeSQID:], sqid)
	binary.LittleEndian.PutUint16(c[cqeCID:], cid)
	binary.LittleEndian.PutUint16(c[cqeStatus:], uint16(st)<<1)
}
