package query

import (
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	customsv1 "github.com/customs-dev/customs/gen/go/customs/v1"
)

const (
	digestA = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	digestB = "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
)

func entry(seq uint64, payload any, tag string) *customsv1.HistoryEntry {
	evt := &customsv1.Event{
		Id:         "e",
		OccurredAt: timestamppb.New(time.Unix(int64(1000+seq), 0)),
		Artifact:   &customsv1.ArtifactRef{Registry: "r.example", Repository: "team/app", Digest: digestA, MediaType: "application/vnd.oci.image.manifest.v1+json", Tag: tag},
	}
	switch p := payload.(type) {
	case *customsv1.ArtifactPushed:
		evt.Payload = &customsv1.Event_Pushed{Pushed: p}
	case *customsv1.ArtifactScanned:
		evt.Payload = &customsv1.Event_Scanned{Scanned: p}
	case *customsv1.ArtifactSigned:
		evt.Payload = &customsv1.Event_Signed{Signed: p}
	case *customsv1.ArtifactPromoted:
		evt.Payload = &customsv1.Event_Promoted{Promoted: p}
	case *customsv1.ArtifactRejected:
		evt.Payload = &customsv1.Event_Rejected{Rejected: p}
	case *customsv1.ArtifactFailed:
		evt.Payload = &customsv1.Event_Failed{Failed: p}
	}
	return &customsv1.HistoryEntry{StreamSequence: seq, Event: evt, TraceId: "trace"}
}

func TestApplyEvent(t *testing.T) {
	t.Parallel()
	scan := &customsv1.ArtifactScanned{Summary: &customsv1.ScanSummary{Counts: &customsv1.SeverityCounts{High: 2}}}
	tests := []struct {
		name       string
		entries    []*customsv1.HistoryEntry
		prevDigest string
		assertions func(t *testing.T, rec *customsv1.ArtifactRecord)
	}{
		{
			name:    "push sets identity, tag and trace",
			entries: []*customsv1.HistoryEntry{entry(1, &customsv1.ArtifactPushed{Provenance: &customsv1.Provenance{GitSha: "abc1234"}}, "v1")},
			assertions: func(t *testing.T, rec *customsv1.ArtifactRecord) {
				a := rec.GetArtifact()
				if a.GetState() != customsv1.ArtifactState_ARTIFACT_STATE_PUSHED || a.GetTraceId() != "trace" || a.GetProvenance().GetGitSha() != "abc1234" {
					t.Fatalf("artifact %v", a)
				}
				if tags := a.GetLocations()[0].GetTags(); len(tags) != 1 || tags[0] != "v1" {
					t.Fatalf("tags %v", tags)
				}
				if th := a.GetTagHistory(); len(th) != 1 || th[0].GetAction() != customsv1.TagAction_TAG_ACTION_ASSIGNED {
					t.Fatalf("tag history %v", th)
				}
			},
		},
		{
			name:       "push onto a tag that was elsewhere is a move in",
			entries:    []*customsv1.HistoryEntry{entry(5, &customsv1.ArtifactPushed{}, "v1")},
			prevDigest: digestB,
			assertions: func(t *testing.T, rec *customsv1.ArtifactRecord) {
				th := rec.GetArtifact().GetTagHistory()
				if len(th) != 1 || th[0].GetAction() != customsv1.TagAction_TAG_ACTION_MOVED_IN || th[0].GetOtherDigest() != digestB {
					t.Fatalf("tag history %v", th)
				}
			},
		},
		{
			name:    "stages advance the state",
			entries: []*customsv1.HistoryEntry{entry(1, &customsv1.ArtifactPushed{}, ""), entry(2, scan, ""), entry(3, &customsv1.ArtifactSigned{KeyId: "k"}, "")},
			assertions: func(t *testing.T, rec *customsv1.ArtifactRecord) {
				a := rec.GetArtifact()
				if a.GetState() != customsv1.ArtifactState_ARTIFACT_STATE_SIGNED || a.GetScan().GetCounts().GetHigh() != 2 || a.GetSignature().GetKeyId() != "k" || len(a.GetStages()) != 3 {
					t.Fatalf("artifact %v", a)
				}
			},
		},
		{
			name: "a rejection stands until a later stage succeeds",
			entries: []*customsv1.HistoryEntry{entry(1, &customsv1.ArtifactPushed{}, ""), entry(2, scan, ""),
				entry(3, &customsv1.ArtifactRejected{Stage: customsv1.Stage_STAGE_SIGN, Reason: "2 CRITICAL", Details: []string{"CVE-1"}}, "")},
			assertions: func(t *testing.T, rec *customsv1.ArtifactRecord) {
				a := rec.GetArtifact()
				if a.GetState() != customsv1.ArtifactState_ARTIFACT_STATE_REJECTED {
					t.Fatalf("state %v", a.GetState())
				}
				sign := a.GetStages()[2]
				if sign.GetStatus() != customsv1.StageStatus_STAGE_STATUS_REJECTED || sign.GetReason() != "2 CRITICAL" || sign.GetDetails()[0] != "CVE-1" {
					t.Fatalf("sign stage %v", sign)
				}
			},
		},
		{
			name:    "events arriving out of order do not undo newer state",
			entries: []*customsv1.HistoryEntry{entry(4, &customsv1.ArtifactSigned{}, ""), entry(2, &customsv1.ArtifactFailed{Stage: customsv1.Stage_STAGE_SIGN, Reason: "old"}, ""), entry(1, &customsv1.ArtifactPushed{}, "")},
			assertions: func(t *testing.T, rec *customsv1.ArtifactRecord) {
				if s := rec.GetArtifact().GetState(); s != customsv1.ArtifactState_ARTIFACT_STATE_SIGNED {
					t.Fatalf("state %v", s)
				}
				h := rec.GetHistory()
				if len(h) != 3 || h[0].GetStreamSequence() != 1 || h[2].GetStreamSequence() != 4 {
					t.Fatalf("history not in stream order: %v", h)
				}
			},
		},
		{
			name:    "promotions keep one entry per environment",
			entries: []*customsv1.HistoryEntry{entry(1, &customsv1.ArtifactPromoted{Environment: "staging", RuleId: "a"}, ""), entry(2, &customsv1.ArtifactPromoted{Environment: "staging", RuleId: "b"}, ""), entry(3, &customsv1.ArtifactPromoted{Environment: "prod"}, "")},
			assertions: func(t *testing.T, rec *customsv1.ArtifactRecord) {
				p := rec.GetArtifact().GetPromotions()
				if len(p) != 2 || p[0].GetRuleId() != "b" || rec.GetArtifact().GetState() != customsv1.ArtifactState_ARTIFACT_STATE_PROMOTED {
					t.Fatalf("promotions %v", p)
				}
			},
		},
		{
			name: "a refused promotion elsewhere leaves a running artifact promoted",
			entries: []*customsv1.HistoryEntry{entry(1, &customsv1.ArtifactPushed{}, "v1"), entry(2, &customsv1.ArtifactPromoted{Environment: "staging"}, ""),
				entry(3, &customsv1.ArtifactRejected{Stage: customsv1.Stage_STAGE_PROMOTE, Environment: "prod", Reason: "must be promoted to qa before prod"}, "")},
			assertions: func(t *testing.T, rec *customsv1.ArtifactRecord) {
				a := rec.GetArtifact()
				if a.GetState() != customsv1.ArtifactState_ARTIFACT_STATE_PROMOTED {
					t.Errorf("state %v, want PROMOTED: it runs in staging", a.GetState())
				}
				if st := a.GetStages()[1]; st.GetStage() != customsv1.Stage_STAGE_PROMOTE || st.GetStatus() != customsv1.StageStatus_STAGE_STATUS_SUCCEEDED {
					t.Errorf("promote stage %v", st)
				}
				if r := a.GetPromotionRefusals(); len(r) != 1 || r[0].GetEnvironment() != "prod" || r[0].GetReason() != "must be promoted to qa before prod" {
					t.Errorf("refusals %v", r)
				}
				// A later promotion into prod clears its refusal.
				if !applyEvent(rec, entry(9, &customsv1.ArtifactPromoted{Environment: "prod"}, ""), tagChange{}) || len(a.GetPromotionRefusals()) != 0 || len(a.GetPromotions()) != 2 {
					t.Errorf("after promotion to prod: refusals %v, promotions %v", a.GetPromotionRefusals(), a.GetPromotions())
				}
			},
		},
		{
			name: "a refused promotion of an artifact that runs nowhere rejects it",
			entries: []*customsv1.HistoryEntry{entry(1, &customsv1.ArtifactPushed{}, "latest"),
				entry(2, &customsv1.ArtifactRejected{Stage: customsv1.Stage_STAGE_PROMOTE, Environment: "staging", Reason: "floating tag"}, ""),
				entry(3, &customsv1.ArtifactRejected{Stage: customsv1.Stage_STAGE_PROMOTE, Environment: "staging", Reason: "floating tag, again"}, "")},
			assertions: func(t *testing.T, rec *customsv1.ArtifactRecord) {
				a := rec.GetArtifact()
				if a.GetState() != customsv1.ArtifactState_ARTIFACT_STATE_REJECTED || a.GetStages()[1].GetReason() != "floating tag, again" {
					t.Errorf("artifact %v", a)
				}
				if r := a.GetPromotionRefusals(); len(r) != 1 || r[0].GetReason() != "floating tag, again" {
					t.Errorf("refusals %v, want the latest one for staging", r)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rec := &customsv1.ArtifactRecord{}
			for _, e := range tt.entries {
				if !applyEvent(rec, e, tagChange{previousDigest: tt.prevDigest}) {
					t.Fatalf("seq %d not applied", e.GetStreamSequence())
				}
			}
			// Redelivery of every event changes nothing.
			for _, e := range tt.entries {
				if applyEvent(rec, e, tagChange{previousDigest: tt.prevDigest}) {
					t.Fatalf("seq %d applied twice", e.GetStreamSequence())
				}
			}
			tt.assertions(t, rec)
		})
	}
}

func TestHistoryIsBounded(t *testing.T) {
	t.Parallel()
	rec := &customsv1.ArtifactRecord{}
	for seq := uint64(1); seq <= maxHistory+10; seq++ {
		applyEvent(rec, entry(seq, &customsv1.ArtifactPushed{}, ""), tagChange{})
	}
	if len(rec.GetHistory()) != maxHistory || !rec.GetHistoryTruncated() || rec.GetHistory()[0].GetStreamSequence() != 11 {
		t.Fatalf("history len %d truncated %v first %d", len(rec.GetHistory()), rec.GetHistoryTruncated(), rec.GetHistory()[0].GetStreamSequence())
	}
	if applyEvent(rec, entry(3, &customsv1.ArtifactPushed{}, ""), tagChange{}) {
		t.Fatal("an event older than the kept history was applied again")
	}
}

func TestApplyTagMovedAway(t *testing.T) {
	t.Parallel()
	rec := &customsv1.ArtifactRecord{}
	applyEvent(rec, entry(1, &customsv1.ArtifactPushed{}, "v1"), tagChange{})
	ref := &customsv1.ArtifactRef{Registry: "r.example", Repository: "team/app", Tag: "v1"}
	at := timestamppb.New(time.Unix(2000, 0))
	if !applyTagMovedAway(rec, ref, digestB, at, 7) {
		t.Fatal("move not applied")
	}
	if applyTagMovedAway(rec, ref, digestB, at, 7) {
		t.Fatal("move applied twice")
	}
	a := rec.GetArtifact()
	if len(a.GetLocations()[0].GetTags()) != 0 || a.GetTagHistory()[1].GetOtherDigest() != digestB || !a.GetUpdatedAt().AsTime().Equal(at.AsTime()) {
		t.Fatalf("artifact %v", a)
	}
}
