package signer

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"strings"
	"sync"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/types/known/timestamppb"

	customsv1 "github.com/customs-dev/customs/gen/go/customs/v1"
	"github.com/customs-dev/customs/pkg/artifactref"
	"github.com/customs-dev/customs/pkg/backbone"
	"github.com/customs-dev/customs/pkg/registries"
	"github.com/customs-dev/customs/pkg/telemetry"
)

// Handle processes one artifact.scanned event. A policy rejection is
// published and acked; a malformed event or a registry that is not allowed
// is terminal; anything else (registry or object store down) is retried.
func (s *Service) Handle(ctx context.Context, evt *customsv1.Event) error {
	sc := evt.GetScanned()
	if sc == nil {
		return backbone.Terminalf("signer: event %q is not artifact.scanned", evt.GetId())
	}
	a := evt.GetArtifact()
	if err := validateRef(a); err != nil {
		return backbone.Terminalf("signer: event %q: %w", evt.GetId(), err)
	}
	log := s.log.With("digest", a.GetDigest(), "repository", a.GetRepository(), "event_id", evt.GetId())

	ref, reg, err := s.registry.Reference(a.GetRegistry() + "/" + a.GetRepository() + "@" + a.GetDigest())
	if err != nil {
		if errors.Is(err, registries.ErrNotAllowed) {
			if perr := s.publish(ctx, evt, &customsv1.Event_Failed{Failed: &customsv1.ArtifactFailed{
				Stage: customsv1.Stage_STAGE_SIGN, Reason: err.Error(),
			}}, "failed-sign", a.GetDigest()); perr != nil {
				return perr
			}
		}
		return backbone.Terminalf("signer: %w", err)
	}
	digest, ok := ref.(name.Digest)
	if !ok {
		return backbone.Terminalf("signer: %s is not a digest reference", ref)
	}
	ropts, err := s.registry.RemoteOptions(reg)
	if err != nil {
		return fmt.Errorf("registry options for %s: %w", reg.Host, err)
	}
	ropts = append(ropts, remote.WithContext(ctx))
	target := Target{Digest: digest, Remote: ropts}

	// The full report feeds both the policy (when the event's findings were
	// cut) and the vuln attestation.
	report, err := s.object(ctx, sc.GetReportObject(), backbone.ReportObject(a.GetDigest()))
	if err != nil {
		return err
	}
	findings := sc.GetFindings()
	if sc.GetFindingsTruncated() {
		if report == nil {
			return fmt.Errorf("findings were truncated and report %s is not in the object store yet", backbone.ReportObject(a.GetDigest()))
		}
		if findings, err = ParseTrivyFindings(report); err != nil {
			return backbone.Terminalf("signer: report for %s: %w", a.GetDigest(), err)
		}
	}

	pol := s.policies.Current()
	decision := pol.Evaluate(a.GetRepository(), findings, s.cfg.Now())
	if !decision.Allowed {
		log.Info("rejected by policy", "policy", decision.Policy, "violations", len(decision.Violations))
		return s.publish(ctx, evt, &customsv1.Event_Rejected{Rejected: &customsv1.ArtifactRejected{
			Stage:      customsv1.Stage_STAGE_SIGN,
			Reason:     decision.Reason(),
			Details:    decision.Violations,
			ReasonCode: "policy_violation",
		}}, "rejected-sign", a.GetDigest(), decision.Policy)
	}

	if len(decision.Waived) > 0 {
		// Allow-listed findings are part of the audit trail of a signature.
		log.Info("policy passed with allow-listed findings", "policy", decision.Policy, "waived", decision.Waived)
	}

	// Idempotency: look at what the registry already holds before any side
	// effect. A redelivered event finds its signature and attestations and
	// signs nothing again. The lock keeps two events for the same digest
	// handled at once (a rescan racing a redelivery) from both seeing
	// "unsigned" and overwriting each other's .sig manifest.
	unlock := s.locks.lock(a.GetDigest())
	defer unlock()
	st, err := s.signer.State(ctx, target)
	if err != nil {
		return err
	}
	sigDigest := st.SignatureDigest
	if !st.Signed() {
		ann := map[string]any{
			AnnotationScanner:        sc.GetSummary().GetScanner(),
			AnnotationScannerVersion: sc.GetSummary().GetScannerVersion(),
			AnnotationDBVersion:      sc.GetSummary().GetDbVersion(),
			AnnotationPolicy:         decision.Policy,
		}
		signCtx, end := telemetry.Span(ctx, "cosign sign", telemetry.Digest(a.GetDigest()))
		sigDigest, err = s.signer.Sign(signCtx, target, st, ann)
		end(&err)
		if err != nil {
			return err
		}
		log.Info("signed", "signature_digest", sigDigest, "key_id", s.signer.key.ID)
	} else {
		log.Info("already signed by this key; not signing again", "signature_digest", sigDigest)
	}

	preds, err := s.predicates(ctx, evt, sc, report)
	if err != nil {
		return err
	}
	var missing []Predicate
	for _, p := range preds {
		if _, done := st.Attested[p.URI]; !done {
			missing = append(missing, p)
		}
	}
	attestCtx, end := telemetry.Span(ctx, "cosign attest", telemetry.Digest(a.GetDigest()))
	atts, err := s.signer.Attest(attestCtx, target, st, missing)
	end(&err)
	if err != nil {
		return err
	}
	for _, p := range preds {
		if d, done := st.Attested[p.URI]; done {
			atts = append(atts, &customsv1.Attestation{PredicateType: p.URI, Digest: d})
		}
	}
	slices.SortFunc(atts, func(x, y *customsv1.Attestation) int {
		return strings.Compare(x.GetPredicateType(), y.GetPredicateType())
	})

	return s.publish(ctx, evt, &customsv1.Event_Signed{Signed: &customsv1.ArtifactSigned{
		SignatureDigest: sigDigest,
		KeyId:           s.signer.key.ID,
		Attestations:    atts,
		Policy:          decision.Policy,
	}}, "signed", a.GetDigest(), s.signer.key.ID)
}

func validateRef(a *customsv1.ArtifactRef) error {
	if a == nil {
		return errors.New("no artifact")
	}
	if err := artifactref.ValidateRegistry(a.GetRegistry()); err != nil {
		return err
	}
	if err := artifactref.ValidateRepository(a.GetRepository()); err != nil {
		return err
	}
	return artifactref.ValidateDigest(a.GetDigest())
}

// predicates builds the attestations to attach: the CycloneDX SBOM when
// stored, the vuln scan always, and SLSA provenance when anything is known
// about the build.
func (s *Service) predicates(ctx context.Context, evt *customsv1.Event, sc *customsv1.ArtifactScanned, report []byte) ([]Predicate, error) {
	var preds []Predicate
	if sc.GetSbomObject() != "" {
		sbom, err := s.object(ctx, sc.GetSbomObject(), "")
		if err != nil {
			return nil, err
		}
		if sbom == nil {
			return nil, fmt.Errorf("SBOM %s is not in the object store yet", sc.GetSbomObject())
		}
		preds = append(preds, Predicate{Type: "cyclonedx", URI: PredicateCycloneDX, Body: sbom})
	}
	vuln, err := vulnPredicate(sc, report, evt.GetId())
	if err != nil {
		return nil, err
	}
	preds = append(preds, Predicate{Type: "vuln", URI: PredicateVuln, Body: vuln})
	slsa, err := slsaPredicate(sc.GetProvenance(), evt.GetArtifact())
	if err != nil {
		return nil, err
	}
	if slsa != nil {
		preds = append(preds, Predicate{Type: "slsaprovenance1", URI: PredicateSLSA1, Body: slsa})
	}
	return preds, nil
}

// object reads name (or fallback when name is empty) from the report
// store. A missing object is (nil, nil); a store error is retryable.
func (s *Service) object(ctx context.Context, objName, fallback string) ([]byte, error) {
	if objName == "" {
		objName = fallback
	}
	if objName == "" {
		return nil, nil
	}
	b, err := s.reports.GetBytes(ctx, objName)
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("object store %s: %w", objName, err)
	}
	return b, nil
}

func (s *Service) publish(ctx context.Context, src *customsv1.Event, payload any, kind string, idParts ...string) error {
	evt := &customsv1.Event{
		Id:            backbone.EventID(kind, idParts...),
		Artifact:      src.GetArtifact(),
		OccurredAt:    timestamppb.New(s.cfg.Now()),
		CorrelationId: src.GetCorrelationId(),
		Producer:      Producer,
	}
	switch p := payload.(type) {
	case *customsv1.Event_Signed:
		evt.Payload = p
	case *customsv1.Event_Rejected:
		evt.Payload = p
	case *customsv1.Event_Failed:
		evt.Payload = p
	default:
		return backbone.Terminalf("signer: unexpected payload %T", payload)
	}
	if _, err := s.pub.Publish(ctx, evt); err != nil {
		return fmt.Errorf("publish %s for %s: %w", kind, src.GetArtifact().GetDigest(), err)
	}
	return nil
}

// stripedLocks serialises work per digest with a fixed number of mutexes,
// so memory stays bounded however many digests pass through.
type stripedLocks [64]sync.Mutex

func (l *stripedLocks) lock(key string) func() {
	h := fnv.New32a()
	_, _ = h.Write([]byte(key)) // hash.Hash writes never fail
	m := &l[h.Sum32()%uint32(len(l))]
	m.Lock()
	return m.Unlock
}
