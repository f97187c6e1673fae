// Package pcap reads the TCP payloads out of a tcpdump capture (classic
// pcap, Ethernet, IPv4), so that tests can check what crossed the wire.
package pcap

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Streams returns each direction's TCP payload bytes in capture order, keyed
// "srcIP:port → dstIP:port". Retransmissions appear twice; the tests only
// look for what should never be there and for how connections start.
func Streams(data []byte) (map[string][]byte, error) {
	if len(data) < 24 {
		return nil, fmt.Errorf("capture too short (%d bytes)", len(data))
	}
	var order binary.ByteOrder
	switch binary.LittleEndian.Uint32(data) {
	case 0xa1b2c3d4, 0xa1b23c4d:
		order = binary.LittleEndian
	case 0xd4c3b2a1, 0x4d3cb2a1:
		order = binary.BigEndian
	default:
		return nil, errors.New("not a pcap file")
	}
	if lt := order.Uint32(data[20:24]); lt != 1 {
		return nil, fmt.Errorf("capture link type %d, want Ethernet (1)", lt)
	}
	streams := map[string][]byte{}
	for off := 24; off+16 <= len(data); {
		capLen := int(order.Uint32(data[off+8 : off+12]))
		pkt := data[off+16 : min(off+16+capLen, len(data))]
		off += 16 + capLen
		if len(pkt) < 14+20 || binary.BigEndian.Uint16(pkt[12:14]) != 0x0800 {
			continue
		}
		ip := pkt[14:]
		ihl := int(ip[0]&0x0f) * 4
		if ip[9] != 6 || ihl < 20 || len(ip) < ihl+20 {
			continue
		}
		total := int(binary.BigEndian.Uint16(ip[2:4]))
		tcp := ip[ihl:max(ihl, min(total, len(ip)))]
		if len(tcp) < 20 {
			continue
		}
		doff := int(tcp[12]>>4) * 4
		if len(tcp) < doff {
			continue
		}
		src := fmt.Sprintf("%d.%d.%d.%d:%d", ip[12], ip[13], ip[14], ip[15], binary.BigEndian.Uint16(tcp[0:2]))
		dst := fmt.Sprintf("%d.%d.%d.%d:%d", ip[16], ip[17], ip[18], ip[19], binary.BigEndian.Uint16(tcp[2:4]))
		streams[src+" → "+dst] = append(streams[src+" → "+dst], tcp[doff:]...)
	}
	return streams, nil
}
