package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	customsv1 "github.com/customs-dev/customs/gen/go/customs/v1"
	"github.com/customs-dev/customs/pkg/backbone"
	"github.com/customs-dev/customs/pkg/testkit"
	"github.com/customs-dev/customs/services/ingest/ingest"
)

const pushDigest = "sha256:954b378c375d852eb3c63ab88978f640b4348b01c1b3456a024a81536dafbbf4"

// TestPushEventToRealIngest sends a push event to a real ingest on a real
// NATS and reads the stored artifact.pushed back.
func TestPushEventToRealIngest(t *testing.T) {
	t.Parallel()
	conn := testkit.NATS(t)
	ci, err := ingest.NewCIPush(ingest.CIPushConfig{Token: "ci-token"})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := ingest.NewServer(ingest.Config{Logger: testkit.Logger(t)}, backbone.NewPublisher(conn.JS), ci)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)

	args := []string{"push-event", "--url", ts.URL, "--token", "ci-token",
		"--reference", "registry.example.com/team/app:v1.2.3", "--digest", pushDigest,
		"--git-sha", "0123456789abcdef0123456789abcdef01234567", "--semver", "v1.2.3",
		"--source-repository", "https://github.com/acme/app", "--builder", "https://github.com/acme/app/.github/workflows/release.yml@refs/tags/v1.2.3",
		"--build-url", "https://github.com/acme/app/actions/runs/1/attempts/1", "--event-id", "run-1"}
	code, stdout, stderr := exec(t, args...)
	if code != 0 {
		t.Fatalf("exit %d: %s%s", code, stdout, stderr)
	}
	if !strings.Contains(stdout, "recorded registry.example.com/team/app:v1.2.3@"+pushDigest) {
		t.Fatalf("stdout = %q", stdout)
	}
	// The same event again is stored once, and says so.
	if code, stdout, _ := exec(t, args...); code != 0 || !strings.Contains(stdout, "already recorded") {
		t.Fatalf("re-send: exit %d, %q", code, stdout)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := conn.JS.Stream(ctx, backbone.StreamArtifacts)
	if err != nil {
		t.Fatal(err)
	}
	msg, err := st.GetLastMsgForSubject(ctx, backbone.SubjectPushed)
	if err != nil {
		t.Fatal(err)
	}
	evt := &customsv1.Event{}
	if err := proto.Unmarshal(msg.Data, evt); err != nil {
		t.Fatal(err)
	}
	want := &customsv1.Provenance{
		SourceRepository: "https://github.com/acme/app", GitSha: "0123456789abcdef0123456789abcdef01234567", Semver: "v1.2.3",
		Builder: "https://github.com/acme/app/.github/workflows/release.yml@refs/tags/v1.2.3", BuildUrl: "https://github.com/acme/app/actions/runs/1/attempts/1",
	}
	if !proto.Equal(evt.GetPushed().GetProvenance(), want) || evt.GetArtifact().GetDigest() != pushDigest || evt.GetPushed().GetSource() != "ci" {
		t.Fatalf("stored event = %v", evt)
	}
	info, err := st.Info(ctx, jetstream.WithSubjectFilter(backbone.SubjectPushed))
	if err != nil || info.State.Msgs != 1 {
		t.Fatalf("stream holds %v pushed events (%v), want 1", info.State.Msgs, err)
	}

	// Refusals from the real server read as sentences.
	code, _, stderr = exec(t, "push-event", "--url", ts.URL, "--token", "ci-token", "--reference", "registry.example.com/team/app:v1", "--digest", pushDigest, "--git-sha", "nope")
	if code != 1 || !strings.Contains(stderr, "the push event was refused") || !strings.Contains(stderr, "git_sha") {
		t.Fatalf("bad git sha: exit %d, %q", code, stderr)
	}
	code, _, stderr = exec(t, "push-event", "--url", ts.URL, "--token", "wrong", "--reference", "registry.example.com/team/app:v1", "--digest", pushDigest)
	if code != 1 || !strings.Contains(stderr, "the token was refused") {
		t.Fatalf("wrong token: exit %d, %q", code, stderr)
	}
}

func TestPushEventErrors(t *testing.T) {
	t.Parallel()
	var calls atomic.Int32
	busy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if calls.Add(1) == 1 {
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = io.WriteString(w, `{"error":"event backbone unavailable","reason":"retry later"}`)
			return
		}
		w.WriteHeader(http.StatusOK)
		_, _ = io.WriteString(w, `{"accepted":[{"registry":"r.example.com","repository":"a/b","digest":"`+pushDigest+`","event_id":"pushed-1"}],"ignored":[]}`)
	}))
	t.Cleanup(busy.Close)
	notFound := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(notFound.Close)
	dead := httptest.NewServer(http.NotFoundHandler())
	deadURL := dead.URL
	dead.Close()

	base := []string{"--token", "t", "--reference", "r.example.com/a/b:v1", "--digest", pushDigest}
	tests := []struct {
		name     string
		args     []string
		wantCode int
		want     string
	}{
		{name: "retries a 503", args: append([]string{"push-event", "--url", busy.URL}, base...), want: "recorded r.example.com/a/b@" + pushDigest},
		{name: "no push API", args: append([]string{"push-event", "--url", notFound.URL}, base...), wantCode: 1, want: "has no CI push API"},
		{name: "unreachable", args: append([]string{"push-event", "--url", deadURL, "--retries", "0"}, base...), wantCode: 1, want: "cannot reach Customs ingest"},
		{name: "no url", args: append([]string{"push-event", "--url", ""}, base...), wantCode: 2, want: "--url is required"},
		{name: "url without scheme", args: append([]string{"push-event", "--url", "ingest:8080"}, base...), wantCode: 2, want: "must start with http"},
		{name: "no digest", args: []string{"push-event", "--url", busy.URL, "--token", "t", "--reference", "r.example.com/a/b:v1"}, wantCode: 2, want: "--digest is required"},
		{name: "no token", args: []string{"push-event", "--url", busy.URL, "--token", "", "--reference", "r.example.com/a/b@" + pushDigest}, wantCode: 2, want: "--token is required"},
		{name: "stray argument", args: append([]string{"push-event", "--url", busy.URL, "extra"}, base...), wantCode: 2, want: "unexpected argument"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := exec(t, tt.args...)
			if code != tt.wantCode || !strings.Contains(stdout+stderr, tt.want) {
				t.Fatalf("exit %d (want %d), output %q, want %q", code, tt.wantCode, stdout+stderr, tt.want)
			}
			if strings.Contains(stderr, "goroutine ") || strings.Contains(stderr, "panic") {
				t.Fatalf("stack trace: %s", stderr)
			}
		})
	}
}

// TestPushEventReadsCIEnvironment checks a GitHub Actions step needs only
// the reference and digest.
func TestPushEventReadsCIEnvironment(t *testing.T) {
	for k, v := range map[string]string{
		"CUSTOMS_CI_TOKEN": "env-token", "GITHUB_SHA": "89abcdef0123456789abcdef0123456789abcdef",
		"GITHUB_SERVER_URL": "https://github.com", "GITHUB_REPOSITORY": "acme/app",
		"GITHUB_WORKFLOW_REF": "acme/app/.github/workflows/release.yml@refs/heads/main",
		"GITHUB_RUN_ID":       "42", "GITHUB_RUN_ATTEMPT": "2", "GITHUB_ACTOR": "octocat",
	} {
		t.Setenv(k, v)
	}
	got := make(chan map[string]string, 1)
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body map[string]string
		_ = json.NewDecoder(r.Body).Decode(&body)
		body["authorization"] = r.Header.Get("Authorization")
		body["path"] = r.URL.Path
		got <- body
		_, _ = io.WriteString(w, `{"accepted":[],"ignored":[]}`)
	}))
	t.Cleanup(ts.Close)
	t.Setenv("CUSTOMS_INGEST_URL", ts.URL+"/")
	if code, stdout, stderr := exec(t, "push-event", "--reference", "ghcr.io/acme/app:v1", "--digest", pushDigest); code != 0 {
		t.Fatalf("exit %d: %s%s", code, stdout, stderr)
	}
	body := <-got
	want := map[string]string{
		"authorization": "Bearer env-token", "path": "/v1/push-events",
		"reference": "ghcr.io/acme/app:v1", "digest": pushDigest,
		"git_sha": "89abcdef0123456789abcdef0123456789abcdef", "source_repository": "https://github.com/acme/app",
		"builder":   "https://github.com/acme/app/.github/workflows/release.yml@refs/heads/main",
		"build_url": "https://github.com/acme/app/actions/runs/42/attempts/2", "actor": "octocat",
	}
	for k, v := range want {
		if body[k] != v {
			t.Errorf("%s = %q, want %q", k, body[k], v)
		}
	}
}
