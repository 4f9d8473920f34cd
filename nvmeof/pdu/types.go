package pdu

import (
	"encoding/binary"
	"strconv"

	"github.com/strata-storage/strata/nvmeof/nvme"
)

// ICReq is the Initialize Connection Request (3.6.2.2, Figure 21):
//
//	8-9    PFV: PDU format version (0)
//	10     HPDA: host PDU data alignment, (HPDA+1)*4 bytes, 0's based
//	11     DGST: bit 0 HDGST_ENABLE, bit 1 DDGST_ENABLE
//	12-15  MAXR2T: outstanding R2Ts per command the host accepts, 0's based
type ICReq []byte

// ICResp is the Initialize Connection Response (3.6.2.3, Figure 22):
//
//	8-9    PFV
//	10     CPDA: controller PDU data alignment, 0's based dwords
//	11     DGST: the digests enabled for the connection
//	12-15  MAXH2CDATA: the most data one H2CData PDU may carry
type ICResp []byte

const (
	icPFV  = 8
	icPDA  = 10
	icDGST = 11
	icMax  = 12
)

// Digest enable bits of ICReq/ICResp DGST.
const (
	DgstHeader = 1 << 0
	DgstData   = 1 << 1
)

// PFV returns the PDU format version.
func (p ICReq) PFV() uint16 { return binary.LittleEndian.Uint16(p[icPFV:]) }

// HPDA returns the host's data alignment, 0's based dwords.
func (p ICReq) HPDA() uint8 { return p[icPDA] }

// Digests returns the DGST bits asked for.
func (p ICReq) Digests() uint8 { return p[icDGST] }

// MaxR2T returns MAXR2T (0's based).
func (p ICReq) MaxR2T() uint32 { return binary.LittleEndian.Uint32(p[icMax:]) }

// EncodeICReq writes an ICReq into b (ICSize bytes).
func EncodeICReq(b []byte, hpda, digests uint8, maxR2T uint32) {
	clear(b[:ICSize])
	Header(b).SetCommon(TypeICReq, 0, ICSize, 0, ICSize)
	b[icPDA], b[icDGST] = hpda, digests
	binary.LittleEndian.PutUint32(b[icMax:], maxR2T)
}

// PFV returns the PDU format version.
func (p ICResp) PFV() uint16 { return binary.LittleEndian.Uint16(p[icPFV:]) }

// CPDA returns the controller's data alignment, 0's based dwords.
func (p ICResp) CPDA() uint8 { return p[icPDA] }

// Digests returns the DGST bits in force.
func (p ICResp) Digests() uint8 { return p[icDGST] }

// MaxH2CData returns MAXH2CDATA.
func (p ICResp) MaxH2CData() uint32 { return binary.LittleEndian.Uint32(p[icMax:]) }

// EncodeICResp writes an ICResp into b (ICSize bytes).
func EncodeICResp(b []byte, cpda, digests uint8, maxH2CData uint32) {
	clear(b[:ICSize])
	Header(b).SetCommon(TypeICResp, 0, ICSize, 0, ICSize)
	b[icPDA], b[icDGST] = cpda, digests
	binary.LittleEndian.PutUint32(b[icMax:], maxH2CData)
}

// CapsuleCmd carries a command (3.6.2.4, Figure 24): the 64-byte SQE at
// byte 8, in-capsule data at PDO.
type CapsuleCmd []byte

// SQE returns the command.
func (p CapsuleCmd) SQE() nvme.Command { return nvme.Command(p[CommonHeaderSize:CapsuleCmdHLen]) }

// CapsuleResp carries a completion (3.6.2.5, Figure 25): the 16-byte CQE
// at byte 8.
type CapsuleResp []byte

// CQE returns the completion.
func (p CapsuleResp) CQE() nvme.Completion {
	return nvme.Completion(p[CommonHeaderSize:CapsuleRespHLen])
}

// Data is an H2CData or C2HData header (3.6.2.6-7, Figures 26-27):
//
//	8-9    CCCID: command capsule CID
//	10-11  TTAG: transfer tag from the R2T (H2CData only)
//	12-15  DATAO: offset of this data in the command's buffer
//	16-19  DATAL: data length
type Data []byte

// R2T is a Ready to Transfer header (3.6.2.8, Figure 28):
//
//	8-9    CCCID
//	10-11  TTAG: tag the host echoes in H2CData
//	12-15  R2TO: offset of the data asked for
//	16-19  R2TL: its length
type R2T []byte

const (
	dCCCID = 8
	dTTAG  = 10
	dOff   = 12
	dLen   = 16
)

// CCCID returns the command's CID.
func (p Data) CCCID() uint16 { return binary.LittleEndian.Uint16(p[dCCCID:]) }

// TTAG returns the transfer tag.
func (p Data) TTAG() uint16 { return binary.LittleEndian.Uint16(p[dTTAG:]) }

// Offset returns DATAO.
func (p Data) Offset() uint32 { return binary.LittleEndian.Uint32(p[dOff:]) }

// Length returns DATAL.
func (p Data) Length() uint32 { return binary.LittleEndian.Uint32(p[dLen:]) }

// CCCID returns the command's CID.
func (p R2T) CCCID() uint16 { return binary.LittleEndian.Uint16(p[dCCCID:]) }

// TTAG returns the transfer tag.
func (p R2T) TTAG() uint16 { return binary.LittleEndian.Uint16(p[dTTAG:]) }

// Offset returns R2TO.
func (p R2T) Offset() uint32 { return binary.LittleEndian.Uint32(p[dOff:]) }

// Length returns R2TL.
func (p R2T) Length() uint32 { return binary.LittleEndian.Uint32(p[dLen:]) }

// EncodeData writes an H2CData or C2HData header (DataHLen bytes, plus the
// header digest when hdgst) for dataLen bytes of data at offset, and returns
// the header length with digest and the PDU's PDO and PLEN. The caller sends
// the header, then padding to PDO, the data, and the data digest if ddgst.
func EncodeData(b []byte, t Type, flags uint8, cccid, ttag uint16, offset, dataLen uint32, hdgst, ddgst bool, align int) (hdrLen, pdo int) {
	pdo, plen := Layout(DataHLen, int(dataLen), hdgst, ddgst, align)
	flags = digestFlags(flags, hdgst, ddgst)
	clear(b[:DataHLen])
	Header(b).SetCommon(t, flags, DataHLen, pdo, plen)
	binary.LittleEndian.PutUint16(b[dCCCID:], cccid)
	binary.LittleEndian.PutUint16(b[dTTAG:], ttag)
	binary.LittleEndian.PutUint32(b[dOff:], offset)
	binary.LittleEndian.PutUint32(b[dLen:], dataLen)
	return sealHeader(b, DataHLen, hdgst), pdo
}

// EncodeR2T writes an R2T header (plus digest) and returns its length.
func EncodeR2T(b []byte, cccid, ttag uint16, offset, length uint32, hdgst bool) int {
	_, plen := Layout(R2THLen, 0, hdgst, false, 0)
	clear(b[:R2THLen])
	Header(b).SetCommon(TypeR2T, digestFlags(0, hdgst, false), R2THLen, 0, plen)
	binary.LittleEndian.PutUint16(b[dCCCID:], cccid)
	binary.LittleEndian.PutUint16(b[dTTAG:], ttag)
	binary.LittleEndian.PutUint32(b[dOff:], offset)
	binary.LittleEndian.PutUint32(b[dLen:], length)
	return sealHeader(b, R2THLen, hdgst)
}

// EncodeCapsuleResp writes a CapsuleResp header for the CQE already in
// b[8:24] (fill it through CapsuleResp(b).CQE() first) and returns the
// header length with digest.
func EncodeCapsuleResp(b []byte, hdgst bool) int {
	_, plen := Layout(CapsuleRespHLen, 0, hdgst, false, 0)
	Header(b).SetCommon(TypeCapsuleResp, digestFlags(0, hdgst, false), CapsuleRespHLen, 0, plen)
	return sealHeader(b, CapsuleRespHLen, hdgst)
}

// EncodeCapsuleCmd writes a CapsuleCmd header for the SQE already in
// b[8:72] carrying dataLen bytes of in-capsule data, and returns the header
// length with digest and the PDO.
func EncodeCapsuleCmd(b []byte, dataLen int, hdgst, ddgst bool, align int) (hdrLen, pdo int) {
	pdo, plen := Layout(CapsuleCmdHLen, dataLen, hdgst, ddgst, align)
	Header(b).SetCommon(TypeCapsuleCmd, digestFlags(0, hdgst, ddgst && dataLen > 0), CapsuleCmdHLen, pdo, plen)
	return sealHeader(b, CapsuleCmdHLen, hdgst), pdo
}

func digestFlags(flags uint8, hdgst, ddgst bool) uint8 {
	if hdgst {
		flags |= FlagHDGST
	}
	if ddgst {
		flags |= FlagDDGST
	}
	return flags
}

// sealHeader appends the header digest when enabled.
func sealHeader(b []byte, hlen int, hdgst bool) int {
	if !hdgst {
		return hlen
	}
	PutDigest(b[hlen:], b[:hlen])
	return hlen + DigestSize
}

// FatalStatus is a TermReq's Fatal Error Status (3.6.2.9, Figure 29).
type FatalStatus uint16

// Fatal error statuses.
const (
	FatalInvalidHeader        FatalStatus = 0x01
	FatalSequence             FatalStatus = 0x02
	FatalHeaderDigest         FatalStatus = 0x03
	FatalDataOutOfRange       FatalStatus = 0x04
	FatalDataLimitExceeded    FatalStatus = 0x05 // also R2T limit exceeded
	FatalUnsupportedParameter FatalStatus = 0x06
)

var fatalNames = map[FatalStatus]string{
	FatalInvalidHeader: "invalid PDU header field", FatalSequence: "PDU sequence error",
	FatalHeaderDigest: "header digest error", FatalDataOutOfRange: "data transfer out of range",
	FatalDataLimitExceeded: "data transfer limit exceeded", FatalUnsupportedParameter: "unsupported parameter",
}

func (s FatalStatus) String() string {
	if n, ok := fatalNames[s]; ok {
		return n
	}
	return "fatal(" + strconv.Itoa(int(s)) + ")"
}

// TermReq is an H2CTermReq or C2HTermReq (3.6.2.9-10):
//
//	8-9    FES: fatal error status
//	10-13  FEI: fatal error information (the offending field's byte offset
//	       for Invalid Header Field; otherwise 0)
//	24-    the offending PDU header, up to 128 bytes
type TermReq []byte

const (
	trFES = 8
	trFEI = 10
)

// FES returns the fatal error status.
func (p TermReq) FES() FatalStatus { return FatalStatus(binary.LittleEndian.Uint16(p[trFES:])) }

// FEI returns the fatal error information.
func (p TermReq) FEI() uint32 { return binary.LittleEndian.Uint32(p[trFEI:]) }

// EncodeTermReq writes a TermReq of type t into b (MaxTermReqPLen bytes)
// quoting up to 128 bytes of the offending header, and returns its length.
func EncodeTermReq(b []byte, t Type, fes FatalStatus, fei uint32, offending []byte) int {
	n := min(len(offending), MaxTermReqPLen-TermReqHLen)
	clear(b[:TermReqHLen])
	Header(b).SetCommon(t, 0, TermReqHLen, TermReqHLen, uint32(TermReqHLen+n))
	if n == 0 {
		b[chPDO] = 0
	}
	binary.LittleEndian.PutUint16(b[trFES:], uint16(fes))
	binary.LittleEndian.PutUint32(b[trFEI:], fei)
	copy(b[TermReqHLen:], offending[:n])
	return TermReqHLen + n
}
