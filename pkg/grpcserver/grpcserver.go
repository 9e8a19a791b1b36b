// Package grpcserver builds the gRPC server options every Customs API shares:
// TLS or mutual TLS, a bearer-token check, and OpenTelemetry instrumentation.
package grpcserver

import (
	"context"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/encoding"
	_ "google.golang.org/grpc/encoding/proto" // registers the codec wrapped below
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/customs-dev/customs/pkg/lifecycle"
)

// Config secures the server. The zero value is plaintext without a token,
// which suits loopback only.
type Config struct {
	// CertFile and KeyFile enable TLS.
	CertFile string
	KeyFile  string
	// ClientCAFile requires client certificates signed by this CA (mTLS).
	ClientCAFile string
	// Token, or the content of TokenFile, is required as
	// "authorization: Bearer <token>" on every call but health checks.
	Token     string
	TokenFile string
}

// RegisterFlags adds the gRPC security flags with CUSTOMS_GRPC_* env defaults.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.CertFile, "grpc-tls-cert", lifecycle.EnvOr("CUSTOMS_GRPC_TLS_CERT", ""), "gRPC server certificate (PEM); enables TLS (env CUSTOMS_GRPC_TLS_CERT)")
	fs.StringVar(&c.KeyFile, "grpc-tls-key", lifecycle.EnvOr("CUSTOMS_GRPC_TLS_KEY", ""), "gRPC server private key (PEM) (env CUSTOMS_GRPC_TLS_KEY)")
	fs.StringVar(&c.ClientCAFile, "grpc-client-ca", lifecycle.EnvOr("CUSTOMS_GRPC_CLIENT_CA", ""), "CA bundle for client certificates; enables mutual TLS (env CUSTOMS_GRPC_CLIENT_CA)")
	fs.StringVar(&c.TokenFile, "grpc-token-file", lifecycle.EnvOr("CUSTOMS_GRPC_TOKEN_FILE", ""), "file with the bearer token clients must send (env CUSTOMS_GRPC_TOKEN or CUSTOMS_GRPC_TOKEN_FILE)")
}

// ServerOptions returns the options for grpc.NewServer.
func (c Config) ServerOptions() ([]grpc.ServerOption, error) {
	opts := []grpc.ServerOption{
		grpc.StatsHandler(otelgrpc.NewServerHandler()),
		// Whole environments are a few hundred KiB: larger HTTP/2 windows
		// send them without waiting on window updates.
		grpc.InitialWindowSize(1 << 20),
		grpc.InitialConnWindowSize(4 << 20),
		grpc.ForceServerCodecV2(codec{base: encoding.GetCodecV2(protoName)}),
	}
	if c.CertFile != "" || c.KeyFile != "" {
		creds, err := c.tlsCredentials()
		if err != nil {
			return nil, err
		}
		opts = append(opts, grpc.Creds(creds))
	} else if c.ClientCAFile != "" {
		return nil, errors.New("grpc: --grpc-client-ca needs --grpc-tls-cert and --grpc-tls-key")
	}
	token := c.Token
	if token == "" {
		token = os.Getenv("CUSTOMS_GRPC_TOKEN")
	}
	token, err := lifecycle.ReadSecret(token, c.TokenFile)
	if err != nil {
		return nil, fmt.Errorf("grpc token: %w", err)
	}
	if token != "" {
		opts = append(opts, grpc.ChainUnaryInterceptor(unaryToken(token)), grpc.ChainStreamInterceptor(streamToken(token)))
	}
	return opts, nil
}

func (c Config) tlsCredentials() (credentials.TransportCredentials, error) {
	cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("grpc tls: %w", err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if c.ClientCAFile != "" {
		pem, err := os.ReadFile(c.ClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("grpc client CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("grpc client CA %s: no PEM certificates", c.ClientCAFile)
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return credentials.NewTLS(cfg), nil
}

const protoName = "proto"

// Health checks stay open so probes and load balancers need no token.
func exempt(method string) bool { return strings.HasPrefix(method, "/grpc.health.v1.Health/") }

func checkToken(ctx context.Context, token string) error {
	md, _ := metadata.FromIncomingContext(ctx)
	vals := md.Get("authorization")
	if len(vals) == 0 {
		return status.Error(codes.Unauthenticated, "missing authorization metadata: send \"authorization: Bearer <token>\"")
	}
	scheme, given, ok := strings.Cut(vals[0], " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || subtle.ConstantTimeCompare([]byte(strings.TrimSpace(given)), []byte(token)) != 1 {
		return status.Error(codes.Unauthenticated, "invalid bearer token")
	}
	return nil
}

func unaryToken(token string) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if !exempt(info.FullMethod) {
			if err := checkToken(ctx, token); err != nil {
				return nil, err
			}
		}
		return handler(ctx, req)
	}
}

func streamToken(token string) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		if !exempt(info.FullMethod) {
			if err := checkToken(ss.Context(), token); err != nil {
				return err
			}
		}
		return handler(srv, ss)
	}
}

// ClientIdentity is the caller's verified client certificate identity
// under mutual TLS: the subject's common name, else its first DNS or URI
// name. ok is false when the call has no verified client certificate
// (plaintext, server-only TLS, or a token).
func ClientIdentity(ctx context.Context) (id string, ok bool) {
	p, found := peer.FromContext(ctx)
	if !found {
		return "", false
	}
	info, isTLS := p.AuthInfo.(credentials.TLSInfo)
	if !isTLS || len(info.State.VerifiedChains) == 0 || len(info.State.VerifiedChains[0]) == 0 {
		return "", false
	}
	cert := info.State.VerifiedChains[0][0]
	switch {
	case cert.Subject.CommonName != "":
		return cert.Subject.CommonName, true
	case len(cert.DNSNames) > 0:
		return cert.DNSNames[0], true
	case len(cert.URIs) > 0:
		return cert.URIs[0].String(), true
	}
	return "", false
}
