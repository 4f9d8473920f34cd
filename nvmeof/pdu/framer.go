package pdu

import (
	"encoding/binary"
	"fmt"
)

// FrameHandler is told of the PDUs a Framer finds.
type FrameHandler interface {
	// Header acts on a PDU header: h (digest included and checked) with
	// frame f. It returns where the PDU's data goes, exactly f.DataLen
	// bytes (nil: the data is discarded), or an error that ends the stream.
	Header(h Header, f Frame) ([]byte, error)
	// Received says that the PDU whose header came last is all in:
	// digestOK is false when its data did not match its data digest (TP
	// 8000, 3.6.2.x: not fatal; the handler fails what the data was for).
	// It returns false to stop the stream there.
	Received(digestOK bool) bool
}

// Where a Framer stands in the PDU it is reading.
const (
	inHeader uint8 = iota
	inPad
	inData
	inDigest
)

// A Framer walks a stream of PDUs: each header checked (Config), then
// its padding, its data into the handler's buffer and its data digest. It
// reads nothing itself: the caller feeds it what arrived (Feed), or puts
// a PDU's data straight where it goes and says so (DataDue, Landed), so
// the same walk serves a reactor's receive buffer and a blocking reader.
// It allocates nothing but a *FatalError.
type Framer struct {
	cfg      Config
	at       uint8
	frame    Frame
	padLeft  int
	dst      []byte // where the data goes; nil: discard dataLeft bytes
	dataLeft int
	crc      uint32
}

// NewFramer returns a Framer at the start of a stream, enforcing cfg.
func NewFramer(cfg Config) Framer { return Framer{cfg: cfg} }

// SetConfig changes what is enforced from the next header on (after the
// ICReq/ICResp exchange).
func (f *Framer) SetConfig(cfg Config) { f.cfg = cfg }

// Frame returns the frame of the PDU whose header came last.
func (f *Framer) Frame() Frame { return f.frame }

// Feed walks b, the stream's next bytes, telling h of what it finds, and
// returns how many bytes it consumed: all of them, but for a header or
// data digest not yet whole, which the caller feeds again with the bytes
// that follow. It stops early (more false) when h stops the stream or
// when err is set: a *FatalError for a malformed header, or h's own.
func (f *Framer) Feed(b []byte, h FrameHandler) (n int, more bool, err error) {
	for {
		avail := b[n:]
		switch f.at {
		case inHeader:
			if len(avail) < CommonHeaderSize {
				return n, true, nil
			}
			hend, err := f.cfg.HeaderLen(avail)
			if err != nil {
				return n, false, err
			}
			if len(avail) < hend {
				return n, true, nil
			}
			n += hend
			if err := f.header(avail[:hend], h); err != nil {
				return n, false, err
			}
		case inPad:
			k := min(len(avail), f.padLeft)
			n += k
			if f.padLeft -= k; f.padLeft > 0 {
				return n, true, nil
			}
			f.at = inData
		case inData:
			if f.dataLeft > 0 {
				if len(avail) == 0 {
					return n, true, nil
				}
				k := min(len(avail), f.dataLeft)
				if f.dst != nil {
					copy(f.dst[len(f.dst)-f.dataLeft:], avail[:k])
				}
				n += k
				f.data(avail[:k])
				if f.dataLeft > 0 {
					return n, true, nil
				}
			}
			if !f.endData(h) {
				return n, false, nil
			}
		case inDigest:
			if len(avail) < DigestSize {
				return n, true, nil
			}
			n += DigestSize
			// Discarded data's digest does not matter.
			ok := f.dst == nil || binary.LittleEndian.Uint32(avail) == f.crc
			if !f.finish(ok, h) {
				return n, false, nil
			}
		}
	}
}

// DataDue returns where the current PDU's data still due goes when the
// stream is in that data and it has a destination: a caller may receive
// into it directly and report with Landed. Nil otherwise.
func (f *Framer) DataDue() []byte {
	if f.at != inData || f.dst == nil || f.dataLeft == 0 {
		return nil
	}
	return f.dst[len(f.dst)-f.dataLeft:]
}

// Landed accounts for n bytes of the stream received straight into
// DataDue()[:n], and finishes the PDU if they were the last of its data
// and it has no data digest. It returns false when h stopped the stream.
func (f *Framer) Landed(n int, h FrameHandler) bool {
	due := f.DataDue()
	if n > len(due) {
		panic(fmt.Sprintf("pdu: %d bytes landed of %d due", n, len(due)))
	}
	f.data(due[:n])
	if f.dataLeft > 0 {
		return true
	}
	return f.endData(h)
}

// Need returns how many more bytes the Framer needs before it can make
// progress, pending being what was fed and not consumed: for a reader
// that must not read past the PDU it is in. A header whose common part is
// in may be malformed: the error is Feed's.
func (f *Framer) Need(pending []byte) (int, error) {
	switch f.at {
	case inHeader:
		if len(pending) < CommonHeaderSize {
			return CommonHeaderSize - len(pending), nil
		}
		hend, err := f.cfg.HeaderLen(pending)
		if err != nil {
			return 0, err
		}
		return hend - len(pending), nil
	case inPad:
		return f.padLeft, nil
	case inData:
		return f.dataLeft, nil
	default:
		return DigestSize - len(pending), nil
	}
}

// data takes in b, bytes of the current PDU's data now in place (or
// discarded).
func (f *Framer) data(b []byte) {
	if f.dst != nil && f.frame.DataDigest {
		f.crc = UpdateDigest(f.crc, b)
	}
	f.dataLeft -= len(b)
}

// header validates a PDU header, asks the handler where its data goes and
// sets up the receipt of what follows it.
func (f *Framer) header(b []byte, h FrameHandler) error {
	frame, err := f.cfg.ParseHeader(b)
	if err != nil {
		return err
	}
	dst, err := h.Header(Header(b), frame)
	if err != nil {
		return err
	}
	if dst != nil && len(dst) != int(frame.DataLen) {
		panic(fmt.Sprintf("pdu: handler gave %d bytes for %d of data", len(dst), frame.DataLen))
	}
	f.frame, f.padLeft, f.dataLeft, f.dst, f.crc = frame, frame.PadLen, int(frame.DataLen), dst, 0
	f.at = inPad
	if f.padLeft == 0 {
		f.at = inData
	}
	return nil
}

// endData moves past the data to its digest, or finishes the PDU.
func (f *Framer) endData(h FrameHandler) bool {
	if f.frame.DataDigest {
		f.at = inDigest
		return true
	}
	return f.finish(true, h)
}

// finish hands a PDU whose bytes are all in to the handler, and readies
// the next.
func (f *Framer) finish(digestOK bool, h FrameHandler) bool {
	f.at, f.dst = inHeader, nil
	return h.Received(digestOK)
}
