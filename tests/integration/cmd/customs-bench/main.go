// Command customs-bench measures the walking skeleton on loopback: raw
// JetStream publishes (the ceiling), ingest webhooks end to end (HTTP in,
// JetStream ack, HTTP out) at full speed and at a fixed rate, and
// GetArtifact latency. Every loop is bounded in count and time. It prints a
// Markdown table for docs/benchmarks.md.
//
//	go run ./cmd/customs-bench -n 60000 -c 32
package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/stats"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	customsv1 "github.com/customs-dev/customs/gen/go/customs/v1"
	"github.com/customs-dev/customs/pkg/backbone"
	"github.com/customs-dev/customs/pkg/grpcserver"
	"github.com/customs-dev/customs/pkg/lifecycle"
	"github.com/customs-dev/customs/services/ingest/ingest"
	"github.com/customs-dev/customs/services/query/query"
)

const token = "bench-token"

func main() {
	var (
		total       = flag.Int("n", 60000, "webhooks (and raw publishes) in the full-speed runs")
		concurrency = flag.Int("c", 32, "concurrent publishers / HTTP clients")
		rate        = flag.Int("rate", 1000, "webhooks per second in the fixed-rate run")
		rateFor     = flag.Duration("rate-duration", 10*time.Second, "length of the fixed-rate run")
		gets        = flag.Int("gets", 20000, "GetArtifact calls")
		natsBench   = flag.String("nats-bench", "", "path to the natscli binary; when set, `nats bench` runs against the same server for the raw figure")
		dir         = flag.String("data-dir", "", "JetStream storage directory (default: a temporary one)")
		cpuProfile  = flag.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
		pubConns    = flag.Int("publish-connections", 4, "NATS connections ingest and the raw publishers spread publishes over")
		getClients  = flag.Int("get-clients", 4, "concurrent GetArtifact callers")
		envClient   = flag.String("env-client", "", "internal: run as the GetEnvironment caller against this address and print latencies")
		envView     = flag.Int("env-view", 0, "internal: the GetEnvironment view the caller asks for")
		envDecode   = flag.Bool("env-decode", true, "internal: whether the GetEnvironment caller decodes the responses")
	)
	flag.Parse()
	if *envClient != "" {
		if err := runEnvClient(*envClient, *gets, customsv1.EnvironmentView(*envView), *envDecode); err != nil {
			fmt.Fprintln(os.Stderr, "customs-bench:", err)
			os.Exit(1)
		}
		return
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "customs-bench:", err)
			os.Exit(1)
		}
		_ = pprof.StartCPUProfile(f)
		defer pprof.StopCPUProfile()
	}
	if err := run(*total, *concurrency, *rate, *rateFor, *gets, *getClients, *natsBench, *dir, *pubConns); err != nil {
		pprof.StopCPUProfile()
		fmt.Fprintln(os.Stderr, "customs-bench:", err)
		os.Exit(1)
	}
}

type result struct {
	name, value, note string
}

func run(total, concurrency, rate int, rateFor time.Duration, gets, getClients int, natsBin, dir string, pubConns int) error {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	if dir == "" {
		tmp, err := os.MkdirTemp("", "customs-bench-")
		if err != nil {
			return err
		}
		defer func() { _ = os.RemoveAll(tmp) }()
		dir = tmp
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	conn, err := backbone.Connect(ctx, backbone.ConnConfig{DataDir: dir, Port: -1, Name: "bench", PublishConnections: pubConns}, quiet)
	if err != nil {
		return err
	}
	defer conn.Close()
	if err := backbone.EnsureStreams(ctx, conn.JS, backbone.StreamConfig{}); err != nil {
		return err
	}
	var results []result
	results = append(results, result{"machine", fmt.Sprintf("%d CPUs, %s", runtime.NumCPU(), runtime.Version()), ""})

	raw, err := rawPublish(ctx, conn.JS, conn.Publisher(), total, concurrency)
	if err != nil {
		return err
	}
	results = append(results, result{"raw JetStream publish, file R1, 512 B, Nats-Msg-Id", fmt.Sprintf("%.0f msgs/s", raw), fmt.Sprintf("%d sync publishers over %d connections in this process", concurrency, pubConns)})
	if natsBin != "" {
		out, err := runNatsBench(ctx, natsBin, conn.Embedded.ClientURL(), total, concurrency)
		if err != nil {
			return err
		}
		results = append(results, result{"`nats bench` (natscli) JetStream publish", out, fmt.Sprintf("%d clients, sync, 512 B, file storage", concurrency)})
	}

	srv, err := ingest.NewService(ingest.ServiceConfig{DistributionToken: token}, conn.Publisher(), nil, quiet)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	go func() { _ = lifecycle.ServeHTTP(ctx, ln, srv.Handler(), quiet) }()
	url := "http://" + ln.Addr().String() + "/webhooks/distribution"
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: concurrency * 2, MaxConnsPerHost: concurrency * 2}, Timeout: 10 * time.Second}

	lat, elapsed, err := fullSpeed(ctx, client, url, total, concurrency)
	if err != nil {
		return err
	}
	results = append(results,
		result{"ingest end to end, full speed", fmt.Sprintf("%.0f webhooks/s", float64(total)/elapsed.Seconds()), fmt.Sprintf("%d clients, %d webhooks, each acked by JetStream before 200", concurrency, total)},
		result{"ingest latency at full speed", fmt.Sprintf("p50 %s, p99 %s", pct(lat, 50), pct(lat, 99)), ""})

	lat, err = fixedRate(ctx, client, url, rate, rateFor)
	if err != nil {
		return err
	}
	results = append(results, result{fmt.Sprintf("ingest latency at %d webhooks/s", rate), fmt.Sprintf("p50 %s, p99 %s, max %s", pct(lat, 50), pct(lat, 99), pct(lat, 100)), fmt.Sprintf("%d webhooks over %s, open loop", len(lat), rateFor)})

	getLat, n, err := getArtifact(ctx, conn, gets, getClients, quiet)
	if err != nil {
		return err
	}
	results = append(results, result{"GetArtifact latency", fmt.Sprintf("p50 %s, p99 %s", pct(getLat, 50), pct(getLat, 99)), fmt.Sprintf("%d calls over loopback gRPC, %d concurrent callers, %d artifacts in the projection", len(getLat), getClients, n)})

	envRuns, err := getEnvironment(ctx, conn, 1000, 2000, quiet)
	if err != nil {
		return err
	}
	for _, r := range envRuns {
		results = append(results,
			result{fmt.Sprintf("GetEnvironment, %s view, answer received by the caller", r.view), fmt.Sprintf("p50 %s, p99 %s", pct(r.received, 50), pct(r.received, 99)), fmt.Sprintf("%d calls, one after the other, from a Go client in its own process, %d applications, each scanned and signed: from the call to the whole %d KB response received, not decoded", len(r.received), r.apps, r.bytes/1000)},
			result{fmt.Sprintf("GetEnvironment, %s view, round trip with decoding", r.view), fmt.Sprintf("p50 %s, p99 %s", pct(r.decoded, 50), pct(r.decoded, 99)), "the same, with the client decoding each response into Go structs"},
			result{fmt.Sprintf("GetEnvironment, %s view, server answer time", r.view), fmt.Sprintf("p50 %s, p99 %s", pct(r.server, 50), pct(r.server, 99)), "the calls of both runs, from the call's arrival to its last byte handed to the transport (gRPC stats handler)"})
	}

	fmt.Println("| measurement | result | conditions |")
	fmt.Println("| --- | --- | --- |")
	for _, r := range results {
		fmt.Printf("| %s | %s | %s |\n", r.name, r.value, r.note)
	}
	return nil
}

func rawPublish(ctx context.Context, js jetstream.JetStream, pub *backbone.Publisher, total, concurrency int) (float64, error) {
	if _, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: "BENCH", Subjects: []string{"bench.>"}, Storage: jetstream.FileStorage}); err != nil {
		return 0, err
	}
	defer func() { _ = js.DeleteStream(context.Background(), "BENCH") }()
	payload := bytes.Repeat([]byte("x"), 512)
	var next atomic.Int64
	var firstErr atomic.Value
	start := time.Now()
	var wg sync.WaitGroup
	for range concurrency {
		wg.Go(func() {
			for {
				i := next.Add(1)
				if i > int64(total) {
					return
				}
				msg := &nats.Msg{Subject: "bench.raw", Data: payload}
				if _, err := pub.RawPublish(ctx, msg, jetstream.WithMsgID("raw-"+strconv.FormatInt(i, 10))); err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err, ok := firstErr.Load().(error); ok {
		return 0, err
	}
	return float64(total) / time.Since(start).Seconds(), nil
}

func runNatsBench(ctx context.Context, bin, url string, total, concurrency int) (string, error) {
	//nolint:gosec // bin is the natscli the operator named with -nats-bench
	cmd := exec.CommandContext(ctx, bin, "--server", url, "bench", "js", "pub", "sync", "natsbench.pub",
		"--msgs", strconv.Itoa(total), "--size", "512", "--clients", strconv.Itoa(concurrency),
		"--create", "--purge", "--storage", "file", "--dedup", "--no-progress")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("nats bench: %w\n%s", err, out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, "aggregated stats") || strings.Contains(line, "Pub stats") {
			return strings.TrimSpace(line), nil
		}
	}
	return strings.TrimSpace(string(out)), nil
}

// envelope is a Distribution notification for a unique manifest push.
func envelope(i int64) []byte {
	h := sha256.Sum256([]byte("bench-" + strconv.FormatInt(i, 10) + "-" + strconv.FormatInt(time.Now().UnixNano(), 10)))
	digest := "sha256:" + hex.EncodeToString(h[:])
	return fmt.Appendf(nil, `{"events":[{"id":"bench-%d-%s","timestamp":%q,"action":"push","target":{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":%q,"size":527,"repository":"bench/app%d","tag":"v1.0.%d"},"request":{"host":"registry.bench:5000"},"actor":{"name":"bench"}}]}`,
		i, digest[7:15], time.Now().UTC().Format(time.RFC3339Nano), digest, i%50, i)
}

func send(ctx context.Context, client *http.Client, url string, body []byte) (time.Duration, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", ingest.DistributionEventsV2)
	start := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	d := time.Since(start)
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("webhook answered %d", resp.StatusCode)
	}
	return d, nil
}

func fullSpeed(ctx context.Context, client *http.Client, url string, total, concurrency int) ([]time.Duration, time.Duration, error) {
	bodies := make([][]byte, total)
	for i := range bodies {
		bodies[i] = envelope(int64(i))
	}
	lat := make([]time.Duration, total)
	var next atomic.Int64
	var firstErr atomic.Value
	start := time.Now()
	var wg sync.WaitGroup
	for range concurrency {
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= int64(total) {
					return
				}
				d, err := send(ctx, client, url, bodies[i])
				if err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
				lat[i] = d
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if err, ok := firstErr.Load().(error); ok {
		return nil, 0, err
	}
	return lat, elapsed, nil
}

func fixedRate(ctx context.Context, client *http.Client, url string, rate int, d time.Duration) ([]time.Duration, error) {
	n := int(d.Seconds() * float64(rate))
	interval := time.Second / time.Duration(rate)
	lat := make([]time.Duration, n)
	errs := make(chan error, n)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range n {
		// Open loop: send on schedule whether or not earlier requests are done.
		if wait := time.Until(start.Add(time.Duration(i) * interval)); wait > 0 {
			time.Sleep(wait)
		}
		body := envelope(int64(1_000_000 + i))
		wg.Go(func() {
			dur, err := send(ctx, client, url, body)
			if err != nil {
				errs <- err
				return
			}
			lat[i] = dur
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return nil, err
	}
	return lat, nil
}

func getArtifact(ctx context.Context, conn *backbone.Conn, calls, clients int, log *slog.Logger) ([]time.Duration, int, error) {
	svc, err := query.NewService(ctx, query.ServiceConfig{Listen: "127.0.0.1:0"}, conn.JS, log)
	if err != nil {
		return nil, 0, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, 0, err
	}
	qctx, stop := context.WithCancel(ctx)
	defer stop()
	go func() { _ = svc.Run(qctx, ln) }()

	// Wait until the projection has caught up with what ingest published.
	st, err := conn.JS.Stream(ctx, backbone.StreamArtifacts)
	if err != nil {
		return nil, 0, err
	}
	info, err := st.Info(ctx)
	if err != nil {
		return nil, 0, err
	}
	want := int(info.State.Msgs)
	deadline := time.Now().Add(5 * time.Minute)
	for svc.ReadModel().Len() < want && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	all := svc.ReadModel().Snapshot(nil)
	if len(all) == 0 {
		return nil, 0, fmt.Errorf("projection is empty")
	}
	cc, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, 0, err
	}
	defer func() { _ = cc.Close() }()
	client := customsv1.NewArtifactServiceClient(cc)
	lat := make([]time.Duration, calls)
	var next atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	for range clients {
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= int64(calls) {
					return
				}
				a := all[int(i)%len(all)]
				start := time.Now()
				_, err := client.GetArtifact(ctx, &customsv1.GetArtifactRequest{Selector: &customsv1.GetArtifactRequest_Digest{Digest: a.GetDigest()}})
				lat[i] = time.Since(start)
				if err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err, ok := firstErr.Load().(error); ok {
		return nil, 0, err
	}
	return lat, len(all), nil
}

func pct(lat []time.Duration, p float64) string {
	s := slices.Clone(lat)
	slices.Sort(s)
	i := int(float64(len(s)-1) * p / 100)
	return s[i].Round(10 * time.Microsecond).String()
}

// envRun is the GetEnvironment measurement of one view.
type envRun struct {
	view                      string
	apps, bytes               int
	received, decoded, server []time.Duration
}

// getEnvironment promotes apps synthetic applications into one environment,
// each scanned and signed (the events the scanner, signer and promotion
// service publish), and times GetEnvironment over gRPC in each view once
// the query service shows them all.
func getEnvironment(ctx context.Context, conn *backbone.Conn, apps, calls int, log *slog.Logger) ([]envRun, error) {
	pub := conn.Publisher()
	keyID := "sha256:" + strings.Repeat("5e", 32)
	for i := range apps {
		h := sha256.Sum256([]byte("env-app-" + strconv.Itoa(i)))
		digest := "sha256:" + hex.EncodeToString(h[:])
		repo := fmt.Sprintf("bench/app%04d", i)
		target := "registry.bench:5000/prod/" + repo
		ref := &customsv1.ArtifactRef{Registry: "registry.bench:5000", Repository: repo, Digest: digest, MediaType: "application/vnd.oci.image.manifest.v1+json", Tag: "v1.0.0"}
		events := []*customsv1.Event{
			{Id: "bench-scanned-" + strconv.Itoa(i), Payload: &customsv1.Event_Scanned{Scanned: &customsv1.ArtifactScanned{Summary: &customsv1.ScanSummary{
				Counts: &customsv1.SeverityCounts{High: int32(i % 3), Medium: 2, Low: 5}, Scanner: "trivy", ScannerVersion: "0.74.1",
				DbVersion: "2@" + digest, PackageCount: 120, ScannedAt: timestamppb.Now(),
			}}}},
			{Id: "bench-signed-" + strconv.Itoa(i), Payload: &customsv1.Event_Signed{Signed: &customsv1.ArtifactSigned{
				SignatureDigest: digest, KeyId: keyID, Policy: "default",
				Attestations: []*customsv1.Attestation{{PredicateType: "https://cyclonedx.org/bom"}, {PredicateType: "https://slsa.dev/provenance/v1"}},
			}}},
			{Id: "bench-promoted-" + strconv.Itoa(i), Payload: &customsv1.Event_Promoted{Promoted: &customsv1.ArtifactPromoted{
				Environment: "bench-prod", TargetReference: target + "@" + digest, TargetTags: []string{"v1.0.0", "0a1b2c3"},
				Actor: "auto", RuleId: "bench", Reason: "benchmark",
			}}},
		}
		for _, evt := range events {
			evt.Artifact, evt.OccurredAt, evt.Producer = ref, timestamppb.Now(), "bench"
			if _, err := pub.Publish(ctx, evt); err != nil {
				return nil, err
			}
		}
	}
	opts, err := grpcserver.Config{}.ServerOptions()
	if err != nil {
		return nil, err
	}
	timer := &serverTimer{}
	svc, err := query.NewService(ctx, query.ServiceConfig{Listen: "127.0.0.1:0"}, conn.JS, log, append(opts, grpc.StatsHandler(timer))...)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	qctx, stop := context.WithCancel(ctx)
	defer stop()
	go func() { _ = svc.Run(qctx, ln) }()
	cc, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	defer func() { _ = cc.Close() }()
	client := customsv1.NewArtifactServiceClient(cc)
	ready := func(resp *customsv1.GetEnvironmentResponse) bool {
		ds := resp.GetEnvironment().GetDeployments()
		return len(ds) == apps && ds[apps-1].GetScanned() && ds[apps-1].GetSigningKeyId() == keyID
	}
	deadline := time.Now().Add(5 * time.Minute)
	for {
		resp, err := client.GetEnvironment(ctx, &customsv1.GetEnvironmentRequest{Name: "bench-prod"})
		if err == nil && ready(resp) {
			break
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("environment never reached %d scanned and signed applications: %w", apps, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	var runs []envRun
	for _, view := range []customsv1.EnvironmentView{customsv1.EnvironmentView_ENVIRONMENT_VIEW_BASIC, customsv1.EnvironmentView_ENVIRONMENT_VIEW_FULL} {
		resp, err := client.GetEnvironment(ctx, &customsv1.GetEnvironmentRequest{Name: "bench-prod", View: view})
		if err != nil {
			return nil, err
		}
		run := envRun{view: strings.ToLower(strings.TrimPrefix(view.String(), "ENVIRONMENT_VIEW_")), apps: apps, bytes: proto.Size(resp)}
		timer.reset()
		for _, decode := range []bool{false, true} {
			// The caller runs in its own process, as a real client does: its
			// decoding of the large response must not load this process's heap.
			//nolint:gosec // self is this benchmark's own executable
			out, err := exec.CommandContext(ctx, self, "-env-client", ln.Addr().String(), "-gets", strconv.Itoa(calls),
				"-env-view", strconv.Itoa(int(view)), "-env-decode="+strconv.FormatBool(decode)).Output()
			if err != nil {
				return nil, fmt.Errorf("GetEnvironment caller: %w", err)
			}
			var lat []time.Duration
			for _, f := range strings.Fields(string(out)) {
				ns, err := strconv.ParseInt(f, 10, 64)
				if err != nil {
					return nil, fmt.Errorf("GetEnvironment caller output: %w", err)
				}
				lat = append(lat, time.Duration(ns))
			}
			if decode {
				run.decoded = lat
			} else {
				run.received = lat
			}
		}
		run.server = timer.durations()
		runs = append(runs, run)
	}
	return runs, nil
}

// runEnvClient calls GetEnvironment calls times with a default client and
// prints each round trip in nanoseconds. Without decode, a call ends when
// gRPC has the whole response message: the answer as it arrives, before
// the client's own decoding.
func runEnvClient(addr string, calls int, view customsv1.EnvironmentView, decode bool) error {
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer func() { _ = cc.Close() }()
	client := customsv1.NewArtifactServiceClient(cc)
	ctx := context.Background()
	req := &customsv1.GetEnvironmentRequest{Name: "bench-prod", View: view}
	var received receivedBytes
	for i := range calls + 100 {
		start := time.Now()
		var err error
		if decode {
			_, err = client.GetEnvironment(ctx, req)
		} else {
			err = cc.Invoke(ctx, customsv1.ArtifactService_GetEnvironment_FullMethodName, req, &received, grpc.ForceCodecV2(countingCodec{}))
			if err == nil && received == 0 {
				err = errors.New("empty GetEnvironment response")
			}
		}
		if err != nil {
			return err
		}
		if i >= 100 { // the first calls warm the connection up
			fmt.Println(time.Since(start).Nanoseconds())
		}
	}
	return nil
}

// receivedBytes is what countingCodec "decodes" a response into: its size.
type receivedBytes int

// countingCodec encodes requests as protobuf and, instead of decoding a
// response, records its size.
type countingCodec struct{}

func (countingCodec) Marshal(v any) (mem.BufferSlice, error) {
	b, err := proto.Marshal(v.(proto.Message))
	if err != nil {
		return nil, err
	}
	return mem.BufferSlice{mem.SliceBuffer(b)}, nil
}

func (countingCodec) Unmarshal(data mem.BufferSlice, v any) error {
	*v.(*receivedBytes) = receivedBytes(data.Len())
	return nil
}

func (countingCodec) Name() string { return "proto" }

// serverTimer measures, on the server, from a call's arrival to its last
// byte sent: the time the server takes to answer, without the client's
// decoding.
type serverTimer struct {
	mu   sync.Mutex
	took []time.Duration
}

type beginKey struct{}

func (s *serverTimer) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context {
	return context.WithValue(ctx, beginKey{}, time.Now())
}

func (s *serverTimer) HandleRPC(ctx context.Context, st stats.RPCStats) {
	if _, ok := st.(*stats.End); ok {
		if begin, ok := ctx.Value(beginKey{}).(time.Time); ok {
			s.mu.Lock()
			s.took = append(s.took, time.Since(begin))
			s.mu.Unlock()
		}
	}
}

func (s *serverTimer) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context { return ctx }
func (s *serverTimer) HandleConn(context.Context, stats.ConnStats)                       {}

func (s *serverTimer) reset() {
	s.mu.Lock()
	s.took = nil
	s.mu.Unlock()
}

func (s *serverTimer) durations() []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.took)
}
