package integration

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	customsv1 "github.com/customs-dev/customs/gen/go/customs/v1"
	"github.com/customs-dev/customs/pkg/backbone"
	"github.com/customs-dev/customs/pkg/lifecycle"
	"github.com/customs-dev/customs/pkg/telemetry"
	"github.com/customs-dev/customs/pkg/testkit"
	"github.com/customs-dev/customs/services/ingest/ingest"
	"github.com/customs-dev/customs/services/query/query"
)

const webhookToken = "integration-token"

// stack is NATS, ingest, query and a Distribution registry whose
// notifications pass through a recorder on their way to ingest.
type stack struct {
	t        *testing.T
	conn     *backbone.Conn
	ingest   string // base URL
	registry string // host:port
	recorder *recorder
	client   customsv1.ArtifactServiceClient

	queryCancel context.CancelFunc
	queryDone   chan error
	queryAddr   string
}

var (
	setupTracing sync.Once
	// spans records every span of every test; tests filter by trace id.
	spans = tracetest.NewInMemoryExporter()
)

func newStack(t *testing.T) *stack {
	t.Helper()
	setupTracing.Do(func() {
		if _, err := telemetry.Setup(context.Background(), telemetry.Options{
			ServiceName:     "integration",
			ExtraProcessors: []sdktrace.SpanProcessor{sdktrace.NewSimpleSpanProcessor(spans)},
		}); err != nil {
			t.Fatal(err)
		}
	})
	s := &stack{t: t, conn: testkit.NATS(t)}

	srv, err := ingest.NewService(ingest.ServiceConfig{DistributionToken: webhookToken, MaxBodyBytes: 64 << 10, IgnoreRepositories: "customs/*"},
		backbone.NewPublisher(s.conn.JS), s.conn.Ready, testkit.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	s.ingest = serveHTTP(t, srv.Handler())
	s.recorder = &recorder{target: s.ingest}
	rec := httptest.NewServer(s.recorder)
	t.Cleanup(rec.Close)
	s.registry = testkit.Registry(t, rec.URL+"/webhooks/distribution", webhookToken)

	s.startQuery(query.ServiceConfig{Listen: "127.0.0.1:0"})
	cc, err := grpc.NewClient(s.queryAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	s.client = customsv1.NewArtifactServiceClient(cc)
	return s
}

// startQuery starts the query service, reusing the previous address so the
// gRPC client reconnects to the new instance.
func (s *stack) startQuery(cfg query.ServiceConfig) {
	s.t.Helper()
	addr := s.queryAddr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	cfg.Listen = addr
	ctx, cancel := context.WithCancel(context.Background())
	svc, err := query.NewService(ctx, cfg, s.conn.JS, testkit.Logger(s.t))
	if err != nil {
		cancel()
		s.t.Fatal(err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		cancel()
		s.t.Fatal(err)
	}
	s.queryAddr = ln.Addr().String()
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx, ln) }()
	s.queryCancel, s.queryDone = cancel, done
	s.t.Cleanup(s.stopQuery)
}

func (s *stack) stopQuery() {
	if s.queryCancel == nil {
		return
	}
	s.queryCancel()
	if err := <-s.queryDone; err != nil {
		s.t.Errorf("query service: %v", err)
	}
	s.queryCancel = nil
}

// push writes a random image to repo:tag in the registry and returns its
// digest.
func (s *stack) push(repo, tag string) v1.Hash {
	s.t.Helper()
	img, err := random.Image(512, 1)
	if err != nil {
		s.t.Fatal(err)
	}
	ref, err := name.ParseReference(fmt.Sprintf("%s/%s:%s", s.registry, repo, tag))
	if err != nil {
		s.t.Fatal(err)
	}
	if err := remote.Write(ref, img); err != nil {
		s.t.Fatalf("push %s: %v", ref, err)
	}
	d, err := img.Digest()
	if err != nil {
		s.t.Fatal(err)
	}
	return d
}

// eventually retries fn until it returns nil or the deadline passes.
func eventually(t *testing.T, what string, fn func() error) {
	t.Helper()
	eventuallyWithin(t, 15*time.Second, what, fn)
}

// eventuallyWithin is eventually with a longer wait, for recovery after a
// failure (a NATS leader election, a registry retrying its webhook).
func eventuallyWithin(t *testing.T, wait time.Duration, what string, fn func() error) {
	t.Helper()
	deadline := time.Now().Add(wait)
	var err error
	for time.Now().Before(deadline) {
		if err = fn(); err == nil {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s: %v", what, err)
}

func (s *stack) streamMsgs() uint64 {
	s.t.Helper()
	st, err := s.conn.JS.Stream(context.Background(), backbone.StreamArtifacts)
	if err != nil {
		s.t.Fatal(err)
	}
	info, err := st.Info(context.Background())
	if err != nil {
		s.t.Fatal(err)
	}
	return info.State.Msgs
}

func serveHTTP(t *testing.T, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = lifecycle.ServeHTTP(ctx, ln, h, testkit.Logger(t))
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return "http://" + ln.Addr().String()
}

// recorder forwards webhooks to ingest and keeps a copy of each, so a test
// can re-send exactly what the registry sent.
type recorder struct {
	target string

	mu       sync.Mutex
	requests []recordedRequest
}

type recordedRequest struct {
	path   string
	header http.Header
	body   []byte
}

func (r *recorder) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	r.mu.Lock()
	r.requests = append(r.requests, recordedRequest{path: req.URL.Path, header: req.Header.Clone(), body: body})
	r.mu.Unlock()
	fwd, _ := http.NewRequestWithContext(req.Context(), req.Method, r.target+req.URL.Path, bytes.NewReader(body))
	fwd.Header = req.Header.Clone()
	resp, err := http.DefaultClient.Do(fwd)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	w.WriteHeader(resp.StatusCode)
	_, _ = io.Copy(w, resp.Body)
}

// find returns the recorded webhooks whose body mentions s.
func (r *recorder) find(s string) []recordedRequest {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []recordedRequest
	for _, q := range r.requests {
		if bytes.Contains(q.body, []byte(s)) {
			out = append(out, q)
		}
	}
	return out
}
