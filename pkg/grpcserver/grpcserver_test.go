package grpcserver

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	customsv1 "github.com/customs-dev/customs/gen/go/customs/v1"
)

type pki struct {
	dir        string
	ca         *x509.Certificate
	caKey      *ecdsa.PrivateKey
	caPool     *x509.CertPool
	clientCert tls.Certificate
}

func newPKI(t *testing.T) *pki {
	t.Helper()
	p := &pki{dir: t.TempDir()}
	p.caKey, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &p.caKey.PublicKey, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	p.ca, _ = x509.ParseCertificate(der)
	p.caPool = x509.NewCertPool()
	p.caPool.AddCert(p.ca)
	writePEM(t, filepath.Join(p.dir, "ca.pem"), "CERTIFICATE", der)
	certPEM, keyPEM := p.issue(t, 2, x509.ExtKeyUsageServerAuth)
	writePEM(t, filepath.Join(p.dir, "server.pem"), "CERTIFICATE", certPEM)
	writePEM(t, filepath.Join(p.dir, "server-key.pem"), "EC PRIVATE KEY", keyPEM)
	cDER, cKey := p.issue(t, 3, x509.ExtKeyUsageClientAuth)
	p.clientCert, err = tls.X509KeyPair(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cDER}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: cKey}))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func (p *pki) issue(t *testing.T, serial int64, usage x509.ExtKeyUsage) (certDER, keyDER []byte) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "localhost"}, DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{usage}, KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &key.PublicKey, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	kd, _ := x509.MarshalECPrivateKey(key)
	return der, kd
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

func serve(t *testing.T, cfg Config) string {
	t.Helper()
	opts, err := cfg.ServerOptions()
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer(opts...)
	healthpb.RegisterHealthServer(s, health.NewServer())
	customsv1.RegisterArtifactServiceServer(s, customsv1.UnimplementedArtifactServiceServer{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = s.Serve(ln) }()
	t.Cleanup(s.Stop)
	return ln.Addr().String()
}

// call returns the code of a GetArtifact call; Unimplemented means the call
// got through the security checks.
func call(t *testing.T, addr string, creds credentials.TransportCredentials, token string) codes.Code {
	t.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if token != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", token)
	}
	_, err = customsv1.NewArtifactServiceClient(cc).GetArtifact(ctx, &customsv1.GetArtifactRequest{})
	return status.Code(err)
}

func TestBearerToken(t *testing.T) {
	t.Parallel()
	addr := serve(t, Config{Token: "s3cret"})
	plain := insecure.NewCredentials()
	for token, want := range map[string]codes.Code{
		"":              codes.Unauthenticated,
		"Bearer wrong":  codes.Unauthenticated,
		"Basic s3cret":  codes.Unauthenticated,
		"Bearer s3cret": codes.Unimplemented,
	} {
		if got := call(t, addr, plain, token); got != want {
			t.Errorf("token %q: code %v, want %v", token, got, want)
		}
	}
	cc, _ := grpc.NewClient(addr, grpc.WithTransportCredentials(plain))
	defer cc.Close()
	if _, err := healthpb.NewHealthClient(cc).Check(context.Background(), &healthpb.HealthCheckRequest{}); err != nil {
		t.Errorf("health check needs no token, got %v", err)
	}
}

func TestTLSAndMutualTLS(t *testing.T) {
	t.Parallel()
	p := newPKI(t)
	cert, key, ca := filepath.Join(p.dir, "server.pem"), filepath.Join(p.dir, "server-key.pem"), filepath.Join(p.dir, "ca.pem")

	tlsAddr := serve(t, Config{CertFile: cert, KeyFile: key})
	trusting := credentials.NewTLS(&tls.Config{RootCAs: p.caPool, MinVersion: tls.VersionTLS12})
	if got := call(t, tlsAddr, trusting, ""); got != codes.Unimplemented {
		t.Errorf("TLS client: %v", got)
	}
	if got := call(t, tlsAddr, insecure.NewCredentials(), ""); got != codes.Unavailable {
		t.Errorf("plaintext client against TLS: %v, want Unavailable", got)
	}

	mtlsAddr := serve(t, Config{CertFile: cert, KeyFile: key, ClientCAFile: ca})
	if got := call(t, mtlsAddr, trusting, ""); got != codes.Unavailable {
		t.Errorf("mTLS without a client certificate: %v, want Unavailable", got)
	}
	withCert := credentials.NewTLS(&tls.Config{RootCAs: p.caPool, Certificates: []tls.Certificate{p.clientCert}, MinVersion: tls.VersionTLS12})
	if got := call(t, mtlsAddr, withCert, ""); got != codes.Unimplemented {
		t.Errorf("mTLS with a client certificate: %v", got)
	}
}

func TestConfigErrors(t *testing.T) {
	t.Parallel()
	for name, cfg := range map[string]Config{
		"client CA without TLS": {ClientCAFile: "ca.pem"},
		"missing cert":          {CertFile: "/nonexistent.pem", KeyFile: "/nonexistent-key.pem"},
		"missing token file":    {TokenFile: "/nonexistent-token"},
	} {
		if _, err := cfg.ServerOptions(); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

// identityEcho answers every GetArtifact with the caller's identity.
type identityEcho struct {
	customsv1.UnimplementedArtifactServiceServer
}

func (identityEcho) GetArtifact(ctx context.Context, _ *customsv1.GetArtifactRequest) (*customsv1.GetArtifactResponse, error) {
	id, ok := ClientIdentity(ctx)
	return nil, status.Errorf(codes.NotFound, "identity=%q ok=%v", id, ok)
}

func TestClientIdentity(t *testing.T) {
	t.Parallel()
	p := newPKI(t)
	cert, key, ca := filepath.Join(p.dir, "server.pem"), filepath.Join(p.dir, "server-key.pem"), filepath.Join(p.dir, "ca.pem")
	identity := func(cfg Config, creds credentials.TransportCredentials) string {
		t.Helper()
		opts, err := cfg.ServerOptions()
		if err != nil {
			t.Fatal(err)
		}
		s := grpc.NewServer(opts...)
		customsv1.RegisterArtifactServiceServer(s, identityEcho{})
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		go func() { _ = s.Serve(ln) }()
		defer s.Stop()
		cc, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(creds))
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = cc.Close() }()
		_, err = customsv1.NewArtifactServiceClient(cc).GetArtifact(context.Background(), &customsv1.GetArtifactRequest{})
		return status.Convert(err).Message()
	}
	trusting := credentials.NewTLS(&tls.Config{RootCAs: p.caPool, MinVersion: tls.VersionTLS12})
	withCert := credentials.NewTLS(&tls.Config{RootCAs: p.caPool, Certificates: []tls.Certificate{p.clientCert}, MinVersion: tls.VersionTLS12})
	if got := identity(Config{CertFile: cert, KeyFile: key, ClientCAFile: ca}, withCert); got != `identity="localhost" ok=true` {
		t.Errorf("mTLS caller: %s", got)
	}
	if got := identity(Config{CertFile: cert, KeyFile: key}, trusting); got != `identity="" ok=false` {
		t.Errorf("server-only TLS caller: %s", got)
	}
	if got := identity(Config{}, insecure.NewCredentials()); got != `identity="" ok=false` {
		t.Errorf("plaintext caller: %s", got)
	}
}
