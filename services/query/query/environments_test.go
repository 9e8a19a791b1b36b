package query

import (
	"context"
	"encoding/base64"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	customsv1 "github.com/customs-dev/customs/gen/go/customs/v1"
	"github.com/customs-dev/customs/pkg/backbone"
	"github.com/customs-dev/customs/pkg/testkit"
)

func promotedEvt(env, app, digest, actor string) *customsv1.Event {
	return &customsv1.Event{
		Id:         backbone.EventID("promoted", env, app, digest),
		Artifact:   &customsv1.ArtifactRef{Registry: "r.example", Repository: "team/app", Digest: digest},
		OccurredAt: timestamppb.Now(),
		Payload: &customsv1.Event_Promoted{Promoted: &customsv1.ArtifactPromoted{
			Environment: env, TargetReference: app + "@" + digest, TargetTags: []string{"v1.2.3"},
			Actor: actor, RuleId: "team-apps",
		}},
	}
}

func TestEnvironmentView(t *testing.T) {
	t.Parallel()
	v := NewEnvironmentView(testkit.Logger(t))
	v.Apply(promotedEvt("staging", "r.example/staging/team/b", digestA, "auto"), 1)
	v.Apply(promotedEvt("staging", "r.example/staging/team/a", digestA, "auto"), 2)
	v.Apply(promotedEvt("prod", "r.example/prod/team/a", digestA, "alice"), 3)
	v.Apply(promotedEvt("staging", "r.example/staging/team/a", digestB, "auto"), 4)
	// A redelivery of an applied sequence changes nothing.
	v.Apply(promotedEvt("staging", "r.example/staging/team/a", digestA, "auto"), 2)
	// Not a promotion: ignored.
	v.Apply(&customsv1.Event{Payload: &customsv1.Event_Pushed{}}, 5)

	model := NewReadModel(testkit.Logger(t))
	model.put(&customsv1.Artifact{Digest: digestB, Scan: &customsv1.ScanSummary{Scanner: "trivy", Counts: &customsv1.SeverityCounts{High: 2, Low: 3}}, Signature: &customsv1.ArtifactSigned{KeyId: "k"}})

	got, ok := v.Environment("staging", model, customsv1.EnvironmentView_ENVIRONMENT_VIEW_FULL)
	if !ok || len(got) != 2 {
		t.Fatalf("staging = %v, %v", got, ok)
	}
	if got[0].GetApplication() != "r.example/staging/team/a" || got[0].GetDigest() != digestB || got[0].GetStreamSequence() != 4 {
		t.Errorf("team/a in staging = %v", got[0])
	}
	if got[0].GetScan().GetScanner() != "trivy" || got[0].GetSignature().GetKeyId() != "k" || got[0].GetEnvironment() != "staging" || got[0].GetSource().GetRepository() != "team/app" {
		t.Errorf("full view of team/a lacks scan, signature, environment or source: %v", got[0])
	}
	if got[1].GetApplication() != "r.example/staging/team/b" || got[1].GetScan() != nil || got[1].GetScanned() || got[1].GetSigningKeyId() != "" {
		t.Errorf("team/b in staging = %v", got[1])
	}

	basic, ok := v.Environment("staging", model, customsv1.EnvironmentView_ENVIRONMENT_VIEW_BASIC)
	if !ok || len(basic) != 2 {
		t.Fatalf("staging, basic view = %v, %v", basic, ok)
	}
	wantBasic := &customsv1.Deployment{
		Application: "r.example/staging/team/a", Reference: "r.example/staging/team/a@" + digestB,
		Tags: []string{"v1.2.3"}, PromotedAt: got[0].GetPromotedAt(), Actor: "auto", RuleId: "team-apps",
		Scanned: true, HighestSeverity: customsv1.Severity_SEVERITY_HIGH, FindingCount: 5, SigningKeyId: "k",
	}
	if !proto.Equal(basic[0], wantBasic) {
		t.Errorf("basic view of team/a:\n got %v\nwant %v", basic[0], wantBasic)
	}
	if basic[1].GetApplication() != "r.example/staging/team/b" || basic[1].GetScanned() {
		t.Errorf("basic view of team/b = %v", basic[1])
	}
	if _, ok := v.Environment("qa", model, customsv1.EnvironmentView_ENVIRONMENT_VIEW_BASIC); ok {
		t.Error("unknown environment found")
	}

	seqs := func(f PromotionFilter, limit int) []uint64 {
		ds, _ := v.History(f, limit)
		var out []uint64
		for _, d := range ds {
			out = append(out, d.GetStreamSequence())
		}
		return out
	}
	tests := []struct {
		name string
		f    PromotionFilter
		want []uint64
	}{
		{name: "all newest first", want: []uint64{4, 3, 2, 1}},
		{name: "environment", f: PromotionFilter{Environment: "staging"}, want: []uint64{4, 2, 1}},
		{name: "digest", f: PromotionFilter{Digest: digestA}, want: []uint64{3, 2, 1}},
		{name: "target application", f: PromotionFilter{Repository: "r.example/prod/team/a"}, want: []uint64{3}},
		{name: "source repository", f: PromotionFilter{Repository: "team/app"}, want: []uint64{4, 3, 2, 1}},
		{name: "page", f: PromotionFilter{Before: 3}, want: []uint64{2, 1}},
	}
	for _, tc := range tests {
		if got := seqs(tc.f, 10); !slices.Equal(got, tc.want) {
			t.Errorf("%s: History = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestListPromotionsPages(t *testing.T) {
	t.Parallel()
	v := NewEnvironmentView(testkit.Logger(t))
	for i := 1; i <= 5; i++ {
		v.Apply(promotedEvt("staging", fmt.Sprintf("r.example/staging/app%d", i), digestA, "auto"), uint64(i))
	}
	s := NewServer(NewReadModel(testkit.Logger(t)), nil, nil)
	s.promo = &promotionBackend{envs: v}
	var got []string
	tok := ""
	for page := 0; page < 5; page++ {
		resp, err := s.ListPromotions(context.Background(), &customsv1.ListPromotionsRequest{PageSize: 2, PageToken: tok})
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range resp.GetPromotions() {
			got = append(got, d.GetApplication())
		}
		if tok = resp.GetNextPageToken(); tok == "" {
			break
		}
	}
	want := []string{"r.example/staging/app5", "r.example/staging/app4", "r.example/staging/app3", "r.example/staging/app2", "r.example/staging/app1"}
	if !slices.Equal(got, want) {
		t.Errorf("pages = %v, want %v", got, want)
	}
	for _, bad := range []*customsv1.ListPromotionsRequest{{PageToken: "!!"}, {PageToken: base64.RawURLEncoding.EncodeToString([]byte("x"))}, {PageSize: -1}, {Digest: "sha256:nope"}} {
		if _, err := s.ListPromotions(context.Background(), bad); status.Code(err) != codes.InvalidArgument {
			t.Errorf("ListPromotions(%v) = %v, want InvalidArgument", bad, err)
		}
	}
}

func FuzzListPromotionsPageToken(f *testing.F) {
	f.Add(base64.RawURLEncoding.EncodeToString([]byte("12")))
	f.Add("!!")
	f.Add("")
	s := NewServer(NewReadModel(nil), nil, nil)
	s.promo = &promotionBackend{envs: NewEnvironmentView(nil)}
	f.Fuzz(func(t *testing.T, tok string) {
		_, err := s.ListPromotions(context.Background(), &customsv1.ListPromotionsRequest{PageToken: tok})
		if err != nil && status.Code(err) != codes.InvalidArgument {
			t.Fatalf("page token %q: %v", tok, err)
		}
	})
}

// TestPromoteMapsReplies runs Promote and Rollback against a real NATS
// server with a stand-in responder on the command subject.
func TestPromoteMapsReplies(t *testing.T) {
	t.Parallel()
	conn := testkit.NATS(t)
	s := NewServer(NewReadModel(testkit.Logger(t)), nil, nil).WithPromotions(NewEnvironmentView(testkit.Logger(t)), conn.NC, conn.JS, 5*time.Second)
	req := &customsv1.PromoteRequest{Selector: &customsv1.PromoteRequest_Digest{Digest: digestA}, Environment: "prod", Actor: "alice", Reason: "release"}

	// With nobody listening the API says so instead of hanging.
	if _, err := s.Promote(context.Background(), req); status.Code(err) != codes.Unavailable {
		t.Fatalf("Promote with no promotion service = %v, want Unavailable", err)
	}

	var seen []*customsv1.PromotionCommand
	replies := map[string]*customsv1.PromotionCommandResult{}
	sub, err := conn.NC.Subscribe(backbone.SubjectPromotionCommand, func(m *nats.Msg) {
		var cmd customsv1.PromotionCommand
		if err := proto.Unmarshal(m.Data, &cmd); err != nil {
			t.Error(err)
			return
		}
		seen = append(seen, &cmd)
		b, _ := proto.Marshal(replies[cmd.GetEnvironment()])
		_ = m.Respond(b)
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	replies["prod"] = &customsv1.PromotionCommandResult{Status: customsv1.PromotionCommandStatus_PROMOTION_COMMAND_STATUS_REFUSED, Reason: "must be promoted to staging before prod", Details: []string{"rule team-apps"}}
	replies["staging"] = &customsv1.PromotionCommandResult{Accepted: true, Status: customsv1.PromotionCommandStatus_PROMOTION_COMMAND_STATUS_ACCEPTED, Promoted: promotedEvt("staging", "r.example/staging/team/app", digestA, "alice")}
	replies["qa"] = &customsv1.PromotionCommandResult{Status: customsv1.PromotionCommandStatus_PROMOTION_COMMAND_STATUS_NOT_FOUND, Reason: "no rule"}
	replies["dev"] = &customsv1.PromotionCommandResult{Status: customsv1.PromotionCommandStatus_PROMOTION_COMMAND_STATUS_FAILED, Reason: "registry down"}

	_, err = s.Promote(context.Background(), req)
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(status.Convert(err).Message(), "staging before prod") {
		t.Errorf("refused Promote = %v, want FailedPrecondition with the reason", err)
	}
	req.Environment = "staging"
	resp, err := s.Promote(context.Background(), req)
	if err != nil || resp.GetPromotion().GetTargetReference() != "r.example/staging/team/app@"+digestA {
		t.Errorf("accepted Promote = %v, %v", resp, err)
	}
	req.Environment = "qa"
	if _, err := s.Promote(context.Background(), req); status.Code(err) != codes.NotFound {
		t.Errorf("Promote without a rule = %v, want NotFound", err)
	}
	req.Environment = "dev"
	if _, err := s.Promote(context.Background(), req); status.Code(err) != codes.Unavailable {
		t.Errorf("failed Promote = %v, want Unavailable", err)
	}
	if _, err := s.Rollback(context.Background(), &customsv1.RollbackRequest{Environment: "prod", Application: "r.example/prod/team/app", Actor: "alice", Reason: "bad release"}); status.Code(err) != codes.FailedPrecondition {
		t.Errorf("refused Rollback = %v, want FailedPrecondition", err)
	}
	for _, bad := range []*customsv1.PromoteRequest{
		{Selector: &customsv1.PromoteRequest_Digest{Digest: digestA}, Environment: "prod", Actor: "alice"},
		{Selector: &customsv1.PromoteRequest_Digest{Digest: "sha256:short"}, Environment: "prod", Actor: "alice", Reason: "x"},
		{Environment: "prod", Actor: "alice", Reason: "x"},
	} {
		if _, err := s.Promote(context.Background(), bad); status.Code(err) != codes.InvalidArgument {
			t.Errorf("Promote(%v) = %v, want InvalidArgument", bad, err)
		}
	}
	if len(seen) != 5 || seen[0].GetKind() != customsv1.PromotionCommandKind_PROMOTION_COMMAND_KIND_PROMOTE || seen[0].GetActor() != "alice" ||
		seen[4].GetKind() != customsv1.PromotionCommandKind_PROMOTION_COMMAND_KIND_ROLLBACK || seen[4].GetApplication() != "r.example/prod/team/app" {
		t.Errorf("commands sent = %v", seen)
	}
}

// BenchmarkGetEnvironment serves an environment of 1,000 applications from
// the in-memory view, with the scan and signature join, and reports the
// p99 latency of one call.
func BenchmarkGetEnvironment(b *testing.B) {
	v := NewEnvironmentView(nil)
	model := NewReadModel(nil)
	for i := range 1000 {
		d := fmt.Sprintf("sha256:%064x", i)
		model.put(&customsv1.Artifact{Digest: d, Scan: &customsv1.ScanSummary{Scanner: "trivy", Counts: &customsv1.SeverityCounts{High: 1}}, Signature: &customsv1.ArtifactSigned{KeyId: "sha256:k"}})
		v.Apply(promotedEvt("prod", fmt.Sprintf("r.example/prod/team/app%04d", i), d, "auto"), uint64(i+1))
	}
	s := NewServer(model, nil, nil)
	s.promo = &promotionBackend{envs: v}
	req := &customsv1.GetEnvironmentRequest{Name: "prod"}
	durs := make([]time.Duration, 0, b.N)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		start := time.Now()
		resp, err := s.GetEnvironment(context.Background(), req)
		durs = append(durs, time.Since(start))
		if err != nil || len(resp.GetEnvironment().GetDeployments()) != 1000 {
			b.Fatalf("GetEnvironment = %d deployments, %v", len(resp.GetEnvironment().GetDeployments()), err)
		}
	}
	b.StopTimer()
	slices.Sort(durs)
	b.ReportMetric(float64(durs[len(durs)*99/100].Nanoseconds())/1e3, "p99-µs")
}

// BenchmarkGetEnvironmentMarshal adds the protobuf encoding gRPC does, for
// the cost as a client sees it minus the network.
func BenchmarkGetEnvironmentMarshal(b *testing.B) {
	v := NewEnvironmentView(nil)
	model := NewReadModel(nil)
	for i := range 1000 {
		d := fmt.Sprintf("sha256:%064x", i)
		model.put(&customsv1.Artifact{Digest: d, Scan: &customsv1.ScanSummary{Scanner: "trivy"}})
		v.Apply(promotedEvt("prod", fmt.Sprintf("r.example/prod/team/app%04d", i), d, "auto"), uint64(i+1))
	}
	s := NewServer(model, nil, nil)
	s.promo = &promotionBackend{envs: v}
	durs := make([]time.Duration, 0, b.N)
	for b.Loop() {
		start := time.Now()
		resp, err := s.GetEnvironment(context.Background(), &customsv1.GetEnvironmentRequest{Name: "prod"})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := proto.Marshal(resp); err != nil {
			b.Fatal(err)
		}
		durs = append(durs, time.Since(start))
	}
	slices.Sort(durs)
	b.ReportMetric(float64(durs[len(durs)*99/100].Nanoseconds())/1e3, "p99-µs")
	resp, _ := s.GetEnvironment(context.Background(), &customsv1.GetEnvironmentRequest{Name: "prod"})
	b.ReportMetric(float64(proto.Size(resp)), "response-bytes")
}

// BenchmarkGetEnvironmentDecode is what a client spends decoding the
// response of a 1,000-application environment, per view: the part of a
// round trip the server cannot make faster.
func BenchmarkGetEnvironmentDecode(b *testing.B) {
	v := NewEnvironmentView(nil)
	model := NewReadModel(nil)
	for i := range 1000 {
		d := fmt.Sprintf("sha256:%064x", i)
		model.put(&customsv1.Artifact{
			Digest:    d,
			Scan:      &customsv1.ScanSummary{Scanner: "trivy", ScannerVersion: "0.74.1", DbVersion: "2@sha256:" + strings.Repeat("0", 64), ScannedAt: timestamppb.Now(), Counts: &customsv1.SeverityCounts{High: 1, Low: 4}},
			Signature: &customsv1.ArtifactSigned{KeyId: "sha256:" + strings.Repeat("1", 64), SignatureDigest: "sha256:" + strings.Repeat("2", 64), Policy: "default"},
		})
		v.Apply(promotedEvt("prod", fmt.Sprintf("registry.example.com:5000/prod/team/app%04d", i), d, "auto"), uint64(i+1))
	}
	s := NewServer(model, nil, nil)
	s.promo = &promotionBackend{envs: v}
	for _, view := range []customsv1.EnvironmentView{customsv1.EnvironmentView_ENVIRONMENT_VIEW_BASIC, customsv1.EnvironmentView_ENVIRONMENT_VIEW_FULL} {
		b.Run(strings.ToLower(strings.TrimPrefix(view.String(), "ENVIRONMENT_VIEW_")), func(b *testing.B) {
			resp, err := s.GetEnvironment(context.Background(), &customsv1.GetEnvironmentRequest{Name: "prod", View: view})
			if err != nil {
				b.Fatal(err)
			}
			raw, err := proto.Marshal(resp)
			if err != nil {
				b.Fatal(err)
			}
			durs := make([]time.Duration, 0, b.N)
			b.ReportAllocs()
			for b.Loop() {
				start := time.Now()
				var got customsv1.GetEnvironmentResponse
				if err := proto.Unmarshal(raw, &got); err != nil {
					b.Fatal(err)
				}
				durs = append(durs, time.Since(start))
				if len(got.GetEnvironment().GetDeployments()) != 1000 {
					b.Fatalf("decoded %d deployments", len(got.GetEnvironment().GetDeployments()))
				}
			}
			slices.Sort(durs)
			b.ReportMetric(float64(durs[len(durs)*99/100].Nanoseconds())/1e3, "p99-µs")
			b.ReportMetric(float64(len(raw)), "response-bytes")
		})
	}
}

// The cached join must follow both new promotions and new scan results.
func TestEnvironmentCacheInvalidation(t *testing.T) {
	t.Parallel()
	v := NewEnvironmentView(nil)
	model := NewReadModel(nil)
	v.Apply(promotedEvt("staging", "r.example/staging/team/a", digestA, "auto"), 1)
	full, basic := customsv1.EnvironmentView_ENVIRONMENT_VIEW_FULL, customsv1.EnvironmentView_ENVIRONMENT_VIEW_BASIC
	first, _ := v.Environment("staging", model, full)
	if first[0].GetScan() != nil {
		t.Fatal("scan before any scan")
	}
	if got, _ := v.Environment("staging", model, basic); got[0].GetScanned() {
		t.Fatal("basic view scanned before any scan")
	}
	model.put(&customsv1.Artifact{Digest: digestA, Scan: &customsv1.ScanSummary{Scanner: "trivy", Counts: &customsv1.SeverityCounts{Critical: 1}}})
	if got, _ := v.Environment("staging", model, full); got[0].GetScan().GetScanner() != "trivy" {
		t.Error("new scan result not shown")
	}
	if got, _ := v.Environment("staging", model, basic); !got[0].GetScanned() || got[0].GetHighestSeverity() != customsv1.Severity_SEVERITY_CRITICAL {
		t.Errorf("new scan result not in the basic view: %v", got[0])
	}
	v.Apply(promotedEvt("staging", "r.example/staging/team/a", digestB, "auto"), 2)
	for _, view := range []customsv1.EnvironmentView{full, basic} {
		if got, _ := v.Environment("staging", model, view); got[0].GetReference() != "r.example/staging/team/a@"+digestB {
			t.Errorf("new promotion not shown in view %v", view)
		}
	}
}

// A change to an artifact that runs in no environment keeps the cached
// join; a change to a deployed one replaces it.
func TestEnvironmentCacheFollowsOnlyItsDigests(t *testing.T) {
	t.Parallel()
	v := NewEnvironmentView(nil)
	model := NewReadModel(nil)
	model.put(&customsv1.Artifact{Digest: digestA, Scan: &customsv1.ScanSummary{Scanner: "trivy"}})
	v.Apply(promotedEvt("prod", "r.example/prod/team/a", digestA, "auto"), 1)
	basic := customsv1.EnvironmentView_ENVIRONMENT_VIEW_BASIC
	first, _ := v.Environment("prod", model, basic)

	model.put(&customsv1.Artifact{Digest: digestB, Scan: &customsv1.ScanSummary{Scanner: "trivy"}})
	if again, _ := v.Environment("prod", model, basic); again[0] != first[0] {
		t.Error("a change to an undeployed artifact rebuilt the environment")
	}
	model.put(&customsv1.Artifact{Digest: digestA, Scan: &customsv1.ScanSummary{Scanner: "trivy", Counts: &customsv1.SeverityCounts{Low: 1}}})
	got, _ := v.Environment("prod", model, basic)
	if got[0] == first[0] || got[0].GetHighestSeverity() != customsv1.Severity_SEVERITY_LOW {
		t.Errorf("a rescan of the deployed digest is not shown: %v", got[0])
	}
	if again, _ := v.Environment("prod", model, basic); again[0] != got[0] {
		t.Error("the rebuilt environment was not cached")
	}
}

func TestGetEnvironmentViews(t *testing.T) {
	t.Parallel()
	v := NewEnvironmentView(nil)
	model := NewReadModel(nil)
	model.put(&customsv1.Artifact{Digest: digestA, Scan: &customsv1.ScanSummary{Scanner: "trivy", Counts: &customsv1.SeverityCounts{Medium: 1}}})
	v.Apply(promotedEvt("prod", "r.example/prod/team/a", digestA, "alice"), 1)
	s := NewServer(model, nil, nil)
	s.promo = &promotionBackend{envs: v}
	get := func(view customsv1.EnvironmentView) *customsv1.Deployment {
		t.Helper()
		resp, err := s.GetEnvironment(context.Background(), &customsv1.GetEnvironmentRequest{Name: "prod", View: view})
		if err != nil || len(resp.GetEnvironment().GetDeployments()) != 1 || resp.GetEnvironment().GetName() != "prod" {
			t.Fatalf("GetEnvironment(prod, %v) = %v, %v", view, resp, err)
		}
		return resp.GetEnvironment().GetDeployments()[0]
	}
	// Asked in turn, each view gets its own cached response.
	for range 2 {
		def, basic, full := get(customsv1.EnvironmentView_ENVIRONMENT_VIEW_UNSPECIFIED), get(customsv1.EnvironmentView_ENVIRONMENT_VIEW_BASIC), get(customsv1.EnvironmentView_ENVIRONMENT_VIEW_FULL)
		if !proto.Equal(def, basic) {
			t.Errorf("the default view %v is not the basic view %v", def, basic)
		}
		if basic.GetReference() != "r.example/prod/team/a@"+digestA || basic.GetHighestSeverity() != customsv1.Severity_SEVERITY_MEDIUM ||
			basic.GetScan() != nil || basic.GetSource() != nil || basic.GetEnvironment() != "" || basic.GetStreamSequence() != 0 {
			t.Errorf("basic view = %v", basic)
		}
		if full.GetScan().GetScanner() != "trivy" || full.GetSource().GetRepository() != "team/app" || full.GetEnvironment() != "prod" ||
			full.GetStreamSequence() != 1 || full.GetHighestSeverity() != customsv1.Severity_SEVERITY_MEDIUM {
			t.Errorf("full view = %v", full)
		}
	}
	if _, err := s.GetEnvironment(context.Background(), &customsv1.GetEnvironmentRequest{Name: "prod", View: 7}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("unknown view = %v, want InvalidArgument", err)
	}
}

// BenchmarkGetEnvironmentUncached changes the read model before every call:
// "elsewhere" changes an artifact that runs in no environment, as pushes and
// scans of other artifacts do all day, so the cached join is checked but
// reused; "deployed" changes an artifact of the environment, so each call
// rebuilds the join and encodes a new response (the worst case).
func BenchmarkGetEnvironmentUncached(b *testing.B) {
	v := NewEnvironmentView(nil)
	model := NewReadModel(nil)
	for i := range 1000 {
		d := fmt.Sprintf("sha256:%064x", i)
		model.put(&customsv1.Artifact{Digest: d, Scan: &customsv1.ScanSummary{Scanner: "trivy"}})
		v.Apply(promotedEvt("prod", fmt.Sprintf("r.example/prod/team/app%04d", i), d, "auto"), uint64(i+1))
	}
	s := NewServer(model, nil, nil)
	s.promo = &promotionBackend{envs: v}
	for _, tc := range []struct {
		name    string
		changed string
	}{{"elsewhere", digestA}, {"deployed", fmt.Sprintf("sha256:%064x", 500)}} {
		b.Run(tc.name, func(b *testing.B) {
			durs := make([]time.Duration, 0, b.N)
			for b.Loop() {
				model.put(&customsv1.Artifact{Digest: tc.changed, Scan: &customsv1.ScanSummary{Scanner: "trivy"}})
				start := time.Now()
				if _, err := s.GetEnvironment(context.Background(), &customsv1.GetEnvironmentRequest{Name: "prod"}); err != nil {
					b.Fatal(err)
				}
				durs = append(durs, time.Since(start))
			}
			slices.Sort(durs)
			b.ReportMetric(float64(durs[len(durs)*99/100].Nanoseconds())/1e3, "p99-µs")
		})
	}
}
