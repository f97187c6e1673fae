package detect

import (
	"errors"

	"golang.org/x/crypto/cryptobyte"
)

// TLSRecordLen returns the total length (header included) of the TLS record
// that starts b, once the 5-byte header is there.
func TLSRecordLen(b []byte) (int, bool) {
	if len(b) < 5 {
		return 0, false
	}
	return 5 + (int(b[3])<<8 | int(b[4])), true
}

// errNotClientHello is returned for anything but a ClientHello that fits in
// the first record.
var errNotClientHello = errors.New("not a complete TLS ClientHello")

// ClientHelloALPN returns the ALPN protocols a TLS ClientHello offers. b must
// hold the whole first record; a ClientHello split over several records (which
// the mesh's own proxies never send) is reported as an error.
func ClientHelloALPN(b []byte) ([]string, error) {
	s := cryptobyte.String(b)
	var contentType uint8
	var version uint16
	var record cryptobyte.String
	if !s.ReadUint8(&contentType) || contentType != 0x16 || !s.ReadUint16(&version) || !s.ReadUint16LengthPrefixed(&record) {
		return nil, errNotClientHello
	}
	var msgType uint8
	var hello cryptobyte.String
	if !record.ReadUint8(&msgType) || msgType != 1 || !record.ReadUint24LengthPrefixed(&hello) {
		return nil, errNotClientHello
	}
	var sessionID, suites, compression, exts cryptobyte.String
	if !hello.Skip(2+32) || // legacy_version, random
		!hello.ReadUint8LengthPrefixed(&sessionID) ||
		!hello.ReadUint16LengthPrefixed(&suites) ||
		!hello.ReadUint8LengthPrefixed(&compression) {
		return nil, errNotClientHello
	}
	if hello.Empty() {
		return nil, nil // no extensions at all
	}
	if !hello.ReadUint16LengthPrefixed(&exts) {
		return nil, errNotClientHello
	}
	for !exts.Empty() {
		var extType uint16
		var data cryptobyte.String
		if !exts.ReadUint16(&extType) || !exts.ReadUint16LengthPrefixed(&data) {
			return nil, errNotClientHello
		}
		if extType != 16 { // application_layer_protocol_negotiation
			continue
		}
		var list cryptobyte.String
		if !data.ReadUint16LengthPrefixed(&list) {
			return nil, errNotClientHello
		}
		var protos []string
		for !list.Empty() {
			var p cryptobyte.String
			if !list.ReadUint8LengthPrefixed(&p) || len(p) == 0 {
				return nil, errNotClientHello
			}
			protos = append(protos, string(p))
		}
		return protos, nil
	}
	return nil, nil
}
