package pdu

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// FatalError is a transport error that ends the connection: the receiver
// answers with a TermReq carrying Status and FEI, then closes. Everything a
// peer can send wrong in framing maps to one.
type FatalError struct {
	Status FatalStatus
	FEI    uint32 // offset of the offending header field, for Invalid Header Field
	Reason string // for logs and metrics
	Header []byte // the offending header, quoted in the TermReq
}

func (e *FatalError) Error() string {
	return fmt.Sprintf("pdu: %s: %s", e.Status, e.Reason)
}

// ErrFatal matches every *FatalError with errors.Is.
var ErrFatal = errors.New("pdu: fatal transport error")

// Is makes errors.Is(err, ErrFatal) true for fatal errors.
func (e *FatalError) Is(target error) bool { return target == ErrFatal }

func fatal(st FatalStatus, fei uint32, hdr []byte, format string, args ...any) *FatalError {
	return &FatalError{Status: st, FEI: fei, Reason: fmt.Sprintf(format, args...), Header: hdr}
}

// Config is what a Reader enforces.
type Config struct {
	// Accept says which PDU types this side may receive.
	Accept func(Type) bool
	// HeaderDigest and DataDigest are the digests negotiated (none before
	// the ICReq/ICResp exchange).
	HeaderDigest, DataDigest bool
	// MaxData bounds the data of one PDU (in-capsule size, MAXH2CDATA...).
	MaxData uint32
	// DataAlign is the data alignment the peer must honour (bytes; 0 or 4:
	// none).
	DataAlign int
}

// Reader frames PDUs from a byte stream. ReadHeader returns each header;
// the caller then consumes its data with ReadData or Discard before the next
// ReadHeader. The returned Header is valid until the next ReadHeader: the
// Reader reuses its buffer, so reading allocates nothing.
type Reader struct {
	r       io.Reader
	cfg     Config
	buf     [MaxHeaderSize]byte
	hdr     Header
	dataLen uint32
	padLen  int
	pending bool // data of the current PDU not yet consumed
	scratch [64]byte
}

// NewReader returns a Reader on r (wrap sockets in a bufio.Reader).
func NewReader(r io.Reader, cfg Config) *Reader { return &Reader{r: r, cfg: cfg} }

// SetConfig changes what is enforced (after the IC exchange).
func (r *Reader) SetConfig(cfg Config) { r.cfg = cfg }

// ReadHeader reads and validates the next PDU header and its digest.
// Malformed input gives a *FatalError; I/O failures are returned wrapped.
func (r *Reader) ReadHeader() (Header, error) {
	if r.pending {
		if err := r.Discard(); err != nil {
			return nil, err
		}
	}
	ch := r.buf[:CommonHeaderSize]
	if _, err := io.ReadFull(r.r, ch); err != nil {
		return nil, fmt.Errorf("pdu: read header: %w", err)
	}
	h := Header(ch)
	t, hlen, pdo, plen := h.Type(), h.HLen(), h.PDO(), h.PLen()
	want := hlenOf(t)
	if want == 0 || (r.cfg.Accept != nil && !r.cfg.Accept(t)) {
		return nil, fatal(FatalInvalidHeader, chType, ch, "unexpected PDU type %v", t)
	}
	if hlen != want {
		return nil, fatal(FatalInvalidHeader, chHLen, ch, "%v with HLEN %d, want %d", t, hlen, want)
	}
	// IC and TermReq PDUs never carry digests: they are exchanged before
	// digests are agreed, or when the stream can no longer be trusted.
	noDigest := t == TypeICReq || t == TypeICResp || t == TypeH2CTermReq || t == TypeC2HTermReq
	hdgst := r.cfg.HeaderDigest && !noDigest
	if hdgst != (h.Flags()&FlagHDGST != 0) && !noDigest {
		return nil, fatal(FatalInvalidHeader, chFlags, ch, "%v HDGST flag does not match the negotiated digest", t)
	}
	hend := hlen
	if hdgst {
		hend += DigestSize
	}
	if _, err := io.ReadFull(r.r, r.buf[CommonHeaderSize:hend]); err != nil {
		return nil, fmt.Errorf("pdu: read %v header: %w", t, err)
	}
	r.hdr = Header(r.buf[:hlen])
	if hdgst {
		if binary.LittleEndian.Uint32(r.buf[hlen:]) != Digest(r.buf[:hlen]) {
			return nil, fatal(FatalHeaderDigest, 0, r.buf[:hend], "%v header digest mismatch", t)
		}
	}
	if err := r.layout(t, h.Flags(), hend, pdo, plen); err != nil {
		return nil, err
	}
	r.pending = r.dataLen > 0 || r.padLen > 0
	return r.hdr, nil
}

// layout checks PDO and PLEN and works out the data length and padding.
func (r *Reader) layout(t Type, flags uint8, hend, pdo int, plen uint32) error {
	ddgst := r.cfg.DataDigest && flags&FlagDDGST != 0
	if r.cfg.DataDigest && !ddgst && (t == TypeCapsuleCmd || t == TypeH2CData || t == TypeC2HData) && pdo != 0 {
		return fatal(FatalInvalidHeader, chFlags, r.buf[:hend], "%v without the negotiated data digest", t)
	}
	if !r.cfg.DataDigest && flags&FlagDDGST != 0 {
		return fatal(FatalInvalidHeader, chFlags, r.buf[:hend], "%v with a data digest not negotiated", t)
	}
	isTerm := t == TypeH2CTermReq || t == TypeC2HTermReq
	switch {
	case pdo == 0:
		if plen != uint32(hend) && !(isTerm && plen <= MaxTermReqPLen && plen >= uint32(hend)) {
			return fatal(FatalInvalidHeader, chPLen, r.buf[:hend], "%v PLEN %d without data, want %d", t, plen, hend)
		}
		r.dataLen, r.padLen = plen-uint32(hend), 0
		return nil
	case t == TypeICReq || t == TypeICResp || t == TypeCapsuleResp || t == TypeR2T:
		return fatal(FatalInvalidHeader, chPDO, r.buf[:hend], "%v cannot carry data (PDO %d)", t, pdo)
	case pdo < hend:
		return fatal(FatalInvalidHeader, chPDO, r.buf[:hend], "%v PDO %d inside the header (%d bytes)", t, pdo, hend)
	case r.cfg.DataAlign > 4 && pdo%r.cfg.DataAlign != 0 && !isTerm:
		return fatal(FatalInvalidHeader, chPDO, r.buf[:hend], "%v PDO %d not aligned to %d", t, pdo, r.cfg.DataAlign)
	}
	tail := uint32(0)
	if ddgst {
		tail = DigestSize
	}
	if plen < uint32(pdo)+tail {
		return fatal(FatalInvalidHeader, chPLen, r.buf[:hend], "%v PLEN %d shorter than PDO %d and digest", t, plen, pdo)
	}
	dataLen := plen - uint32(pdo) - tail
	if isTerm {
		if plen > MaxTermReqPLen {
			return fatal(FatalInvalidHeader, chPLen, r.buf[:hend], "%v PLEN %d exceeds %d", t, plen, MaxTermReqPLen)
		}
	} else if dataLen > r.cfg.MaxData {
		return fatal(FatalDataLimitExceeded, 0, r.buf[:hend], "%v carries %d data bytes, more than %d", t, dataLen, r.cfg.MaxData)
	}
	r.dataLen, r.padLen = dataLen, pdo-hend
	return nil
}

// DataLen returns the data length of the PDU whose header was read last.
func (r *Reader) DataLen() uint32 { return r.dataLen }

// ReadData reads the current PDU's data into dst, which must be exactly
// DataLen bytes, and checks the data digest.
func (r *Reader) ReadData(dst []byte) error {
	if uint32(len(dst)) != r.dataLen || !r.pending && r.dataLen > 0 {
		return fmt.Errorf("pdu: ReadData of %d bytes for %d pending", len(dst), r.dataLen)
	}
	if err := r.skip(r.padLen); err != nil {
		return err
	}
	if _, err := io.ReadFull(r.r, dst); err != nil {
		return fmt.Errorf("pdu: read data: %w", err)
	}
	r.pending = false
	return r.checkDataDigest(dst)
}

func (r *Reader) checkDataDigest(data []byte) error {
	if !r.cfg.DataDigest || r.hdr.Flags()&FlagDDGST == 0 {
		return nil
	}
	d := r.scratch[:DigestSize] // a local array would escape to the heap
	if _, err := io.ReadFull(r.r, d); err != nil {
		return fmt.Errorf("pdu: read data digest: %w", err)
	}
	if binary.LittleEndian.Uint32(d) != Digest(data) {
		// A data digest error is not a fatal transport error: the command
		// fails with a transient transport error (TP 8000, 3.6.2.x).
		return ErrDataDigest
	}
	return nil
}

// ErrDataDigest reports data whose digest did not match; the connection can
// carry on, the command fails.
var ErrDataDigest = errors.New("pdu: data digest mismatch")

// Discard skips the current PDU's data (and digest).
func (r *Reader) Discard() error {
	n := r.padLen + int(r.dataLen)
	if r.cfg.DataDigest && r.hdr.Flags()&FlagDDGST != 0 && r.dataLen > 0 {
		n += DigestSize
	}
	r.pending = false
	return r.skip(n)
}

func (r *Reader) skip(n int) error {
	for n > 0 {
		k := min(n, len(r.scratch))
		if _, err := io.ReadFull(r.r, r.scratch[:k]); err != nil {
			return fmt.Errorf("pdu: skip: %w", err)
		}
		n -= k
	}
	return nil
}
