package ingest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"

	customsv1 "github.com/customs-dev/customs/gen/go/customs/v1"
	"github.com/customs-dev/customs/pkg/artifactref"
	"github.com/customs-dev/customs/pkg/backbone"
	"github.com/customs-dev/customs/pkg/testkit"
)

const (
	testDigest  = "sha256:954b378c375d852eb3c63ab88978f640b4348b01c1b3456a024a81536dafbbf4"
	testDigest2 = "sha256:a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90"
	ociManifest = "application/vnd.oci.image.manifest.v1+json"
	ociIndex    = "application/vnd.oci.image.index.v1+json"
)

// recPublisher records events; PublishFunc, when set, decides the result.
type recPublisher struct {
	PublishFunc func(ctx context.Context, evt *customsv1.Event) (backbone.PublishResult, error)

	mu     sync.Mutex
	events []*customsv1.Event
}

func (f *recPublisher) Publish(ctx context.Context, evt *customsv1.Event) (backbone.PublishResult, error) {
	if f.PublishFunc != nil {
		res, err := f.PublishFunc(ctx, evt)
		if err != nil {
			return res, err
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.events = append(f.events, evt)
	return backbone.PublishResult{Stream: backbone.StreamArtifacts, Sequence: uint64(len(f.events))}, nil
}

func (f *recPublisher) published() []*customsv1.Event {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]*customsv1.Event(nil), f.events...)
}

// fakeResolver answers from ResolveFunc.
type fakeResolver struct {
	ResolveFunc func(ctx context.Context, a *customsv1.ArtifactRef) (Resolved, error)
}

func (f *fakeResolver) Resolve(ctx context.Context, a *customsv1.ArtifactRef) (Resolved, error) {
	return f.ResolveFunc(ctx, a)
}

// staticResolver resolves every tag to testDigest as an OCI manifest.
func staticResolver() *fakeResolver {
	return &fakeResolver{ResolveFunc: func(_ context.Context, a *customsv1.ArtifactRef) (Resolved, error) {
		d := a.GetDigest()
		if d == "" {
			d = testDigest
		}
		return Resolved{Digest: d, MediaType: ociManifest, Size: 1234}, nil
	}}
}

func fixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatalf("fixture: %v", err)
	}
	return b
}

// seedFuzz adds every fixture of a format to the fuzz corpus.
func seedFuzz(f *testing.F, format string) {
	f.Helper()
	files, err := filepath.Glob(filepath.Join("testdata", format, "*.json"))
	if err != nil || len(files) == 0 {
		f.Fatalf("no fixtures for %s: %v", format, err)
	}
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(""))
	f.Add([]byte("null"))
	f.Add([]byte("{}"))
	f.Add([]byte("[]"))
}

// checkParsed asserts what every parser promises for accepted input:
// pushes carry a valid registry and repository, a valid digest or tag, and
// a time.
func checkParsed(t *testing.T, p Parsed, err error) {
	t.Helper()
	if err != nil {
		if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrUnsupportedMediaType) {
			t.Fatalf("error %v wraps neither ErrMalformed nor ErrUnsupportedMediaType", err)
		}
		if len(p.Pushes) != 0 {
			t.Fatalf("pushes returned with an error")
		}
		return
	}
	for _, push := range p.Pushes {
		a := push.Artifact
		if artifactref.ValidateRegistry(a.GetRegistry()) != nil || artifactref.ValidateRepository(a.GetRepository()) != nil {
			t.Fatalf("invalid artifact accepted: %v", a)
		}
		if a.GetDigest() == "" && a.GetTag() == "" {
			t.Fatalf("artifact with neither digest nor tag: %v", a)
		}
		if a.GetDigest() != "" && artifactref.ValidateDigest(a.GetDigest()) != nil {
			t.Fatalf("invalid digest accepted: %v", a)
		}
		if push.OccurredAt.IsZero() {
			t.Fatalf("push without a time: %v", a)
		}
	}
}

// webhookCase is one request to a server built by the test, with the
// assertions on what came back and what was published.
type webhookCase struct {
	name       string
	path       string
	body       []byte
	header     http.Header
	wantStatus int
	check      func(t *testing.T, resp *httptest.ResponseRecorder, events []*customsv1.Event)
}

func runWebhookCases(t *testing.T, build func(t *testing.T, pub Publisher) *Server, cases []webhookCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			pub := &recPublisher{}
			srv := build(t, pub)
			req := httptest.NewRequest(http.MethodPost, tc.path, bytes.NewReader(tc.body))
			for k, v := range tc.header {
				req.Header[k] = v
			}
			rec := httptest.NewRecorder()
			srv.Handler().ServeHTTP(rec, req)
			if rec.Code != tc.wantStatus {
				t.Fatalf("status = %d, want %d; body %s", rec.Code, tc.wantStatus, rec.Body.String())
			}
			events := pub.published()
			if rec.Code >= 300 && len(events) != 0 {
				t.Fatalf("a refused request published %d events", len(events))
			}
			if tc.check != nil {
				tc.check(t, rec, events)
			}
		})
	}
}

func newFormatServer(t *testing.T, pub Publisher, res Resolver, receivers ...Receiver) *Server {
	t.Helper()
	srv, err := NewServer(Config{Logger: testkit.Logger(t), Resolver: res}, pub, receivers...)
	if err != nil {
		t.Fatal(err)
	}
	return srv
}

func hdr(kv ...string) http.Header {
	h := http.Header{}
	for i := 0; i+1 < len(kv); i += 2 {
		h.Set(kv[i], kv[i+1])
	}
	return h
}

// onePush asserts exactly one event was published and returns it.
func onePush(t *testing.T, events []*customsv1.Event) *customsv1.Event {
	t.Helper()
	if len(events) != 1 {
		t.Fatalf("published %d events, want 1", len(events))
	}
	return events[0]
}

func wantArtifact(t *testing.T, evt *customsv1.Event, registry, repo, digest, mediaType, tag string) {
	t.Helper()
	a := evt.GetArtifact()
	if a.GetRegistry() != registry || a.GetRepository() != repo || a.GetDigest() != digest || a.GetMediaType() != mediaType || a.GetTag() != tag {
		t.Fatalf("artifact = %v, want %s/%s@%s (%s) tag %q", a, registry, repo, digest, mediaType, tag)
	}
}

func wantIgnored(t *testing.T, rec *httptest.ResponseRecorder, substr string) {
	t.Helper()
	var resp Response
	if err := json.Unmarshal(rec.Body.Bytes(), &resp); err != nil {
		t.Fatalf("response: %v", err)
	}
	if len(resp.Accepted) != 0 || len(resp.Ignored) == 0 {
		t.Fatalf("response %s: want only ignored events", rec.Body.String())
	}
	if !bytes.Contains(rec.Body.Bytes(), []byte(substr)) {
		t.Fatalf("response %s does not say %q", rec.Body.String(), substr)
	}
}

func wantReason(t *testing.T, rec *httptest.ResponseRecorder, substr string) {
	t.Helper()
	var body errorBody
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
		t.Fatalf("error body: %v (%s)", err, rec.Body.String())
	}
	if body.Reason == "" || !bytes.Contains([]byte(body.Reason), []byte(substr)) {
		t.Fatalf("reason %q does not say %q", body.Reason, substr)
	}
}

func newBufferLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func bytesReader(b []byte) io.Reader { return bytes.NewReader(b) }
