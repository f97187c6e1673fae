package pcap

import (
	"bytes"
	"encoding/binary"
	"testing"
)

// capture builds a pcap with one Ethernet/IPv4/TCP packet per payload.
func capture(payloads ...[]byte) []byte {
	var b bytes.Buffer
	hdr := make([]byte, 24)
	binary.LittleEndian.PutUint32(hdr[0:], 0xa1b2c3d4)
	binary.LittleEndian.PutUint32(hdr[20:], 1)
	b.Write(hdr)
	for _, p := range payloads {
		pkt := make([]byte, 14+20+20)
		binary.BigEndian.PutUint16(pkt[12:], 0x0800)
		ip := pkt[14:]
		ip[0] = 0x45
		binary.BigEndian.PutUint16(ip[2:], uint16(20+20+len(p)))
		ip[9] = 6
		copy(ip[12:], []byte{10, 0, 0, 1})
		copy(ip[16:], []byte{10, 0, 0, 2})
		tcp := ip[20:]
		binary.BigEndian.PutUint16(tcp[0:], 40000)
		binary.BigEndian.PutUint16(tcp[2:], 8080)
		tcp[12] = 5 << 4
		pkt = append(pkt, p...)
		rec := make([]byte, 16)
		binary.LittleEndian.PutUint32(rec[8:], uint32(len(pkt)))
		binary.LittleEndian.PutUint32(rec[12:], uint32(len(pkt)))
		b.Write(rec)
		b.Write(pkt)
	}
	return b.Bytes()
}

func TestStreamsJoinsPayloadsPerDirection(t *testing.T) {
	s, err := Streams(capture([]byte("hel"), []byte("lo")))
	if err != nil {
		t.Fatal(err)
	}
	if got := string(s["10.0.0.1:40000 → 10.0.0.2:8080"]); got != "hello" || len(s) != 1 {
		t.Errorf("streams = %q, want one stream \"hello\"", s)
	}
	if _, err := Streams([]byte("not a capture at all, really")); err == nil {
		t.Error("garbage parsed as a capture")
	}
}

func FuzzStreams(f *testing.F) {
	f.Add(capture([]byte("hello")))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = Streams(b) // must not panic
	})
}
