package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/protobuf/encoding/protowire"
)

// echoMethod is the gRPC method the suite's client calls.
const (
	echoService = "proto.EchoTestService"
	echoMethod  = "/" + echoService + "/Echo"
)

// echoMessage is Istio's EchoRequest and EchoResponse on the wire: one
// string, field 1.
type echoMessage struct{ message string }

// rawCodec encodes echoMessage as protobuf without generated code.
type rawCodec struct{}

func (rawCodec) Name() string { return "proto" }

func (rawCodec) Marshal(v any) ([]byte, error) {
	m, ok := v.(*echoMessage)
	if !ok {
		return nil, fmt.Errorf("cannot marshal %T", v)
	}
	b := protowire.AppendTag(nil, 1, protowire.BytesType)
	return protowire.AppendString(b, m.message), nil
}

func (rawCodec) Unmarshal(data []byte, v any) error {
	m, ok := v.(*echoMessage)
	if !ok {
		return fmt.Errorf("cannot unmarshal into %T", v)
	}
	for len(data) > 0 {
		num, typ, n := protowire.ConsumeTag(data)
		if n < 0 {
			return protowire.ParseError(n)
		}
		data = data[n:]
		if num == 1 && typ == protowire.BytesType {
			s, n := protowire.ConsumeString(data)
			if n < 0 {
				return protowire.ParseError(n)
			}
			m.message, data = s, data[n:]
			continue
		}
		n = protowire.ConsumeFieldValue(num, typ, data)
		if n < 0 {
			return protowire.ParseError(n)
		}
		data = data[n:]
	}
	return nil
}

// grpcEcho answers Echo with what it saw.
type grpcEcho struct {
	port              int
	hostname, version string
}

func (g *grpcEcho) echo(ctx context.Context, _ *echoMessage) *echoMessage {
	md, _ := metadata.FromIncomingContext(ctx)
	h := http.Header{}
	for k, vs := range md {
		for _, v := range vs {
			h.Add(k, v)
		}
	}
	ip := ""
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		ip, _, _ = net.SplitHostPort(p.Addr.String())
	}
	var b strings.Builder
	writeField(&b, "ServiceVersion", g.version)
	writeField(&b, "ServicePort", strconv.Itoa(g.port))
	writeField(&b, "StatusCode", "200")
	writeField(&b, "Proto", "GRPC")
	writeField(&b, "IP", ip)
	writeHeaders(&b, "RequestHeader", h)
	writeField(&b, "Hostname", g.hostname)
	return &echoMessage{message: b.String()}
}

// echoServiceDesc describes the service by hand (no generated code).
func echoServiceDesc(g *grpcEcho) *grpc.ServiceDesc {
	return &grpc.ServiceDesc{
		ServiceName: echoService,
		HandlerType: (*any)(nil),
		Methods: []grpc.MethodDesc{{
			MethodName: "Echo",
			Handler: func(_ any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
				var in echoMessage
				if err := dec(&in); err != nil {
					return nil, err
				}
				return g.echo(ctx, &in), nil
			},
		}},
	}
}
