package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	customsv1 "github.com/customs-dev/customs/gen/go/customs/v1"
)

// env holds the connection flags shared by every command.
type env struct {
	stdout, stderr io.Writer

	server    string
	token     string
	tokenFile string
	useTLS    bool
	caFile    string
	certFile  string
	keyFile   string
	output    string
	timeout   time.Duration
}

// flags returns a flag set with the shared flags registered.
func (e *env) flags(name string) *flag.FlagSet {
	fs := flag.NewFlagSet("customsctl "+name, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.StringVar(&e.server, "server", envOr("CUSTOMS_SERVER", "127.0.0.1:9090"), "Customs gRPC address (env CUSTOMS_SERVER)")
	fs.StringVar(&e.token, "token", os.Getenv("CUSTOMS_TOKEN"), "bearer token (env CUSTOMS_TOKEN)")
	fs.StringVar(&e.tokenFile, "token-file", os.Getenv("CUSTOMS_TOKEN_FILE"), "file holding the bearer token (env CUSTOMS_TOKEN_FILE)")
	fs.BoolVar(&e.useTLS, "tls", os.Getenv("CUSTOMS_CA_FILE") != "", "use TLS (implied by --ca-file or --cert)")
	fs.StringVar(&e.caFile, "ca-file", os.Getenv("CUSTOMS_CA_FILE"), "CA bundle to verify the server (env CUSTOMS_CA_FILE)")
	fs.StringVar(&e.certFile, "cert", os.Getenv("CUSTOMS_CLIENT_CERT"), "client certificate for mutual TLS (env CUSTOMS_CLIENT_CERT)")
	fs.StringVar(&e.keyFile, "key", os.Getenv("CUSTOMS_CLIENT_KEY"), "client key for mutual TLS (env CUSTOMS_CLIENT_KEY)")
	fs.StringVar(&e.output, "o", "table", "output: table or json")
	fs.DurationVar(&e.timeout, "timeout", 10*time.Second, "deadline for a call (not for watch)")
	return fs
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// parse parses args and checks the output format and argument count.
func (e *env) parse(fs *flag.FlagSet, args []string, positional int, what string) ([]string, error) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, errHelp
		}
		return nil, usageErr{err.Error()}
	}
	if e.output != "table" && e.output != "json" {
		return nil, usageErr{fmt.Sprintf("-o must be table or json, not %q", e.output)}
	}
	if fs.NArg() != positional {
		return nil, usageErr{fmt.Sprintf("want %s", what)}
	}
	return fs.Args(), nil
}

// client dials the server. The returned close func must be called.
func (e *env) client() (customsv1.ArtifactServiceClient, func(), error) {
	opts := []grpc.DialOption{grpc.WithStatsHandler(otelgrpc.NewClientHandler())}
	if e.useTLS || e.caFile != "" || e.certFile != "" {
		cfg := &tls.Config{MinVersion: tls.VersionTLS12}
		if e.caFile != "" {
			pem, err := os.ReadFile(e.caFile)
			if err != nil {
				return nil, nil, fmt.Errorf("read CA file: %w", err)
			}
			cfg.RootCAs = x509.NewCertPool()
			if !cfg.RootCAs.AppendCertsFromPEM(pem) {
				return nil, nil, fmt.Errorf("CA file %s holds no PEM certificate", e.caFile)
			}
		}
		if e.certFile != "" || e.keyFile != "" {
			cert, err := tls.LoadX509KeyPair(e.certFile, e.keyFile)
			if err != nil {
				return nil, nil, fmt.Errorf("load client certificate: %w", err)
			}
			cfg.Certificates = []tls.Certificate{cert}
		}
		opts = append(opts, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	} else {
		opts = append(opts, grpc.WithTransportCredentials(insecure.NewCredentials()))
	}
	token := e.token
	if token == "" && e.tokenFile != "" {
		b, err := os.ReadFile(e.tokenFile)
		if err != nil {
			return nil, nil, fmt.Errorf("read token file: %w", err)
		}
		token = strings.TrimSpace(string(b))
	}
	if token != "" {
		opts = append(opts, grpc.WithPerRPCCredentials(bearer{token: token, requireTLS: e.useTLS || e.caFile != ""}))
	}
	cc, err := grpc.NewClient(e.server, opts...)
	if err != nil {
		return nil, nil, fmt.Errorf("server address %q: %w", e.server, err)
	}
	return customsv1.NewArtifactServiceClient(cc), func() { _ = cc.Close() }, nil
}

func (e *env) callContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, e.timeout)
}

// bearer sends the token on every call.
type bearer struct {
	token      string
	requireTLS bool
}

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + b.token}, nil
}

func (b bearer) RequireTransportSecurity() bool { return b.requireTLS }

// usageErr is a mistake on the command line (exit code 2).
type usageErr struct{ msg string }

func (u usageErr) Error() string { return u.msg }

var errHelp = usageErr{"help requested"}

func isUsage(err error) bool {
	var u usageErr
	return errors.As(err, &u)
}

// humanError turns an error into one sentence for a person.
func humanError(err error, server string) string {
	st, ok := status.FromError(err)
	if !ok {
		return err.Error()
	}
	switch st.Code() {
	case codes.Unavailable:
		return fmt.Sprintf("cannot reach Customs at %s (is it running? try --server): %s", server, st.Message())
	case codes.Unauthenticated:
		return "not authenticated: " + st.Message() + " (pass --token or set CUSTOMS_TOKEN)"
	case codes.PermissionDenied:
		return "permission denied: " + st.Message()
	case codes.NotFound:
		return "not found: " + st.Message()
	case codes.InvalidArgument:
		return "invalid request: " + st.Message()
	case codes.FailedPrecondition:
		return st.Message()
	case codes.DeadlineExceeded:
		return "the server did not answer in time (try --timeout)"
	case codes.Unimplemented:
		return "this server does not support that yet: " + st.Message()
	}
	return st.Code().String() + ": " + st.Message()
}
