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

// Frame is the layout of one PDU, worked out from its header: what follows
// the header up to PLEN.
type Frame struct {
	HeaderLen  int    // the header with its digest
	PadLen     int    // padding from the header's end to PDO
	DataLen    uint32 // data bytes
	DataDigest bool   // a data digest follows the data
}

// Len returns the length of the whole PDU (PLEN).
func (f Frame) Len() int {
	n := f.HeaderLen + f.PadLen + int(f.DataLen)
	if f.DataDigest {
		n += DigestSize
	}
	return n
}

// HeaderLen returns how many bytes the header starting with the common
// header ch occupies, its digest included; a *FatalError for a type this
// side may not receive or a wrong HLEN. Allocates only on error.
func (c *Config) HeaderLen(ch Header) (int, error) {
	t, hlen := ch.Type(), ch.HLen()
	want := hlenOf(t)
	if want == 0 || (c.Accept != nil && !c.Accept(t)) {
		return 0, fatal(FatalInvalidHeader, chType, ch[:CommonHeaderSize], "unexpected PDU type %v", t)
	}
	if hlen != want {
		return 0, fatal(FatalInvalidHeader, chHLen, ch[:CommonHeaderSize], "%v with HLEN %d, want %d", t, hlen, want)
	}
	if c.headerDigest(t) {
		return hlen + DigestSize, nil
	}
	return hlen, nil
}

// headerDigest says whether a header of type t carries a digest. IC and
// TermReq PDUs never do: they are exchanged before digests are agreed, or
// when the stream can no longer be trusted.
func (c *Config) headerDigest(t Type) bool {
	noDigest := t == TypeICReq || t == TypeICResp || t == TypeH2CTermReq || t == TypeC2HTermReq
	return c.HeaderDigest && !noDigest
}

// ParseHeader validates a whole header, b[:HeaderLen] (digest included),
// and returns its frame. Malformed headers give a *FatalError quoting b.
// Allocates only on error.
func (c *Config) ParseHeader(b []byte) (Frame, error) {
	h := Header(b)
	t, hlen := h.Type(), h.HLen()
	hdgst := c.headerDigest(t)
	noDigest := t == TypeICReq || t == TypeICResp || t == TypeH2CTermReq || t == TypeC2HTermReq
	if hdgst != (h.Flags()&FlagHDGST != 0) && !noDigest {
		return Frame{}, fatal(FatalInvalidHeader, chFlags, b[:CommonHeaderSize], "%v HDGST flag does not match the negotiated digest", t)
	}
	hend := hlen
	if hdgst {
		hend += DigestSize
		if binary.LittleEndian.Uint32(b[hlen:]) != Digest(b[:hlen]) {
			return Frame{}, fatal(FatalHeaderDigest, 0, b[:hend], "%v header digest mismatch", t)
		}
	}
	return c.layout(b[:hend], t, h.Flags(), h.PDO(), h.PLen())
}

// layout checks PDO and PLEN and works out the data length and padding.
func (c *Config) layout(hdr []byte, t Type, flags uint8, pdo int, plen uint32) (Frame, error) {
	hend := len(hdr)
	ddgst := c.DataDigest && flags&FlagDDGST != 0
	if c.DataDigest && !ddgst && (t == TypeCapsuleCmd || t == TypeH2CData || t == TypeC2HData) && pdo != 0 {
		return Frame{}, fatal(FatalInvalidHeader, chFlags, hdr, "%v without the negotiated data digest", t)
	}
	if !c.DataDigest && flags&FlagDDGST != 0 {
		return Frame{}, fatal(FatalInvalidHeader, chFlags, hdr, "%v with a data digest not negotiated", t)
	}
	isTerm := t == TypeH2CTermReq || t == TypeC2HTermReq
	switch {
	case pdo == 0:
		if plen != uint32(hend) && !(isTerm && plen <= MaxTermReqPLen && plen >= uint32(hend)) {
			return Frame{}, fatal(FatalInvalidHeader, chPLen, hdr, "%v PLEN %d without data, want %d", t, plen, hend)
		}
		return Frame{HeaderLen: hend, DataLen: plen - uint32(hend)}, nil
	case t == TypeICReq || t == TypeICResp || t == TypeCapsuleResp || t == TypeR2T:
		return Frame{}, fatal(FatalInvalidHeader, chPDO, hdr, "%v cannot carry data (PDO %d)", t, pdo)
	case pdo < hend:
		return Frame{}, fatal(FatalInvalidHeader, chPDO, hdr, "%v PDO %d inside the header (%d bytes)", t, pdo, hend)
	case c.DataAlign > 4 && pdo%c.DataAlign != 0 && !isTerm:
		return Frame{}, fatal(FatalInvalidHeader, chPDO, hdr, "%v PDO %d not aligned to %d", t, pdo, c.DataAlign)
	}
	tail := uint32(0)
	if ddgst {
		tail = DigestSize
	}
	if plen < uint32(pdo)+tail {
		return Frame{}, fatal(FatalInvalidHeader, chPLen, hdr, "%v PLEN %d shorter than PDO %d and digest", t, plen, pdo)
	}
	dataLen := plen - uint32(pdo) - tail
	if isTerm {
		if plen > MaxTermReqPLen {
			return Frame{}, fatal(FatalInvalidHeader, chPLen, hdr, "%v PLEN %d exceeds %d", t, plen, MaxTermReqPLen)
		}
	} else if dataLen > c.MaxData {
		return Frame{}, fatal(FatalDataLimitExceeded, 0, hdr, "%v carries %d data bytes, more than %d", t, dataLen, c.MaxData)
	}
	return Frame{HeaderLen: hend, PadLen: pdo - hend, DataLen: dataLen, DataDigest: ddgst}, nil
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
	frame   Frame
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
	hend, err := r.cfg.HeaderLen(ch)
	if err != nil {
		return nil, err
	}
	if _, err := io.ReadFull(r.r, r.buf[CommonHeaderSize:hend]); err != nil {
		return nil, fmt.Errorf("pdu: read %v header: %w", Header(ch).Type(), err)
	}
	if r.frame, err = r.cfg.ParseHeader(r.buf[:hend]); err != nil {
		return nil, err
	}
	r.hdr = Header(r.buf[:Header(ch).HLen()])
	r.pending = r.frame.DataLen > 0 || r.frame.PadLen > 0
	return r.hdr, nil
}

// DataLen returns the data length of the PDU whose header was read last.
func (r *Reader) DataLen() uint32 { return r.frame.DataLen }

// ReadData reads the current PDU's data into dst, which must be exactly
// DataLen bytes, and checks the data digest.
func (r *Reader) ReadData(dst []byte) error {
	if uint32(len(dst)) != r.frame.DataLen || !r.pending && r.frame.DataLen > 0 {
		return fmt.Errorf("pdu: ReadData of %d bytes for %d pending", len(dst), r.frame.DataLen)
	}
	if err := r.skip(r.frame.PadLen); err != nil {
		return err
	}
	if _, err := io.ReadFull(r.r, dst); err != nil {
		return fmt.Errorf("pdu: read data: %w", err)
	}
	r.pending = false
	return r.checkDataDigest(dst)
}

func (r *Reader) checkDataDigest(data []byte) error {
	if !r.frame.DataDigest {
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
	n := r.frame.Len() - r.frame.HeaderLen
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
