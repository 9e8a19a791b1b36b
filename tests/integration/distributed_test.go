package integration

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	customsv1 "github.com/customs-dev/customs/gen/go/customs/v1"
	"github.com/customs-dev/customs/pkg/backbone"
	"github.com/customs-dev/customs/pkg/testkit"
	"github.com/customs-dev/customs/services/scanner/fixtures"
	"github.com/customs-dev/customs/services/scanner/javadb"
	"github.com/customs-dev/customs/services/scanner/vulndb"
	"github.com/customs-dev/customs/services/signer/signer"
)

// buildBinaries builds the nats-server binary from its Go module and the
// Customs service binaries, once per test run.
var buildBinaries = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "customs-bin-")
	if err != nil {
		return "", err
	}
	for name, pkg := range map[string]string{
		"nats-server": "github.com/nats-io/nats-server/v2",
		"ingest":      "github.com/customs-dev/customs/services/ingest",
		"query":       "github.com/customs-dev/customs/services/query",
		"scanner":     "github.com/customs-dev/customs/services/scanner",
		"signer":      "github.com/customs-dev/customs/services/signer",
		"promotion":   "github.com/customs-dev/customs/services/promotion",
	} {
		out, err := exec.Command("go", "build", "-o", filepath.Join(dir, name), pkg).CombinedOutput()
		if err != nil {
			return "", fmt.Errorf("go build %s: %w\n%s", pkg, err, out)
		}
	}
	return dir, nil
})

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// process is a child process whose output goes to the test log.
type process struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
}

func start(t *testing.T, name, bin string, env []string, args ...string) *process {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	w := &logWriter{t: t, prefix: name}
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	p := &process{name: name, cmd: cmd, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() { p.stop() })
	return p
}

func (p *process) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(os.Interrupt)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// logWriter sends a child's output to the test log, until the test ends.
type logWriter struct {
	t      *testing.T
	prefix string
	mu     sync.Mutex
}

func (w *logWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, line := range strings.Split(strings.TrimRight(string(b), "\n"), "\n") {
		w.t.Log(w.prefix + ": " + line)
	}
	return len(b), nil
}

// Every service as its own OS process (two scanners) against a 3-node NATS
// cluster with replicated streams: an image goes through the whole chain,
// and the chain keeps working when a NATS node dies.
func TestProcessPerServiceOnNATSCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and starts a NATS cluster and service processes; skipped with -short")
	}
	bin, err := buildBinaries()
	if err != nil {
		t.Fatal(err)
	}

	const nodes = 3
	clientPorts, clusterPorts := make([]int, nodes), make([]int, nodes)
	for i := range nodes {
		clientPorts[i], clusterPorts[i] = freePort(t), freePort(t)
	}
	var routes, urls []string
	for i := range nodes {
		routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", clusterPorts[i]))
		urls = append(urls, fmt.Sprintf("nats://127.0.0.1:%d", clientPorts[i]))
	}
	natsNodes := make([]*process, nodes)
	for i := range nodes {
		natsNodes[i] = start(t, fmt.Sprintf("nats-%d", i), filepath.Join(bin, "nats-server"), nil,
			"-a", "127.0.0.1", "-p", fmt.Sprint(clientPorts[i]), "-n", fmt.Sprintf("n%d", i),
			"-js", "-sd", t.TempDir(),
			"--cluster_name", "customs", "--cluster", routes[i], "--routes", strings.Join(routes, ","))
	}
	natsURL := strings.Join(urls, ",")

	// Wait for the cluster to elect a JetStream leader and take R3 streams.
	conn, err := backbone.Connect(context.Background(), backbone.ConnConfig{URL: natsURL, Name: "test"}, testkit.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(conn.Close)
	eventuallyWithin(t, time.Minute, "R3 streams on the cluster", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		return backbone.EnsureStreams(ctx, conn.JS, backbone.StreamConfig{Replicas: 3})
	})

	ingestPort, grpcPort, adminPort := freePort(t), freePort(t), freePort(t)
	common := []string{"CUSTOMS_NATS_URL=" + natsURL, "CUSTOMS_STREAM_REPLICAS=3", "OTEL_TRACES_EXPORTER=none"}
	start(t, "ingest", filepath.Join(bin, "ingest"), append(common, "CUSTOMS_DISTRIBUTION_TOKEN="+webhookToken),
		"--ingest-listen", fmt.Sprintf("127.0.0.1:%d", ingestPort))
	start(t, "query", filepath.Join(bin, "query"), common,
		"--grpc-listen", fmt.Sprintf("127.0.0.1:%d", grpcPort), "--admin-listen", fmt.Sprintf("127.0.0.1:%d", adminPort))
	s := &stack{t: t, conn: conn, registry: testkit.Registry(t, fmt.Sprintf("http://127.0.0.1:%d/webhooks/distribution", ingestPort), webhookToken)}
	dbRef, _, err := vulndb.Publish(context.Background(), s.registry, vulndb.DefaultRepository)
	if err != nil {
		t.Fatal(err)
	}
	javaDBRef, err := javadb.Publish(context.Background(), s.registry, javadb.DefaultRepository, nil)
	if err != nil {
		t.Fatal(err)
	}
	keys, _, err := signer.EnsureKeyPair(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	rules := filepath.Join(t.TempDir(), "rules.yaml")
	if err := os.WriteFile(rules, []byte(chainRules), 0o600); err != nil {
		t.Fatal(err)
	}
	withRegistry := append(slices.Clone(common), "CUSTOMS_REGISTRIES="+s.registry+";plain-http")
	readyURLs := []string{fmt.Sprintf("http://127.0.0.1:%d/readyz", ingestPort), fmt.Sprintf("http://127.0.0.1:%d/readyz", adminPort)}
	for i := range 2 {
		port := freePort(t)
		start(t, fmt.Sprintf("scanner-%d", i), filepath.Join(bin, "scanner"), append(slices.Clone(withRegistry),
			"CUSTOMS_SCANNER_DB_REPOSITORY="+dbRef, "CUSTOMS_SCANNER_JAVA_DB_REPOSITORY="+javaDBRef, "CUSTOMS_SCANNER_CACHE_DIR="+t.TempDir()),
			"--admin-listen", fmt.Sprintf("127.0.0.1:%d", port))
		readyURLs = append(readyURLs, fmt.Sprintf("http://127.0.0.1:%d/readyz", port))
	}
	signerPort, promoPort := freePort(t), freePort(t)
	start(t, "signer", filepath.Join(bin, "signer"), append(slices.Clone(withRegistry),
		"CUSTOMS_SIGNER_KEY="+keys.PrivateKey, "CUSTOMS_SIGNER_KEY_PASSWORD_FILE="+keys.Password),
		"--admin-listen", fmt.Sprintf("127.0.0.1:%d", signerPort))
	start(t, "promotion", filepath.Join(bin, "promotion"), append(slices.Clone(withRegistry),
		"CUSTOMS_PROMOTION_RULES="+rules, "CUSTOMS_PROMOTION_PUBLIC_KEYS=signer="+keys.PublicKey),
		"--admin-listen", fmt.Sprintf("127.0.0.1:%d", promoPort))
	readyURLs = append(readyURLs, fmt.Sprintf("http://127.0.0.1:%d/readyz", signerPort), fmt.Sprintf("http://127.0.0.1:%d/readyz", promoPort))
	for _, url := range readyURLs {
		eventually(t, url, func() error {
			resp, err := http.Get(url)
			if err != nil {
				return err
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("%s = %d", url, resp.StatusCode)
			}
			return nil
		})
	}

	cc, err := grpc.NewClient(fmt.Sprintf("127.0.0.1:%d", grpcPort), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	client := customsv1.NewArtifactServiceClient(cc)
	ctx := context.Background()

	img, err := fixtures.Alpine()
	if err != nil {
		t.Fatal(err)
	}
	dg, err := fixtures.Push(ctx, img, s.registry+"/team/dist:v1.0.0")
	if err != nil {
		t.Fatal(err)
	}
	first := dg.String()
	// A cluster that just formed may still be electing consumer leaders.
	eventuallyWithin(t, 2*time.Minute, "artifact through the whole process chain", func() error {
		a, err := getByRef(ctx, client, "team/dist:v1.0.0")
		if err != nil {
			return err
		}
		if a.GetDigest() != first || a.GetState() != customsv1.ArtifactState_ARTIFACT_STATE_PROMOTED {
			return fmt.Errorf("digest %s state %v stages %v, want %s promoted", a.GetDigest(), a.GetState(), a.GetStages(), first)
		}
		if a.GetScan().GetCounts().GetMedium() == 0 || a.GetSignature().GetKeyId() == "" {
			return fmt.Errorf("no scan or signature: %v", a)
		}
		return nil
	})
	env, err := client.GetEnvironment(ctx, &customsv1.GetEnvironmentRequest{Name: "staging"})
	if err != nil {
		t.Fatal(err)
	}
	if d := env.GetEnvironment().GetDeployments(); len(d) != 1 || d[0].GetReference() != s.registry+"/staging/team/dist@"+first {
		t.Fatalf("staging = %v, want %s/staging/team/dist@%s", d, s.registry, first)
	}

	// Replicas 3 survive one node: stop a node and push again.
	natsNodes[0].stop()
	second := s.push("team/dist", "v1.0.1").String()
	eventuallyWithin(t, time.Minute, "artifact after a NATS node died", func() error {
		a, err := getByRef(ctx, client, "team/dist:v1.0.1")
		if err == nil && a.GetDigest() != second {
			return fmt.Errorf("digest %s, want %s", a.GetDigest(), second)
		}
		return err
	})
	info, err := conn.JS.Stream(ctx, backbone.StreamArtifacts)
	if err != nil {
		t.Fatal(err)
	}
	if r := info.CachedInfo().Config.Replicas; r != 3 {
		t.Fatalf("ARTIFACTS replicas = %d, want 3", r)
	}
}
