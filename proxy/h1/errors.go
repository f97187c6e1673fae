package h1

import (
	"errors"
	"net/http"
)

// ErrIncomplete means the buffer holds the start of a head but not its
// end: read more (and answer 431 when the head outgrows its limit).
var ErrIncomplete = errors.New("h1: incomplete head")

// Error is a head that is refused: answer Status, close the connection.
type Error struct {
	// Status is the status to answer: 400, 417, 431, 501 or 505 for a
	// request; for a response, 502 when the status line is at fault (the
	// others are the request's: a proxy answers 502 for any).
	Status int
	// Reason names what was wrong, for logs and metrics (a fixed set: see
	// the Reason constants).
	Reason Reason
}

func (e *Error) Error() string {
	return "h1: " + http.StatusText(e.Status) + ": " + string(e.Reason)
}

// Reason is why a head was refused.
type Reason string

// The reasons a head is refused. Those marked strict are refused here
// although net/http's server accepts them (see the package doc).
const (
	ReasonRequestLine       Reason = "malformed request line"
	ReasonMethod            Reason = "invalid method"
	ReasonTarget            Reason = "invalid request target"
	ReasonTargetForm        Reason = "unsupported request-target form" // strict (CONNECT authority-form, unusual absolute forms)
	ReasonVersion           Reason = "malformed HTTP version"
	ReasonVersionSupport    Reason = "unsupported HTTP version"
	ReasonPreface           Reason = "HTTP/2 preface on an HTTP/1 connection" // strict
	ReasonStatusLine        Reason = "malformed status line"
	ReasonStatusForm        Reason = "unusual status line"              // strict: spaces before the code, a sign, a code under 100, control characters
	ReasonResponseVersion   Reason = "a response not in HTTP/1.x"       // strict
	ReasonResponseFieldName Reason = "invalid field name in a response" // strict: net/http's response reader keeps names with spaces
	ReasonBareLF            Reason = "line ending without CR"           // strict
	ReasonBareCR            Reason = "CR without LF"
	ReasonObsFold           Reason = "obs-fold continuation line" // strict after the first field line
	ReasonFieldLine         Reason = "malformed field line"
	ReasonFieldName         Reason = "invalid field name"
	ReasonFieldValue        Reason = "invalid field value"
	ReasonTooManyFields     Reason = "too many fields" // strict
	ReasonHost              Reason = "missing, repeated or invalid Host"
	ReasonContentLength     Reason = "invalid Content-Length, or two that disagree"
	ReasonTwoLengths        Reason = "more than one Content-Length"          // strict when they agree
	ReasonLengthAndTE       Reason = "Content-Length with Transfer-Encoding" // strict
	ReasonTE                Reason = "unsupported Transfer-Encoding"
	ReasonTEInHTTP10        Reason = "Transfer-Encoding in HTTP/1.0" // strict
	ReasonExpect            Reason = "unsupported Expect"
	ReasonTrailer           Reason = "a Trailer naming Content-Length, Transfer-Encoding or Trailer"
)

// StrictOnly reports whether net/http's server would have accepted a head
// refused for this reason: the ways this codec is deliberately stricter.
func (r Reason) StrictOnly() bool {
	switch r {
	case ReasonTargetForm, ReasonPreface, ReasonStatusForm, ReasonResponseVersion, ReasonResponseFieldName, ReasonBareLF, ReasonObsFold, ReasonTooManyFields, ReasonTwoLengths, ReasonLengthAndTE, ReasonTEInHTTP10:
		return true
	}
	return false
}

func refuse(status int, reason Reason) error { return &Error{Status: status, Reason: reason} }

// The refusals, allocated once: refusing allocates nothing either.
var (
	errRequestLine     = refuse(http.StatusBadRequest, ReasonRequestLine)
	errMethod          = refuse(http.StatusBadRequest, ReasonMethod)
	errTarget          = refuse(http.StatusBadRequest, ReasonTarget)
	errTargetForm      = refuse(http.StatusBadRequest, ReasonTargetForm)
	errVersion         = refuse(http.StatusBadRequest, ReasonVersion)
	errVersionSupport  = refuse(http.StatusHTTPVersionNotSupported, ReasonVersionSupport)
	errPreface         = refuse(http.StatusHTTPVersionNotSupported, ReasonPreface)
	errStatusLine      = refuse(http.StatusBadGateway, ReasonStatusLine)
	errStatusForm      = refuse(http.StatusBadGateway, ReasonStatusForm)
	errResponseVersion = refuse(http.StatusBadGateway, ReasonResponseVersion)
	errBareLF          = refuse(http.StatusBadRequest, ReasonBareLF)
	errBareCR          = refuse(http.StatusBadRequest, ReasonBareCR)
	errObsFold         = refuse(http.StatusBadRequest, ReasonObsFold)
	errFirstFold       = refuse(http.StatusBadRequest, ReasonFieldLine)
	errFieldLine       = refuse(http.StatusBadRequest, ReasonFieldLine)
	errFieldName       = refuse(http.StatusBadRequest, ReasonFieldName)
	errFieldValue      = refuse(http.StatusBadRequest, ReasonFieldValue)
	errTooManyFields   = refuse(http.StatusRequestHeaderFieldsTooLarge, ReasonTooManyFields)
	errHost            = refuse(http.StatusBadRequest, ReasonHost)
	errContentLength   = refuse(http.StatusBadRequest, ReasonContentLength)
	errTwoLengths      = refuse(http.StatusBadRequest, ReasonTwoLengths)
	errLengthAndTE     = refuse(http.StatusBadRequest, ReasonLengthAndTE)
	errTE              = refuse(http.StatusNotImplemented, ReasonTE)
	errTEInHTTP10      = refuse(http.StatusBadRequest, ReasonTEInHTTP10)
	errExpect          = refuse(http.StatusExpectationFailed, ReasonExpect)
	errTrailer         = refuse(http.StatusBadRequest, ReasonTrailer)

	errResponseFieldName = refuse(http.StatusBadGateway, ReasonResponseFieldName)
	// responseErrors are the refusals of a response's fields: 502.
	responseErrors = func() map[*Error]*Error {
		m := map[*Error]*Error{}
		for _, err := range []error{errBareLF, errBareCR, errObsFold, errFirstFold, errFieldLine, errFieldValue, errTooManyFields,
			errContentLength, errTwoLengths, errLengthAndTE, errTE, errTEInHTTP10, errTrailer} {
			e := err.(*Error)
			m[e] = &Error{Status: http.StatusBadGateway, Reason: e.Reason}
		}
		return m
	}()
)
