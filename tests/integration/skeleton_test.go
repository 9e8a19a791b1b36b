package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	customsv1 "github.com/customs-dev/customs/gen/go/customs/v1"
	"github.com/customs-dev/customs/services/ingest/ingest"
	"github.com/customs-dev/customs/services/query/query"
)

func getByDigest(ctx context.Context, c customsv1.ArtifactServiceClient, digest string) (*customsv1.Artifact, error) {
	resp, err := c.GetArtifact(ctx, &customsv1.GetArtifactRequest{Selector: &customsv1.GetArtifactRequest_Digest{Digest: digest}})
	return resp.GetArtifact(), err
}

func getByRef(ctx context.Context, c customsv1.ArtifactServiceClient, ref string) (*customsv1.Artifact, error) {
	resp, err := c.GetArtifact(ctx, &customsv1.GetArtifactRequest{Selector: &customsv1.GetArtifactRequest_Reference{Reference: ref}})
	return resp.GetArtifact(), err
}

func TestPushedImageIsQueryableByDigestAndTag(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	ctx := context.Background()
	digest := s.push("team/app", "v1.2.3").String()

	var got *customsv1.Artifact
	eventually(t, "artifact by digest", func() (err error) {
		got, err = getByDigest(ctx, s.client, digest)
		return err
	})
	if got.GetState() != customsv1.ArtifactState_ARTIFACT_STATE_PUSHED {
		t.Errorf("state = %v, want PUSHED", got.GetState())
	}
	if len(got.GetLocations()) != 1 || got.GetLocations()[0].GetRepository() != "team/app" || got.GetLocations()[0].GetRegistry() != s.registry {
		t.Errorf("locations = %v, want %s/team/app", got.GetLocations(), s.registry)
	}
	if got.GetMediaType() != "application/vnd.oci.image.manifest.v1+json" && got.GetMediaType() != "application/vnd.docker.distribution.manifest.v2+json" {
		t.Errorf("media type = %q", got.GetMediaType())
	}
	if len(got.GetTraceId()) != 32 {
		t.Errorf("trace id = %q, want a W3C trace id", got.GetTraceId())
	}
	if st := got.GetStages(); len(st) != 1 || st[0].GetStage() != customsv1.Stage_STAGE_INGEST || st[0].GetUpdatedAt() == nil {
		t.Errorf("stages = %v, want one timestamped ingest stage", st)
	}

	for _, ref := range []string{s.registry + "/team/app:v1.2.3", "team/app:v1.2.3", s.registry + "/team/app@" + digest} {
		a, err := getByRef(ctx, s.client, ref)
		if err != nil {
			t.Errorf("GetArtifact(%q): %v", ref, err)
			continue
		}
		if a.GetDigest() != digest {
			t.Errorf("GetArtifact(%q) digest = %s, want %s", ref, a.GetDigest(), digest)
		}
	}
	hist, err := s.client.GetArtifactHistory(ctx, &customsv1.GetArtifactHistoryRequest{Digest: digest})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(hist.GetEntries()); n != 1 || hist.GetEntries()[0].GetSubject() != "artifact.pushed" {
		t.Fatalf("history = %v, want one artifact.pushed", hist.GetEntries())
	}
	if ev := hist.GetEntries()[0].GetEvent(); ev.GetPushed().GetSource() != "distribution" || ev.GetArtifact().GetTag() != "v1.2.3" {
		t.Errorf("pushed event = %v", ev)
	}
}

func TestResentWebhookIsNotDuplicated(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	ctx := context.Background()
	digest := s.push("team/dedup", "v1").String()
	eventually(t, "artifact", func() error { _, err := getByDigest(ctx, s.client, digest); return err })

	sent := s.recorder.find(digest)
	var manifestPush *recordedRequest
	for i := range sent {
		parsed, err := ingest.ParseDistributionEnvelope(sent[i].body, "")
		if err == nil && len(parsed.Pushes) == 1 && parsed.Pushes[0].Artifact.GetDigest() == digest {
			manifestPush = &sent[i]
		}
	}
	if manifestPush == nil {
		t.Fatalf("the registry sent no manifest push webhook mentioning %s (got %d)", digest, len(sent))
	}
	before := s.streamMsgs()
	for range 3 {
		req, _ := http.NewRequest(http.MethodPost, s.ingest+manifestPush.path, bytes.NewReader(manifestPush.body))
		req.Header = manifestPush.header.Clone()
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var body ingest.Response
		_ = json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || len(body.Accepted) != 1 || !body.Accepted[0].Duplicate {
			t.Fatalf("re-sent webhook: status %d, body %+v; want 200 with one duplicate", resp.StatusCode, body)
		}
	}
	if after := s.streamMsgs(); after != before {
		t.Fatalf("stream went from %d to %d messages after re-sending a webhook", before, after)
	}
	hist, err := s.client.GetArtifactHistory(ctx, &customsv1.GetArtifactHistoryRequest{Digest: digest})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(hist.GetEntries()); n != 1 {
		t.Fatalf("history has %d entries, want 1", n)
	}
}

func TestBadWebhooksAreRejectedAndNothingIsPublished(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	const dg = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	valid := `{"events":[{"id":"e1","timestamp":"2026-01-02T03:04:05Z","action":"push","target":{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"` + dg + `","repository":"team/app","tag":"v1"},"request":{"host":"reg.example:5000"}}]}`
	tests := []struct {
		name       string
		auth       string
		ctype      string
		body       string
		wantStatus int
		wantReason string
	}{
		{name: "no token", body: valid, wantStatus: 401, wantReason: "missing Authorization"},
		{name: "wrong token", auth: "Bearer nope", body: valid, wantStatus: 403, wantReason: "wrong token"},
		{name: "basic auth", auth: "Basic dXNlcjpwYXNz", body: valid, wantStatus: 401, wantReason: "Bearer"},
		{name: "bad json", auth: "Bearer " + webhookToken, body: `{"events":[`, wantStatus: 400, wantReason: "malformed"},
		{name: "no events", auth: "Bearer " + webhookToken, body: `{}`, wantStatus: 400, wantReason: "events"},
		{name: "bad digest", auth: "Bearer " + webhookToken, body: strings.Replace(valid, dg, "sha256:abc", 1), wantStatus: 400, wantReason: "digest"},
		{name: "missing repository", auth: "Bearer " + webhookToken, body: strings.Replace(valid, `"repository":"team/app",`, "", 1), wantStatus: 400, wantReason: "repository"},
		{name: "wrong content type", auth: "Bearer " + webhookToken, ctype: "text/plain", body: valid, wantStatus: 415, wantReason: "Content-Type"},
		{name: "oversized", auth: "Bearer " + webhookToken, body: `{"events":[` + strings.Repeat(" ", 70<<10) + `]}`, wantStatus: 413, wantReason: "limit"},
		{name: "blob push only", auth: "Bearer " + webhookToken, body: strings.Replace(valid, "application/vnd.oci.image.manifest.v1+json", "application/vnd.oci.image.layer.v1.tar+gzip", 1), wantStatus: 202, wantReason: "blob"},
		{name: "pull only", auth: "Bearer " + webhookToken, body: strings.Replace(valid, `"action":"push"`, `"action":"pull"`, 1), wantStatus: 202, wantReason: "not a push"},
	}
	before := s.streamMsgs()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodPost, s.ingest+"/webhooks/distribution", strings.NewReader(tt.body))
			ct := tt.ctype
			if ct == "" {
				ct = ingest.DistributionEventsV2
			}
			req.Header.Set("Content-Type", ct)
			if tt.auth != "" {
				req.Header.Set("Authorization", tt.auth)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.wantStatus || !strings.Contains(string(body), tt.wantReason) {
				t.Fatalf("status %d body %s; want %d mentioning %q", resp.StatusCode, body, tt.wantStatus, tt.wantReason)
			}
		})
	}
	if after := s.streamMsgs(); after != before {
		t.Fatalf("rejected webhooks published %d events", after-before)
	}
}

func TestQueryStateSurvivesRestartAndRebuild(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	ctx := context.Background()
	d1 := s.push("team/restart", "v1").String()
	d2 := s.push("team/restart", "v2").String()
	for _, d := range []string{d1, d2} {
		eventually(t, "artifact "+d, func() error { _, err := getByDigest(ctx, s.client, d); return err })
	}

	s.stopQuery()
	s.startQuery(query.ServiceConfig{})
	eventually(t, "state after restart", func() error {
		a, err := getByRef(ctx, s.client, "team/restart:v2")
		if err == nil && a.GetDigest() != d2 {
			return fmt.Errorf("team/restart:v2 = %s, want %s", a.GetDigest(), d2)
		}
		return err
	})

	// Losing the projection entirely: --rebuild replays the stream.
	s.stopQuery()
	s.startQuery(query.ServiceConfig{Rebuild: true})
	for _, d := range []string{d1, d2} {
		eventually(t, "rebuilt artifact "+d, func() error {
			hist, err := s.client.GetArtifactHistory(ctx, &customsv1.GetArtifactHistoryRequest{Digest: d})
			if err == nil && len(hist.GetEntries()) != 1 {
				return fmt.Errorf("history has %d entries after rebuild, want 1", len(hist.GetEntries()))
			}
			return err
		})
	}
}

func TestTagMoveIsRecorded(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	ctx := context.Background()
	first := s.push("team/moving", "v1").String()
	eventually(t, "first", func() error { _, err := getByDigest(ctx, s.client, first); return err })
	second := s.push("team/moving", "v1").String()
	eventually(t, "tag moved", func() error {
		a, err := getByRef(ctx, s.client, "team/moving:v1")
		if err == nil && a.GetDigest() != second {
			return fmt.Errorf("team/moving:v1 = %s, want %s", a.GetDigest(), second)
		}
		return err
	})
	eventually(t, "old digest lost the tag", func() error {
		old, err := getByDigest(ctx, s.client, first)
		if err != nil {
			return err
		}
		if tags := old.GetLocations()[0].GetTags(); len(tags) != 0 {
			return fmt.Errorf("old digest still has tags %v", tags)
		}
		th := old.GetTagHistory()
		if len(th) != 2 || th[1].GetAction() != customsv1.TagAction_TAG_ACTION_MOVED_AWAY || th[1].GetOtherDigest() != second {
			return fmt.Errorf("old tag history = %v, want ASSIGNED then MOVED_AWAY to %s", th, second)
		}
		return nil
	})
	cur, err := getByDigest(ctx, s.client, second)
	if err != nil {
		t.Fatal(err)
	}
	th := cur.GetTagHistory()
	if len(th) != 1 || th[0].GetAction() != customsv1.TagAction_TAG_ACTION_MOVED_IN || th[0].GetOtherDigest() != first {
		t.Fatalf("new tag history = %v, want MOVED_IN from %s", th, first)
	}
}

func TestListAndWatch(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	watch, err := s.client.WatchArtifacts(ctx, &customsv1.WatchArtifactsRequest{Repository: "team/listed"})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{}
	for i := range 3 {
		want[s.push("team/listed", fmt.Sprintf("v0.0.%d", i)).String()] = true
	}
	s.push("team/other", "v1")
	seen := map[string]bool{}
	for len(seen) < len(want) {
		msg, err := watch.Recv()
		if err != nil {
			t.Fatalf("watch: %v (saw %d of %d)", err, len(seen), len(want))
		}
		d := msg.GetArtifact().GetDigest()
		if !want[d] {
			t.Fatalf("watch sent %s, which is not in team/listed", d)
		}
		seen[d] = true
	}

	var listed []string
	token := ""
	for page := 0; ; page++ {
		resp, err := s.client.ListArtifacts(ctx, &customsv1.ListArtifactsRequest{Repository: "team/listed", PageSize: 2, PageToken: token})
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range resp.GetArtifacts() {
			listed = append(listed, a.GetDigest())
		}
		if token = resp.GetNextPageToken(); token == "" {
			break
		}
		if page > 3 {
			t.Fatal("too many pages")
		}
	}
	if len(listed) != 3 {
		t.Fatalf("listed %d artifacts, want 3: %v", len(listed), listed)
	}
	for _, d := range listed {
		if !want[d] {
			t.Errorf("listed %s, not pushed to team/listed", d)
		}
	}
}

func TestQueryErrorsCarryCodes(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	ctx := context.Background()
	tests := []struct {
		name string
		call func() error
		want codes.Code
	}{
		{"bad digest", func() error { _, err := getByDigest(ctx, s.client, "sha256:nope"); return err }, codes.InvalidArgument},
		{"unknown digest", func() error {
			_, err := getByDigest(ctx, s.client, "sha256:"+strings.Repeat("a", 64))
			return err
		}, codes.NotFound},
		{"bad reference", func() error { _, err := getByRef(ctx, s.client, "UPPER/case:v1"); return err }, codes.InvalidArgument},
		{"unknown tag", func() error { _, err := getByRef(ctx, s.client, "team/none:v1"); return err }, codes.NotFound},
		{"no selector", func() error { _, err := s.client.GetArtifact(ctx, &customsv1.GetArtifactRequest{}); return err }, codes.InvalidArgument},
		{"bad page token", func() error {
			_, err := s.client.ListArtifacts(ctx, &customsv1.ListArtifactsRequest{PageToken: "!!"})
			return err
		}, codes.InvalidArgument},
		{"history of unknown digest", func() error {
			_, err := s.client.GetArtifactHistory(ctx, &customsv1.GetArtifactHistoryRequest{Digest: "sha256:" + strings.Repeat("b", 64)})
			return err
		}, codes.NotFound},
		{"report of unknown digest", func() error {
			_, err := s.client.GetVulnerabilityReport(ctx, &customsv1.GetVulnerabilityReportRequest{Digest: "sha256:" + strings.Repeat("c", 64)})
			return err
		}, codes.NotFound},
	}
	for _, tt := range tests {
		err := tt.call()
		if st, _ := status.FromError(err); st.Code() != tt.want {
			t.Errorf("%s: %v, want code %v", tt.name, err, tt.want)
		}
		if errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("%s: timed out", tt.name)
		}
	}
}
