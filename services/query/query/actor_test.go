package query

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

func TestCallerActor(t *testing.T) {
	t.Parallel()
	mtls := peer.NewContext(context.Background(), &peer.Peer{AuthInfo: credentials.TLSInfo{State: tls.ConnectionState{
		VerifiedChains: [][]*x509.Certificate{{{Subject: pkix.Name{CommonName: "alice"}}}},
	}}})
	tests := []struct {
		name      string
		ctx       context.Context
		requested string
		want      string
		code      codes.Code
	}{
		{name: "named actor without mTLS", ctx: context.Background(), requested: "bob", want: "bob"},
		{name: "no actor without mTLS", ctx: context.Background(), code: codes.InvalidArgument},
		{name: "mTLS fills in the actor", ctx: mtls, want: "alice"},
		{name: "mTLS and the same actor", ctx: mtls, requested: "alice", want: "alice"},
		{name: "mTLS caller naming someone else", ctx: mtls, requested: "bob", code: codes.PermissionDenied},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := callerActor(tc.ctx, tc.requested)
			if status.Code(err) != tc.code || got != tc.want {
				t.Errorf("callerActor = %q, %v; want %q, code %v", got, err, tc.want, tc.code)
			}
		})
	}
}
