// Package pdu is the NVMe/TCP transport's PDU layer (NVMe/TCP Transport
// Specification 1.0, TP 8000, section 3.6): PDU headers as byte-slice views
// with named offsets, a Reader that frames and validates PDUs from a stream,
// and encoders that write headers into caller buffers without allocating.
//
// Every PDU starts with an 8-byte common header (CH, 3.6.1):
//
//	0      PDU-Type
//	1      FLAGS
//	2      HLEN: header length, fixed per type
//	3      PDO: offset of the data from the start of the PDU (0: no data)
//	4-7    PLEN: total PDU length, little-endian
//
// then the type's PDU-specific header, an optional header digest (HDGST,
// CRC32C of the header), optional padding up to PDO, the data, and an
// optional data digest (DDGST, CRC32C of the data).
package pdu

import (
	"encoding/binary"
	"hash/crc32"
	"strconv"
)

// Type is a PDU type.
type Type uint8

// PDU types (3.6.1, Figure 19).
const (
	TypeICReq       Type = 0x00
	TypeICResp      Type = 0x01
	TypeH2CTermReq  Type = 0x02
	TypeC2HTermReq  Type = 0x03
	TypeCapsuleCmd  Type = 0x04
	TypeCapsuleResp Type = 0x05
	TypeH2CData     Type = 0x06
	TypeC2HData     Type = 0x07
	TypeR2T         Type = 0x09
)

var typeNames = map[Type]string{
	TypeICReq: "ICReq", TypeICResp: "ICResp", TypeH2CTermReq: "H2CTermReq", TypeC2HTermReq: "C2HTermReq",
	TypeCapsuleCmd: "CapsuleCmd", TypeCapsuleResp: "CapsuleResp", TypeH2CData: "H2CData",
	TypeC2HData: "C2HData", TypeR2T: "R2T",
}

func (t Type) String() string {
	if n, ok := typeNames[t]; ok {
		return n
	}
	return "PDU(" + strconv.Itoa(int(t)) + ")"
}

// Flags (3.6.1, Figure 20; data PDU flags in 3.6.2.7-8).
const (
	FlagHDGST   = 1 << 0 // a header digest follows the header
	FlagDDGST   = 1 << 1 // a data digest follows the data
	FlagLastPDU = 1 << 2 // last data PDU of a transfer
	FlagSuccess = 1 << 3 // C2HData: the command succeeded, no response capsule follows
)

// Header lengths (HLEN) of each type.
const (
	CommonHeaderSize = 8
	ICSize           = 128 // ICReq, ICResp
	TermReqHLen      = 24
	CapsuleCmdHLen   = 72 // CH + SQE
	CapsuleRespHLen  = 24 // CH + CQE
	DataHLen         = 24 // H2CData, C2HData
	R2THLen          = 24
	DigestSize       = 4
	// MaxHeaderSize bounds any header with its digest.
	MaxHeaderSize = ICSize + DigestSize
	// MaxTermReqPLen bounds a TermReq: its header plus up to 128 bytes of
	// the offending PDU header.
	MaxTermReqPLen = 152
	// MaxPDA is the largest HPDA (ICReq) or CPDA (ICResp): data alignment
	// is (PDA+1) dwords, so at most MaxDataAlign bytes (3.6.2.2-3).
	MaxPDA       = 31
	MaxDataAlign = (MaxPDA + 1) * 4
	// MaxPadLen bounds the padding between a data PDU's header and its
	// data: the smallest header padded up to the largest alignment.
	MaxPadLen = MaxDataAlign - DataHLen
)

// DataAlign returns the data alignment in bytes that a PDA (HPDA, CPDA)
// asks for; pda must be at most MaxPDA.
func DataAlign(pda uint8) int { return (int(pda) + 1) * 4 }

// hlenOf returns the required HLEN of t, or 0 for unknown types.
func hlenOf(t Type) int {
	switch t {
	case TypeICReq, TypeICResp:
		return ICSize
	case TypeH2CTermReq, TypeC2HTermReq:
		return TermReqHLen
	case TypeCapsuleCmd:
		return CapsuleCmdHLen
	case TypeCapsuleResp:
		return CapsuleRespHLen
	case TypeH2CData, TypeC2HData:
		return DataHLen
	case TypeR2T:
		return R2THLen
	}
	return 0
}

// Common header offsets.
const (
	chType  = 0
	chFlags = 1
	chHLen  = 2
	chPDO   = 3
	chPLen  = 4
)

// Header is a view of a PDU header (at least the common header).
type Header []byte

// Type returns PDU-Type.
func (h Header) Type() Type { return Type(h[chType]) }

// Flags returns FLAGS.
func (h Header) Flags() uint8 { return h[chFlags] }

// HLen returns HLEN.
func (h Header) HLen() int { return int(h[chHLen]) }

// PDO returns PDO.
func (h Header) PDO() int { return int(h[chPDO]) }

// PLen returns PLEN.
func (h Header) PLen() uint32 { return binary.LittleEndian.Uint32(h[chPLen:]) }

// SetCommon writes the common header.
func (h Header) SetCommon(t Type, flags uint8, hlen, pdo int, plen uint32) {
	h[chType], h[chFlags], h[chHLen], h[chPDO] = uint8(t), flags, uint8(hlen), uint8(pdo)
	binary.LittleEndian.PutUint32(h[chPLen:], plen)
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Digest returns the CRC32C of b, as HDGST and DDGST carry it.
func Digest(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }

// UpdateDigest continues a CRC32C over more data (start from 0).
func UpdateDigest(crc uint32, b []byte) uint32 { return crc32.Update(crc, castagnoli, b) }

// PutDigest writes the CRC32C of b into dst (4 bytes, little-endian).
func PutDigest(dst []byte, b []byte) { binary.LittleEndian.PutUint32(dst, Digest(b)) }

// Layout computes where the parts of a PDU go: the data offset PDO and total
// length PLEN of a PDU with header length hlen, dataLen data bytes, the
// digests in force and data alignment align (bytes, a multiple of 4; 0 or 4
// means none beyond the digest).
func Layout(hlen, dataLen int, hdgst, ddgst bool, align int) (pdo int, plen uint32) {
	end := hlen
	if hdgst {
		end += DigestSize
	}
	if dataLen == 0 {
		return 0, uint32(end)
	}
	pdo = end
	if align > 4 {
		pdo = (end + align - 1) / align * align
	}
	plen = uint32(pdo + dataLen)
	if ddgst {
		plen += DigestSize
	}
	return pdo, plen
}
