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

// Reader frames PDUs from a byte stream with a Framer, reading exactly
// the bytes of each PDU and never past it. ReadHeader returns each
// header; the caller then consumes its data with ReadData or Discard
// before the next ReadHeader. The returned Header is valid until the next
// ReadHeader: the Reader reuses its buffers, so once they have grown to
// the largest PDU seen, reading allocates nothing.
type Reader struct {
	r       io.Reader
	f       Framer
	buf     [MaxHeaderSize]byte // a header or data digest being read
	nbuf    int
	hdr     [MaxHeaderSize]byte // the last header
	hlen    int
	data    []byte // the current PDU's data
	pending bool   // ...not yet consumed
	done    bool   // the current PDU is all in
	digest  bool   // ...and its data matched its digest
}

// NewReader returns a Reader on r (wrap sockets in a bufio.Reader).
func NewReader(r io.Reader, cfg Config) *Reader { return &Reader{r: r, f: NewFramer(cfg)} }

// SetConfig changes what is enforced (after the IC exchange).
func (r *Reader) SetConfig(cfg Config) { r.f.SetConfig(cfg) }

// Header is the Framer's: it keeps the header and takes the data into the
// Reader's own buffer.
func (r *Reader) Header(h Header, f Frame) ([]byte, error) {
	r.hlen = copy(r.hdr[:], h[:h.HLen()])
	if n := int(f.DataLen); cap(r.data) < n {
		r.data = make([]byte, n)
	}
	r.data = r.data[:f.DataLen]
	return r.data, nil
}

// Received is the Framer's: it stops the walk at the PDU's end.
func (r *Reader) Received(digestOK bool) bool {
	r.done, r.digest = true, digestOK
	return false
}

// ReadHeader reads and validates the next PDU header and its digest.
// Malformed input gives a *FatalError; I/O failures are returned wrapped.
func (r *Reader) ReadHeader() (Header, error) {
	if r.pending {
		if err := r.Discard(); err != nil {
			return nil, err
		}
	}
	r.done = false
	for r.hlen = 0; r.hlen == 0; {
		if err := r.step("header"); err != nil {
			return nil, err
		}
	}
	r.pending = !r.done
	return Header(r.hdr[:r.hlen]), nil
}

// step reads what the Framer needs next and feeds it.
func (r *Reader) step(what string) error {
	need, err := r.f.Need(r.buf[:r.nbuf])
	if err != nil {
		return err
	}
	if due := r.f.DataDue(); due != nil {
		if _, err := io.ReadFull(r.r, due[:need]); err != nil {
			return fmt.Errorf("pdu: read %s: %w", what, err)
		}
		r.f.Landed(need, r)
		return nil
	}
	if need = min(need, len(r.buf)-r.nbuf); need > 0 { // padding can be longer
		if _, err := io.ReadFull(r.r, r.buf[r.nbuf:r.nbuf+need]); err != nil {
			return fmt.Errorf("pdu: read %s: %w", what, err)
		}
		r.nbuf += need
	}
	n, _, err := r.f.Feed(r.buf[:r.nbuf], r)
	r.nbuf = copy(r.buf[:], r.buf[n:r.nbuf])
	return err
}

// DataLen returns the data length of the PDU whose header was read last.
func (r *Reader) DataLen() uint32 { return r.f.Frame().DataLen }

// ReadData reads the current PDU's data into dst, which must be exactly
// DataLen bytes, and checks the data digest.
func (r *Reader) ReadData(dst []byte) error {
	if uint32(len(dst)) != r.DataLen() || !r.pending && r.DataLen() > 0 {
		return fmt.Errorf("pdu: ReadData of %d bytes for %d pending", len(dst), r.DataLen())
	}
	if err := r.rest("data"); err != nil {
		return err
	}
	copy(dst, r.data)
	if !r.digest {
		// A data digest error is not a fatal transport error: the command
		// fails with a transient transport error (TP 8000, 3.6.2.x).
		return ErrDataDigest
	}
	return nil
}

// rest reads the current PDU to its end.
func (r *Reader) rest(what string) error {
	r.pending = false
	for !r.done {
		if err := r.step(what); err != nil {
			return err
		}
	}
	return nil
}

// ErrDataDigest reports data whose digest did not match; the connection can
// carry on, the command fails.
var ErrDataDigest = errors.New("pdu: data digest mismatch")

// Discard skips the current PDU's data (and digest).
func (r *Reader) Discard() error { return r.rest("skip") }
