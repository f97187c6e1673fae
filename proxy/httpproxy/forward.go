package httpproxy

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/textproto"
	"net/url"
	"strings"

	"golang.org/x/net/http/httpguts"
)

// hopHeaders are meaningful for one connection only (RFC 9110 section 7.6.1)
// and never forwarded.
var hopHeaders = []string{
	"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade",
}

// removeHopByHop deletes the hop-by-hop headers, including those the
// Connection header names, in place.
func removeHopByHop(h http.Header) {
	for _, f := range h["Connection"] {
		for sf := range strings.SplitSeq(f, ",") {
			if sf = textproto.TrimString(sf); sf != "" {
				delete(h, textproto.CanonicalMIMEHeaderKey(sf))
			}
		}
	}
	for _, k := range hopHeaders {
		delete(h, k)
	}
}

// upgradeType is the protocol a request or response upgrades to, or "".
// Only WebSocket is carried: any other upgrade (h2c, TLS, protocols the
// mesh cannot see into) is dropped and the request goes as a plain one.
func upgradeType(h http.Header) string {
	if !httpguts.HeaderValuesContainsToken(h["Connection"], "Upgrade") {
		return ""
	}
	if up := headerValue(h, "Upgrade"); strings.EqualFold(up, "websocket") {
		return up
	}
	return ""
}

// outbound builds the request to send upstream from the one received. It
// takes over r's headers (r is not used again) and copies only what differs,
// unlike a full clone: this runs for every request.
func outbound(ctx context.Context, r *http.Request, addr string) *http.Request {
	out := r.WithContext(ctx)
	out.URL = &url.URL{Scheme: "http", Host: addr, Path: r.URL.Path, RawPath: r.URL.RawPath, RawQuery: r.URL.RawQuery}
	out.RequestURI = ""
	out.Close = false
	if r.ContentLength == 0 {
		out.Body = nil // a body of no bytes is no body, not an empty chunked one
	}
	h := out.Header
	up := upgradeType(h)
	trailers := httpguts.HeaderValuesContainsToken(h["Te"], "trailers")
	removeHopByHop(h)
	if trailers {
		h["Te"] = []string{"trailers"} // gRPC needs it end to end
	}
	if up != "" {
		h["Connection"] = []string{"Upgrade"}
		h["Upgrade"] = []string{up}
	}
	return out
}

// copyResponse sends the upstream's response to the client: headers, the
// body streamed through a pooled buffer (flushed as it comes when its length
// is unknown, as in streaming and gRPC), then trailers.
func copyResponse(rec *recorder, res *http.Response) {
	defer res.Body.Close()
	removeHopByHop(res.Header)
	h := rec.Header()
	for k, vv := range res.Header {
		h[k] = vv
	}
	if len(res.Trailer) > 0 {
		keys := make([]string, 0, len(res.Trailer))
		for k := range res.Trailer {
			keys = append(keys, k)
		}
		h["Trailer"] = keys
	}
	rec.WriteHeader(res.StatusCode)
	streaming := res.ContentLength == -1 || len(res.Trailer) > 0
	if streaming {
		rec.Flush()
	}
	bufp := buffers.Get().(*[]byte)
	defer buffers.Put(bufp)
	buf := *bufp
	for {
		n, rerr := res.Body.Read(buf)
		if n > 0 {
			if _, werr := rec.Write(buf[:n]); werr != nil {
				return // the client is gone
			}
			if streaming {
				rec.Flush()
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			// The upstream broke the response off: make the client see it
			// broken too rather than a short, well-formed one.
			panic(http.ErrAbortHandler)
		}
	}
	for k, vv := range res.Trailer {
		h[http.TrailerPrefix+k] = vv
	}
}

// switchProtocols completes an upgrade (WebSocket): the upstream said 101,
// so the client's connection and the upstream's are joined byte for byte.
func switchProtocols(rec *recorder, req *http.Request, res *http.Response) error {
	upstream, ok := res.Body.(io.ReadWriteCloser)
	if !ok {
		res.Body.Close()
		return errors.New("upgrade response body is not writable")
	}
	defer upstream.Close()
	if upgradeType(res.Header) != upgradeType(req.Header) {
		return errors.New("the upstream switched to a protocol the client did not ask for")
	}
	conn, brw, err := http.NewResponseController(rec.ResponseWriter).Hijack()
	if err != nil {
		return err
	}
	defer conn.Close()
	rec.noteStatus(http.StatusSwitchingProtocols)
	copyHeaders := res.Header.Clone()
	removeHopByHop(copyHeaders)
	copyHeaders["Connection"] = []string{"Upgrade"}
	copyHeaders["Upgrade"] = []string{upgradeType(res.Header)}
	resp := &http.Response{StatusCode: http.StatusSwitchingProtocols, ProtoMajor: 1, ProtoMinor: 1, Header: copyHeaders}
	if err := resp.Write(brw); err != nil {
		return err
	}
	if err := brw.Flush(); err != nil {
		return err
	}
	errc := make(chan error, 2)
	go func() { _, err := io.Copy(upstream, brw); errc <- err }()
	go func() { _, err := io.Copy(conn, upstream); errc <- err }()
	<-errc
	return nil
}
