// Package query keeps the artifact projection and serves the gRPC
// ArtifactService from it.
package query

import (
	"slices"
	"strings"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	customsv1 "github.com/customs-dev/customs/gen/go/customs/v1"
)

// maxHistory bounds the events kept per digest so a record stays well under
// the KV value limit. The stream keeps everything.
const maxHistory = 256

// hasSequence reports whether the record already reflects stream sequence
// seq. That makes applying an event idempotent under redelivery.
func hasSequence(rec *customsv1.ArtifactRecord, seq uint64) bool {
	if rec.GetHistoryTruncated() && len(rec.History) > 0 && seq < rec.History[0].GetStreamSequence() {
		return true
	}
	for _, h := range rec.GetHistory() {
		if h.GetStreamSequence() == seq {
			return true
		}
	}
	return false
}

// tagChange is what the tag index said about the event's tag before it.
type tagChange struct {
	// previousDigest is the digest the tag pointed at before, "" if none.
	previousDigest string
}

// applyEvent folds one event into the record of the event's own digest. It
// returns false when the record already has the event.
func applyEvent(rec *customsv1.ArtifactRecord, entry *customsv1.HistoryEntry, tc tagChange) bool {
	seq := entry.GetStreamSequence()
	if hasSequence(rec, seq) {
		return false
	}
	evt := entry.GetEvent()
	ref := evt.GetArtifact()
	if rec.Artifact == nil {
		rec.Artifact = &customsv1.Artifact{Digest: ref.GetDigest()}
	}
	a := rec.Artifact
	if a.MediaType == "" {
		a.MediaType = ref.GetMediaType()
	}
	at := evt.GetOccurredAt()
	if a.FirstSeenAt == nil || at.AsTime().Before(a.FirstSeenAt.AsTime()) {
		a.FirstSeenAt = at
	}
	if a.UpdatedAt == nil || at.AsTime().After(a.UpdatedAt.AsTime()) {
		a.UpdatedAt = at
	}
	loc := location(a, ref.GetRegistry(), ref.GetRepository())

	switch p := evt.GetPayload().(type) {
	case *customsv1.Event_Pushed:
		setStage(a, customsv1.Stage_STAGE_INGEST, customsv1.StageStatus_STAGE_STATUS_SUCCEEDED, "", nil, at, seq)
		if a.TraceId == "" {
			a.TraceId = entry.GetTraceId()
		}
		if a.CorrelationId == "" {
			a.CorrelationId = evt.GetCorrelationId()
		}
		if pv := p.Pushed.GetProvenance(); pv != nil {
			a.Provenance = pv
		}
		if tag := ref.GetTag(); tag != "" {
			if !slices.Contains(loc.Tags, tag) {
				loc.Tags = append(loc.Tags, tag)
				slices.Sort(loc.Tags)
			}
			action := customsv1.TagAction_TAG_ACTION_ASSIGNED
			if tc.previousDigest != "" && tc.previousDigest != a.Digest {
				action = customsv1.TagAction_TAG_ACTION_MOVED_IN
			}
			if tc.previousDigest != a.Digest {
				a.TagHistory = append(a.TagHistory, &customsv1.TagHistoryEntry{
					Registry: ref.GetRegistry(), Repository: ref.GetRepository(), Tag: tag,
					Action: action, OtherDigest: tc.previousDigest, At: at, StreamSequence: seq,
				})
			}
		}
	case *customsv1.Event_Scanned:
		setStage(a, customsv1.Stage_STAGE_SCAN, customsv1.StageStatus_STAGE_STATUS_SUCCEEDED, "", nil, at, seq)
		a.Scan = p.Scanned.GetSummary()
	case *customsv1.Event_Signed:
		setStage(a, customsv1.Stage_STAGE_SIGN, customsv1.StageStatus_STAGE_STATUS_SUCCEEDED, "", nil, at, seq)
		a.Signature = p.Signed
	case *customsv1.Event_Promoted:
		setStage(a, customsv1.Stage_STAGE_PROMOTE, customsv1.StageStatus_STAGE_STATUS_SUCCEEDED, "", nil, at, seq)
		a.Promotions = slices.DeleteFunc(a.Promotions, func(x *customsv1.ArtifactPromoted) bool {
			return x.GetEnvironment() == p.Promoted.GetEnvironment()
		})
		a.Promotions = append(a.Promotions, p.Promoted)
		a.PromotionRefusals = slices.DeleteFunc(a.PromotionRefusals, func(x *customsv1.ArtifactRejected) bool {
			return x.GetEnvironment() == p.Promoted.GetEnvironment()
		})
	case *customsv1.Event_Rejected:
		r := p.Rejected
		if r.GetStage() == customsv1.Stage_STAGE_PROMOTE && r.GetEnvironment() != "" {
			a.PromotionRefusals = slices.DeleteFunc(a.PromotionRefusals, func(x *customsv1.ArtifactRejected) bool {
				return x.GetEnvironment() == r.GetEnvironment()
			})
			a.PromotionRefusals = append(a.PromotionRefusals, r)
			slices.SortFunc(a.PromotionRefusals, func(x, y *customsv1.ArtifactRejected) int {
				return strings.Compare(x.GetEnvironment(), y.GetEnvironment())
			})
			if len(a.Promotions) > 0 {
				// It still runs where it was promoted: a refusal for one
				// more environment does not reject the artifact.
				break
			}
		}
		setStage(a, r.GetStage(), customsv1.StageStatus_STAGE_STATUS_REJECTED, r.GetReason(), r.GetDetails(), at, seq)
	case *customsv1.Event_Failed:
		setStage(a, p.Failed.GetStage(), customsv1.StageStatus_STAGE_STATUS_FAILED, p.Failed.GetReason(), nil, at, seq)
	}
	a.State = deriveState(a)

	// Keep history in stream order even if a redelivery arrives late.
	i, _ := slices.BinarySearchFunc(rec.History, seq, func(h *customsv1.HistoryEntry, s uint64) int {
		switch {
		case h.GetStreamSequence() < s:
			return -1
		case h.GetStreamSequence() > s:
			return 1
		}
		return 0
	})
	rec.History = slices.Insert(rec.History, i, entry)
	if len(rec.History) > maxHistory {
		rec.History = slices.Clone(rec.History[len(rec.History)-maxHistory:])
		rec.HistoryTruncated = true
	}
	return true
}

// applyTagMovedAway records on the previous digest's record that its tag
// moved to newDigest. It returns false if the move is already recorded.
func applyTagMovedAway(rec *customsv1.ArtifactRecord, ref *customsv1.ArtifactRef, newDigest string, at *timestamppb.Timestamp, seq uint64) bool {
	a := rec.GetArtifact()
	if a == nil {
		return false
	}
	for _, th := range a.TagHistory {
		if th.GetStreamSequence() == seq {
			return false
		}
	}
	for _, loc := range a.Locations {
		if loc.GetRegistry() == ref.GetRegistry() && loc.GetRepository() == ref.GetRepository() {
			loc.Tags = slices.DeleteFunc(loc.Tags, func(t string) bool { return t == ref.GetTag() })
		}
	}
	a.TagHistory = append(a.TagHistory, &customsv1.TagHistoryEntry{
		Registry: ref.GetRegistry(), Repository: ref.GetRepository(), Tag: ref.GetTag(),
		Action: customsv1.TagAction_TAG_ACTION_MOVED_AWAY, OtherDigest: newDigest, At: at, StreamSequence: seq,
	})
	if at.AsTime().After(a.GetUpdatedAt().AsTime()) {
		a.UpdatedAt = at
	}
	return true
}

func location(a *customsv1.Artifact, registry, repository string) *customsv1.Location {
	for _, l := range a.Locations {
		if l.GetRegistry() == registry && l.GetRepository() == repository {
			return l
		}
	}
	l := &customsv1.Location{Registry: registry, Repository: repository}
	a.Locations = append(a.Locations, l)
	return l
}

func setStage(a *customsv1.Artifact, stage customsv1.Stage, status customsv1.StageStatus, reason string, details []string, at *timestamppb.Timestamp, seq uint64) {
	for _, s := range a.Stages {
		if s.GetStage() == stage {
			if seq < s.GetStreamSequence() {
				return // an older event arriving late does not undo a newer one
			}
			s.Status, s.Reason, s.Details, s.UpdatedAt, s.StreamSequence = status, reason, details, at, seq
			return
		}
	}
	a.Stages = append(a.Stages, &customsv1.StageState{Stage: stage, Status: status, Reason: reason, Details: details, UpdatedAt: at, StreamSequence: seq})
	slices.SortFunc(a.Stages, func(x, y *customsv1.StageState) int { return int(x.GetStage()) - int(y.GetStage()) })
}

// deriveState is the outcome of the most recent stage event: a rejection or
// failure stands until a later stage succeeds.
func deriveState(a *customsv1.Artifact) customsv1.ArtifactState {
	var latest *customsv1.StageState
	for _, s := range a.Stages {
		if latest == nil || s.GetStreamSequence() > latest.GetStreamSequence() {
			latest = s
		}
	}
	if latest == nil {
		return customsv1.ArtifactState_ARTIFACT_STATE_UNSPECIFIED
	}
	switch latest.GetStatus() {
	case customsv1.StageStatus_STAGE_STATUS_REJECTED:
		return customsv1.ArtifactState_ARTIFACT_STATE_REJECTED
	case customsv1.StageStatus_STAGE_STATUS_FAILED:
		return customsv1.ArtifactState_ARTIFACT_STATE_FAILED
	}
	furthest := customsv1.Stage_STAGE_UNSPECIFIED
	for _, s := range a.Stages {
		if s.GetStatus() == customsv1.StageStatus_STAGE_STATUS_SUCCEEDED && s.GetStage() > furthest {
			furthest = s.GetStage()
		}
	}
	switch furthest {
	case customsv1.Stage_STAGE_PROMOTE:
		return customsv1.ArtifactState_ARTIFACT_STATE_PROMOTED
	case customsv1.Stage_STAGE_SIGN:
		return customsv1.ArtifactState_ARTIFACT_STATE_SIGNED
	case customsv1.Stage_STAGE_SCAN:
		return customsv1.ArtifactState_ARTIFACT_STATE_SCANNED
	case customsv1.Stage_STAGE_INGEST:
		return customsv1.ArtifactState_ARTIFACT_STATE_PUSHED
	}
	return customsv1.ArtifactState_ARTIFACT_STATE_UNSPECIFIED
}

// artifactOnly returns a copy of the record's artifact, for the read model.
func artifactOnly(rec *customsv1.ArtifactRecord) *customsv1.Artifact {
	return proto.CloneOf(rec.GetArtifact())
}
