package scanner_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	customsv1 "github.com/customs-dev/customs/gen/go/customs/v1"
	"github.com/customs-dev/customs/pkg/backbone"
	"github.com/customs-dev/customs/pkg/registries"
	"github.com/customs-dev/customs/pkg/testkit"
	"github.com/customs-dev/customs/services/scanner/fixtures"
	"github.com/customs-dev/customs/services/scanner/javadb"
	"github.com/customs-dev/customs/services/scanner/scanner"
	"github.com/customs-dev/customs/services/scanner/vulndb"
)

// env is one test's NATS, registry and published DB.
type env struct {
	t         testing.TB
	conn      *backbone.Conn
	registry  string
	dbRef     string
	dbDigest  v1.Hash
	javaDBRef string
}

// javaDBCacheDir is the one Java DB directory of this test binary: Trivy's
// Java DB client is process-wide, so every scanner in it reads the same
// copy (downloaded once, fresh for three days), and it must outlive each
// test's own cache directory.
var javaDBCacheDir = sync.OnceValues(func() (string, error) {
	return os.MkdirTemp("", "customs-scanner-test-javadb-")
})

// dbContent guards what the process-wide trivy-db handle holds. Every
// scanner opens its DB into that one handle, so a test that publishes a DB
// with different advisories would change the findings of scans running in
// parallel tests. Such a test takes the write side for its whole run
// (newEnvOwningDB); every other test shares the read side.
var dbContent sync.RWMutex

// newEnv returns an env whose scanners use the default advisories.
func newEnv(t testing.TB) *env {
	t.Helper()
	dbContent.RLock()
	t.Cleanup(dbContent.RUnlock)
	return newEnvLocked(t)
}

// newEnvOwningDB returns an env for a test that opens a DB with other
// advisories than the default; no other test scans while it runs.
func newEnvOwningDB(t testing.TB) *env {
	t.Helper()
	dbContent.Lock()
	t.Cleanup(dbContent.Unlock)
	return newEnvLocked(t)
}

func newEnvLocked(t testing.TB) *env {
	t.Helper()
	e := &env{t: t, conn: testkit.NATS(t), registry: testkit.Registry(t, "", "")}
	ref, digest, err := vulndb.Publish(context.Background(), e.registry, vulndb.DefaultRepository)
	if err != nil {
		t.Fatalf("publish DB: %v", err)
	}
	e.dbRef, e.dbDigest = ref, digest
	if e.javaDBRef, err = javadb.Publish(context.Background(), e.registry, javadb.DefaultRepository, nil); err != nil {
		t.Fatalf("publish Java DB: %v", err)
	}
	return e
}

// config returns a scanner config for this env that allows hosts.
func (e *env) config(hosts ...string) scanner.ServiceConfig {
	al, err := registries.Parse(strings.Join(append([]string{e.registry}, hosts...), ","))
	if err != nil {
		e.t.Fatal(err)
	}
	return scanner.ServiceConfig{
		AllowList:          al,
		Concurrency:        2,
		ScanTimeout:        time.Minute,
		AckWait:            30 * time.Second,
		DBRepositories:     []string{e.dbRef},
		JavaDBRepositories: []string{e.javaDBRef},
		JavaDBCacheDir:     e.javaDBDir(),
		CacheDir:           e.t.TempDir(),
		CacheBackend:       "memory",
	}
}

func (e *env) javaDBDir() string {
	dir, err := javaDBCacheDir()
	if err != nil {
		e.t.Fatal(err)
	}
	return dir
}

// start runs a scanner on js until the test ends or stop is called.
func (e *env) start(cfg scanner.ServiceConfig, js jetstream.JetStream, log *slog.Logger) (svc *scanner.Service, stop func()) {
	e.t.Helper()
	svc, err := scanner.NewService(context.Background(), cfg, js, log)
	if err != nil {
		e.t.Fatalf("NewService: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					e.t.Errorf("Run: %v", err)
				}
			case <-time.After(30 * time.Second):
				e.t.Errorf("Run did not return after cancel")
			}
		})
	}
	e.t.Cleanup(stop)
	return svc, stop
}

// connect opens another NATS connection, as a second process would.
func (e *env) connect() (*nats.Conn, jetstream.JetStream) {
	e.t.Helper()
	nc, err := nats.Connect(e.conn.Embedded.ClientURL())
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		e.t.Fatal(err)
	}
	return nc, js
}

// push writes img to repo:tag in the registry host.
func (e *env) push(host string, img v1.Image, repo, tag string) *customsv1.ArtifactRef {
	e.t.Helper()
	d, err := fixtures.Push(context.Background(), img, e.registry+"/"+repo+":"+tag)
	if err != nil {
		e.t.Fatal(err)
	}
	return &customsv1.ArtifactRef{Registry: host, Repository: repo, Digest: d.String(), Tag: tag, MediaType: "application/vnd.oci.image.manifest.v1+json"}
}

// pushed publishes artifact.pushed for a.
func (e *env) pushed(a *customsv1.ArtifactRef) {
	e.t.Helper()
	evt := &customsv1.Event{
		Id:            backbone.EventID("pushed-test", a.GetRegistry(), a.GetRepository(), a.GetDigest()),
		Artifact:      a,
		OccurredAt:    timestamppb.Now(),
		CorrelationId: "corr-" + a.GetDigest(),
		Producer:      "test",
		Payload:       &customsv1.Event_Pushed{Pushed: &customsv1.ArtifactPushed{Source: "test"}},
	}
	if _, err := backbone.NewPublisher(e.conn.JS).Publish(context.Background(), evt); err != nil {
		e.t.Fatalf("publish pushed: %v", err)
	}
}

// results waits until the stream holds n scanned or failed events and
// returns every such event.
func (e *env) results(n int, timeout time.Duration) []*customsv1.Event {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var out []*customsv1.Event
	for {
		out = out[:0]
		cons, err := e.conn.JS.OrderedConsumer(ctx, backbone.StreamArtifacts, jetstream.OrderedConsumerConfig{
			FilterSubjects: []string{backbone.SubjectScanned, backbone.SubjectFailed},
		})
		if err != nil {
			e.t.Fatal(err)
		}
		for {
			batch, err := cons.FetchNoWait(100)
			if err != nil {
				e.t.Fatal(err)
			}
			got := 0
			for msg := range batch.Messages() {
				got++
				var evt customsv1.Event
				if err := proto.Unmarshal(msg.Data(), &evt); err != nil {
					e.t.Fatal(err)
				}
				out = append(out, &evt)
			}
			if got == 0 {
				break
			}
		}
		if len(out) >= n {
			return append([]*customsv1.Event(nil), out...)
		}
		select {
		case <-ctx.Done():
			e.t.Fatalf("waited %s for %d results, have %d: %v", timeout, n, len(out), out)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// goBinary builds the Go binary fixture once per test binary.
var goBinary = sync.OnceValues(func() ([]byte, error) {
	dir, err := os.MkdirTemp("", "customs-gobin-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	return fixtures.GoBinary(ctx, filepath.Join(dir, "src"))
})

// gateProxy is a reverse proxy to a registry that holds the first blob
// request until released, so a test can catch a scan mid-pull.
type gateProxy struct {
	host    string
	entered chan struct{}
	release chan struct{}
	once    sync.Once
}

func newGateProxy(t testing.TB, registry string) *gateProxy {
	t.Helper()
	target, _ := url.Parse("http://" + registry)
	rp := httputil.NewSingleHostReverseProxy(target)
	g := &gateProxy{entered: make(chan struct{}), release: make(chan struct{})}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Path, "/blobs/") {
			first := false
			g.once.Do(func() { first = true })
			if first {
				close(g.entered)
				select {
				case <-g.release:
				case <-r.Context().Done():
					return
				}
			}
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() {
		select {
		case <-g.release:
		default:
			close(g.release)
		}
	})
	g.host = strings.TrimPrefix(srv.URL, "http://")
	return g
}

func byDigest(evts []*customsv1.Event) map[string][]*customsv1.Event {
	m := map[string][]*customsv1.Event{}
	for _, e := range evts {
		m[e.GetArtifact().GetDigest()] = append(m[e.GetArtifact().GetDigest()], e)
	}
	return m
}

func findingKey(f *customsv1.Finding) string {
	return fmt.Sprintf("%s %s %s %s %s", f.GetVulnerabilityId(), f.GetPackageName(), f.GetInstalledVersion(), f.GetFixedVersion(), f.GetSeverity())
}
