package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	customsv1 "github.com/customs-dev/customs/gen/go/customs/v1"
	"github.com/customs-dev/customs/pkg/backbone"
	"github.com/customs-dev/customs/pkg/testkit"
	"github.com/customs-dev/customs/services/query/query"
)

const digest = "sha256:6c3c624b58dbbcd3c0dd82b4c53f04194d1247c6eebdaab7c610cf7d66709b3b"

// startQuery runs a real query service on a real NATS, with one artifact
// pushed and scanned, and returns its address.
func startQuery(t *testing.T) string {
	t.Helper()
	conn := testkit.NATS(t)
	ctx, cancel := context.WithCancel(context.Background())
	svc, err := query.NewService(ctx, query.ServiceConfig{Listen: "127.0.0.1:0"}, conn.JS, testkit.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx, ln) }()
	t.Cleanup(func() { cancel(); <-done })

	ref := &customsv1.ArtifactRef{Registry: "localhost:5000", Repository: "team/app", Digest: digest, MediaType: "application/vnd.oci.image.manifest.v1+json", Tag: "v1.2.3"}
	pub := backbone.NewPublisher(conn.JS)
	now := timestamppb.New(time.Now())
	events := []*customsv1.Event{
		{Id: "p1", Artifact: ref, OccurredAt: now, Payload: &customsv1.Event_Pushed{Pushed: &customsv1.ArtifactPushed{Source: "distribution", Actor: "ci"}}},
		{Id: "s1", Artifact: ref, OccurredAt: now, Payload: &customsv1.Event_Scanned{Scanned: &customsv1.ArtifactScanned{
			Summary:  &customsv1.ScanSummary{Counts: &customsv1.SeverityCounts{High: 1}, Scanner: "trivy", ScannerVersion: "0.74.0", DbVersion: "2"},
			Findings: []*customsv1.Finding{{VulnerabilityId: "CVE-2024-45337", PackageName: "golang.org/x/crypto", InstalledVersion: "v0.30.0", FixedVersion: "0.31.0", Severity: customsv1.Severity_SEVERITY_HIGH, Title: "Misuse of ServerConfig.PublicKeyCallback"}},
		}}},
		{Id: "pr1", Artifact: ref, OccurredAt: now, Payload: &customsv1.Event_Promoted{Promoted: &customsv1.ArtifactPromoted{
			Environment: "staging", TargetReference: "localhost:5000/staging/team/app@" + digest, TargetTags: []string{"v1.2.3"}, Actor: "auto", RuleId: "team-apps",
		}}},
		{Id: "rj1", Artifact: ref, OccurredAt: now, Payload: &customsv1.Event_Rejected{Rejected: &customsv1.ArtifactRejected{
			Stage: customsv1.Stage_STAGE_PROMOTE, Environment: "prod", Reason: "must be promoted to qa before prod", ReasonCode: "environment_order",
		}}},
	}
	store, err := backbone.EnsureReportStore(ctx, conn.JS, 1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.PutBytes(ctx, backbone.ReportObject(digest), []byte(`{"SchemaVersion":2}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := store.PutBytes(ctx, backbone.SBOMObject(digest), []byte(`{"bomFormat":"CycloneDX"}`)); err != nil {
		t.Fatal(err)
	}
	for _, ev := range events {
		if _, err := pub.Publish(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if a, ok := svc.ReadModel().Get(digest); ok && a.GetScan() != nil && len(a.GetPromotions()) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("artifact never reached the read model")
		}
		time.Sleep(10 * time.Millisecond)
	}
	return ln.Addr().String()
}

func exec(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = run(context.Background(), args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestCommands(t *testing.T) {
	t.Parallel()
	addr := startQuery(t)
	tests := []struct {
		name     string
		args     []string
		wantCode int
		want     []string
		check    func(t *testing.T, stdout string)
	}{
		{name: "get by reference", args: []string{"get", "--server", addr, "localhost:5000/team/app:v1.2.3"}, want: []string{digest, "promoted", "localhost:5000/team/app:v1.2.3", "critical 0, high 1", "ingest", "succeeded", "assigned"}},
		{name: "get json", args: []string{"get", "--server", addr, "-o", "json", digest}, check: func(t *testing.T, out string) {
			var a map[string]any
			if err := json.Unmarshal([]byte(out), &a); err != nil || a["digest"] != digest || a["state"] != "ARTIFACT_STATE_PROMOTED" {
				t.Fatalf("json %v (%v)", a, err)
			}
		}},
		{name: "list", args: []string{"list", "--server", addr, "--repo", "team/app"}, want: []string{"sha256:6c3c624b58db", "promoted", "team/app:v1.2.3"}},
		{name: "list by state", args: []string{"list", "--server", addr, "--state", "rejected"}, check: func(t *testing.T, out string) {
			if strings.Contains(out, "sha256:") {
				t.Fatalf("rejected list shows %s", out)
			}
		}},
		{name: "history", args: []string{"history", "--server", addr, "team/app:v1.2.3"}, want: []string{"artifact.pushed", "artifact.scanned", "via distribution by ci", "critical 0, high 1"}},
		{name: "report", args: []string{"report", "--server", addr, digest}, want: []string{"CVE-2024-45337", "golang.org/x/crypto", "v0.30.0", "0.31.0", "high", "trivy 0.74.0"}},
		{name: "report trivy json", args: []string{"report", "--server", addr, "--trivy-json", digest}, want: []string{`"SchemaVersion":2`}},
		{name: "sbom", args: []string{"sbom", "--server", addr, digest}, want: []string{"CycloneDX"}},
		{name: "env", args: []string{"env", "--server", addr, "staging"}, want: []string{"localhost:5000/staging/team/app", "localhost:5000/staging/team/app@" + digest, "v1.2.3", "auto", "team-apps", "C0 H1 M0 L0"}},
		{name: "env basic view", args: []string{"env", "--server", addr, "--view", "basic", "staging"}, want: []string{"localhost:5000/staging/team/app@" + digest, "v1.2.3", "high, 1 finding"}},
		{name: "env bad view", args: []string{"env", "--server", addr, "--view", "wide", "staging"}, wantCode: 2, want: []string{"--view must be basic or full"}},
		{name: "empty env", args: []string{"env", "--server", addr, "prod"}, wantCode: 1, want: []string{`not found: nothing has been promoted to environment "prod"`}},
		{name: "promotions", args: []string{"promotions", "--server", addr, "--env", "staging"}, want: []string{"staging", "localhost:5000/staging/team/app@" + digest}},
		{name: "rescan", args: []string{"rescan", "--server", addr, "team/app:v1.2.3"}, want: []string{"rescan of sha256:6c3c624b58db queued (event rescan-"}},
		{name: "promote without a promotion service", args: []string{"promote", "--server", addr, "--env", "prod", "--reason", "release", "--actor", "alice", digest}, wantCode: 1, want: []string{"promotion"}},
		{name: "promote needs a reason", args: []string{"promote", "--server", addr, "--env", "prod", digest}, wantCode: 2, want: []string{"--reason"}},
		{name: "not found", args: []string{"get", "--server", addr, "team/none:v1"}, wantCode: 1, want: []string{"not found: no artifact is tagged team/none:v1"}},
		{name: "bad digest", args: []string{"history", "--server", addr, "sha256:xyz"}, wantCode: 1, want: []string{"invalid request"}},
		{name: "bad output", args: []string{"get", "--server", addr, "-o", "yaml", digest}, wantCode: 2, want: []string{"-o must be table or json"}},
		{name: "missing argument", args: []string{"get", "--server", addr}, wantCode: 2, want: []string{"want one digest"}},
		{name: "unknown command", args: []string{"frobnicate"}, wantCode: 2, want: []string{`unknown command "frobnicate"`}},
		{name: "unreachable", args: []string{"get", "--server", "127.0.0.1:1", "--timeout", "2s", digest}, wantCode: 1, want: []string{"cannot reach Customs at 127.0.0.1:1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			code, stdout, stderr := exec(t, tt.args...)
			if code != tt.wantCode {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tt.wantCode, stdout, stderr)
			}
			for _, w := range tt.want {
				if !strings.Contains(stdout+stderr, w) {
					t.Errorf("output lacks %q\nstdout: %s\nstderr: %s", w, stdout, stderr)
				}
			}
			if strings.Contains(stderr, "goroutine ") || strings.Contains(stderr, "panic") {
				t.Errorf("stderr has a stack trace: %s", stderr)
			}
			if tt.check != nil {
				tt.check(t, stdout)
			}
		})
	}
}

func TestWatchStreamsChanges(t *testing.T) {
	t.Parallel()
	addr := startQuery(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var out, errOut syncBuffer
	done := make(chan int, 1)
	go func() { done <- run(ctx, []string{"watch", "--server", addr, "--initial"}, &out, &errOut) }()
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(out.String(), "sha256:6c3c624b58db") {
		if time.Now().After(deadline) {
			t.Fatalf("watch printed %q (stderr %q)", out.String(), errOut.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !strings.Contains(out.String(), "promote succeeded") {
		t.Errorf("watch line lacks the last stage: %q", out.String())
	}
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("watch exited %d after cancel: %s", code, errOut.String())
	}
}
