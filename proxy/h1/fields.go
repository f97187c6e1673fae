package h1

import "bytes"

// fieldSection is what a head's field lines say about the message's
// framing and its connection, gathered while they are parsed.
type fieldSection struct {
	hosts, lengths, tes, expects     int
	host, te, upgrade, expect, lenAt []byte
	length                           int64
	// badTrailer: a Trailer field names a field that frames the message.
	badTrailer bool
}

// parse reads the field lines from pos to the empty line that ends the
// head, appending them to fields (at most max; 0 is DefaultMaxFields),
// and returns where the body starts.
func (fs *fieldSection) parse(b []byte, pos, max int, fields []Field) ([]Field, int, error) {
	if max <= 0 {
		max = DefaultMaxFields
	}
	fs.length = -1
	for first := true; ; first = false {
		line, next, err := nextLine(b, pos)
		if err != nil {
			return fields, 0, err
		}
		pos = next
		if len(line) == 0 {
			return fields, pos, nil
		}
		if line[0] == ' ' || line[0] == '\t' {
			if first {
				return fields, 0, errFirstFold
			}
			return fields, 0, errObsFold
		}
		colon := bytes.IndexByte(line, ':')
		if colon < 0 {
			return fields, 0, errFieldLine
		}
		name, value := line[:colon], trimOWS(line[colon+1:])
		if !validName(name) {
			return fields, 0, errFieldName
		}
		if !validValue(value) {
			return fields, 0, errFieldValue
		}
		if len(fields) == max {
			return fields, 0, errTooManyFields
		}
		fields = append(fields, Field{Name: name, Value: value})
		if err := fs.note(name, value); err != nil {
			return fields, 0, err
		}
	}
}

// note records a field that matters to framing or the connection.
func (fs *fieldSection) note(name, value []byte) error {
	switch {
	case equalFold(name, "host"):
		fs.hosts++
		fs.host = value
	case equalFold(name, "content-length"):
		n, err := parseLength(value)
		if err != nil {
			return err
		}
		// Two that differ as text disagree (net/http compares the text:
		// "4" and "04" are refused there too).
		if fs.lengths++; fs.lengths > 1 && !bytes.Equal(value, fs.lenAt) {
			return errContentLength
		}
		fs.length, fs.lenAt = n, value
	case equalFold(name, "transfer-encoding"):
		fs.tes++
		fs.te = value
	case equalFold(name, "upgrade"):
		fs.upgrade = value
	case equalFold(name, "trailer"):
		fs.badTrailer = fs.badTrailer || listHas(value, "content-length") || listHas(value, "transfer-encoding") || listHas(value, "trailer")
	case equalFold(name, "expect"):
		if fs.expects++; fs.expects == 1 {
			fs.expect = value
		}
	}
	return nil
}

// framing is how the body is delimited by the fields: Chunked, Length
// (fs.length, maybe 0), or UntilClose when they name neither.
func (fs *fieldSection) framing(http11 bool) (Framing, error) {
	if fs.tes > 0 {
		if !http11 {
			return 0, errTEInHTTP10
		}
		if fs.tes > 1 || !equalFold(fs.te, "chunked") {
			return 0, errTE
		}
		if fs.lengths > 0 {
			return 0, errLengthAndTE
		}
		if fs.badTrailer {
			return 0, errTrailer // as net/http: a trailer may not frame the message
		}
		return Chunked, nil
	}
	if fs.lengths > 1 {
		return 0, errTwoLengths // that agree: net/http takes one of them
	}
	if fs.lengths == 1 {
		return Length, nil
	}
	return UntilClose, nil
}

// connection reads every Connection field ("close" in any of them
// closes): whether the connection may carry another message, and the
// Upgrade field's value when Connection names upgrade.
func (fs *fieldSection) connection(fields []Field, http11 bool) (keepAlive bool, upgrade []byte) {
	closeToken, keepAliveToken, upgradeToken := false, false, false
	for _, f := range fields {
		if equalFold(f.Name, "connection") {
			closeToken = closeToken || listHas(f.Value, "close")
			keepAliveToken = keepAliveToken || listHas(f.Value, "keep-alive")
			upgradeToken = upgradeToken || listHas(f.Value, "upgrade")
		}
	}
	if http11 {
		keepAlive = !closeToken
	} else {
		keepAlive = keepAliveToken && !closeToken
	}
	if upgradeToken && len(fs.upgrade) > 0 {
		upgrade = fs.upgrade
	}
	return keepAlive, upgrade
}
