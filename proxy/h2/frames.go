package h2

import "golang.org/x/net/http2"

// Ctrl is a control frame queued for a connection's writer: SETTINGS
// (only its ACK), PING, WINDOW_UPDATE, RST_STREAM or GOAWAY.
type Ctrl struct {
	Type http2.FrameType
	// Stream is the stream of a WINDOW_UPDATE or RST_STREAM, or GOAWAY's
	// last stream.
	Stream uint32
	// Val is a WINDOW_UPDATE's increment, or an error code.
	Val  uint32
	Data [8]byte // a PING's
	Ack  bool
}

// WriteCtrl encodes f with fr.
func WriteCtrl(fr *http2.Framer, f Ctrl) error {
	switch f.Type {
	case http2.FrameSettings:
		return fr.WriteSettingsAck()
	case http2.FramePing:
		return fr.WritePing(f.Ack, f.Data)
	case http2.FrameWindowUpdate:
		return fr.WriteWindowUpdate(f.Stream, f.Val)
	case http2.FrameRSTStream:
		return fr.WriteRSTStream(f.Stream, http2.ErrCode(f.Val))
	case http2.FrameGoAway:
		return fr.WriteGoAway(f.Stream, http2.ErrCode(f.Val), nil)
	}
	return nil
}

// WriteBlock writes a header block as one HEADERS frame and as many
// CONTINUATION frames as it needs, none over 16 KiB.
func WriteBlock(fr *http2.Framer, id uint32, end bool, block []byte) error {
	first := true
	for first || len(block) > 0 {
		frag := block[:min(len(block), 16384)]
		block = block[len(frag):]
		var err error
		if first {
			err = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: frag,
				EndStream: end, EndHeaders: len(block) == 0})
		} else {
			err = fr.WriteContinuation(id, len(block) == 0, frag)
		}
		if err != nil {
			return err
		}
		first = false
	}
	return nil
}
