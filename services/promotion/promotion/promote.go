package promotion

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"go.opentelemetry.io/otel/attribute"
	"google.golang.org/protobuf/types/known/timestamppb"

	customsv1 "github.com/customs-dev/customs/gen/go/customs/v1"
	"github.com/customs-dev/customs/pkg/backbone"
	"github.com/customs-dev/customs/pkg/telemetry"
	"github.com/customs-dev/customs/services/promotion/rules"
)

// request is one promotion to decide and carry out.
type request struct {
	Digest      string
	Environment string
	Actor       string
	Reason      string
	// Registry and Repository of the triggering event, tried first as the
	// source. Empty for commands.
	Registry, Repository string
	Rollback             bool
}

// outcome is the decision and, when accepted, the artifact.promoted event.
type outcome struct {
	Status  customsv1.PromotionCommandStatus
	Reason  string
	Details []string
	Event   *customsv1.Event
	Already bool
}

func refused(reason string, details ...string) outcome {
	return outcome{Status: customsv1.PromotionCommandStatus_PROMOTION_COMMAND_STATUS_REFUSED, Reason: reason, Details: details}
}

func notFound(format string, args ...any) outcome {
	return outcome{Status: customsv1.PromotionCommandStatus_PROMOTION_COMMAND_STATUS_NOT_FOUND, Reason: fmt.Sprintf(format, args...)}
}

// Promoter decides and performs promotions. The consumer and the command
// subscription share it.
type Promoter struct {
	rules *rules.Store
	keys  []*PublicKey
	reg   *registryClient
	st    *store
	pub   *backbone.Publisher
	log   *slog.Logger
	now   func() time.Time

	locks sync.Map // deployment key -> *sync.Mutex
}

func (p *Promoter) lock(key string) func() {
	m, _ := p.locks.LoadOrStore(key, &sync.Mutex{})
	mu := m.(*sync.Mutex)
	mu.Lock()
	return mu.Unlock
}

// allowedKeys is the subset of the configured keys a target accepts.
func (p *Promoter) allowedKeys(t *rules.Target) []*PublicKey {
	if len(t.Keys) == 0 {
		return p.keys
	}
	var out []*PublicKey
	for _, k := range p.keys {
		if slices.Contains(t.Keys, k.Name) || slices.Contains(t.Keys, k.ID) {
			out = append(out, k)
		}
	}
	return out
}

// selectTarget picks the artifact's source repository with a rule for env,
// preferring the one the event named.
func (p *Promoter) selectTarget(a *artifactInfo, req request) (*source, rules.Match, bool) {
	rf := p.rules.Current()
	srcs := slices.Clone(a.Sources)
	slices.SortStableFunc(srcs, func(x, y *source) int {
		xp := x.Registry == req.Registry && x.Repository == req.Repository
		yp := y.Registry == req.Registry && y.Repository == req.Repository
		switch {
		case xp && !yp:
			return -1
		case yp && !xp:
			return 1
		}
		return 0
	})
	for _, s := range srcs {
		if m, ok := rf.Target(s.Registry, s.Repository, req.Environment); ok {
			return s, m, true
		}
	}
	return nil, rules.Match{}, false
}

// plan is a decided promotion: everything needed to carry it out.
type plan struct {
	req              request
	a                *artifactInfo
	src              *source
	m                rules.Match
	app              string
	dep              *deployment
	srcRepo, dstRepo name.Repository
	srcOpts, dstOpts []remote.Option
	ver              verification
	decision         rules.Decision
}

// promote decides req and, if the rules allow it, copies the artifact into
// the target, re-verifies it there, publishes artifact.promoted and
// records the deployment. An error means the promotion could not be
// decided or finished and should be retried; refusals are outcomes.
func (p *Promoter) promote(ctx context.Context, req request) (outcome, error) {
	a, err := p.st.artifact(ctx, req.Digest)
	if err != nil {
		return outcome{}, err
	}
	if a == nil {
		return notFound("artifact %s is unknown to the promotion service (never pushed)", req.Digest), nil
	}
	src, m, ok := p.selectTarget(a, req)
	if !ok {
		return notFound("no promotion rule takes %s from its repository to environment %q", req.Digest, req.Environment), nil
	}
	defer p.lock(deploymentKey(req.Environment, m.TargetRepository))()
	pl, o, err := p.decide(ctx, req, a, src, m)
	if err != nil || pl == nil {
		return o, err
	}
	details, stop, err := p.carryOut(ctx, pl)
	switch {
	case err != nil:
		return outcome{}, err
	case stop != nil:
		return *stop, nil
	}
	evt, next := p.nextDeployment(pl, details)
	if err := p.record(ctx, evt, next); err != nil {
		return outcome{}, err
	}
	return outcome{Status: customsv1.PromotionCommandStatus_PROMOTION_COMMAND_STATUS_ACCEPTED, Reason: next.Reason, Details: append(pl.decision.Details, details...), Event: evt}, nil
}

// decide checks idempotency, verifies the signature (and attestations) in
// the source registry with the cached keys, resolves the tags and applies
// the rules. It returns a plan, or the outcome when there is nothing to do.
// The caller holds the deployment lock.
func (p *Promoter) decide(ctx context.Context, req request, a *artifactInfo, src *source, m rules.Match) (*plan, outcome, error) {
	pl := &plan{req: req, a: a, src: src, m: m, app: m.TargetRepository}
	// Idempotency: the deployment record says whether this digest already
	// runs there, so a redelivered event copies and records nothing.
	var err error
	if pl.dep, _, err = p.st.deployment(ctx, req.Environment, pl.app); err != nil {
		return nil, outcome{}, err
	}
	if pl.dep != nil && pl.dep.Digest == req.Digest {
		return nil, outcome{
			Status: customsv1.PromotionCommandStatus_PROMOTION_COMMAND_STATUS_ACCEPTED, Already: true,
			Reason: fmt.Sprintf("%s already runs %s", req.Environment, pl.dep.Reference),
			Event:  p.promotedEvent(a, src, pl.dep),
		}, nil
	}
	if pl.srcRepo, pl.srcOpts, err = p.reg.repository(ctx, src.Registry+"/"+src.Repository); err != nil {
		return nil, refused(fmt.Sprintf("source registry refused: %v", err)), nil
	}
	if pl.dstRepo, pl.dstOpts, err = p.reg.repository(ctx, pl.app); err != nil {
		return nil, refused(fmt.Sprintf("target registry refused: %v", err)), nil
	}

	// Never trust the event: the signature must verify in the registry.
	srcRef := pl.srcRepo.Digest(req.Digest)
	verifyCtx, end := telemetry.Span(ctx, "verify signature", telemetry.Digest(req.Digest), attribute.String("customs.reference", srcRef.String()))
	pl.ver, err = verifySignatures(verifyCtx, srcRef, pl.srcOpts, p.allowedKeys(m.Target))
	end(&err)
	if errors.Is(err, errImageNotFound) {
		return nil, refused(fmt.Sprintf("%s is not in the source registry", srcRef)), nil
	}
	if err != nil {
		return nil, outcome{}, err
	}
	// The severity gate reads the scan a trusted key attested, so a forged
	// artifact.scanned cannot lower the counts.
	if len(pl.ver.Keys) > 0 && (len(m.Target.RequireAttestations) > 0 || m.Target.MaxSeverity != "") {
		if err := verifyAttestations(ctx, srcRef, pl.srcOpts, &pl.ver); err != nil {
			return nil, outcome{}, err
		}
	}
	// Tags count only if they still point at this digest in the registry.
	var tags []string
	for _, t := range src.Tags {
		d, err := tagDigest(pl.srcRepo, t, pl.srcOpts)
		if err != nil {
			return nil, outcome{}, err
		}
		if d == req.Digest {
			tags = append(tags, t)
		}
	}
	tags = addUnique(tags, a.Semver)
	tags = addUnique(tags, a.GitSHA)

	facts := rules.Facts{
		Digest: req.Digest, Tags: tags, MovedTags: src.MovedTags, SignedBy: pl.ver.signedBy(),
		Attested: pl.ver.Attested, Scanned: a.Scanned, Counts: a.Counts, Environments: a.Environments,
	}
	// An event alone cannot lower what a trusted key attested; a newer
	// scan (a rescan with a fresher DB) can still raise it, so the gate
	// takes the higher count of each severity.
	var severityFrom string
	if m.Target.MaxSeverity != "" {
		if sc := pl.ver.Scan; sc != nil {
			facts.Scanned, facts.Counts = true, higherCounts(sc.Counts, a.Counts)
			severityFrom = fmt.Sprintf("severity from the vuln attestation signed by %s (scan finished %s), or artifact.scanned where it reports more",
				sc.Key, sc.FinishedOn.UTC().Format(time.RFC3339))
		} else if a.Scanned {
			severityFrom = "severity from artifact.scanned: no complete vuln attestation by a trusted key"
		}
	}
	if req.Rollback {
		// A rollback returns to a digest the environment ran before; it
		// still needs a valid signature, tags and the other requirements.
		facts.Environments = addUnique(slices.Clone(facts.Environments), req.Environment)
	}
	pl.decision = rules.Evaluate(m, facts)
	if severityFrom != "" {
		pl.decision.Details = append(pl.decision.Details, severityFrom)
	}
	if !pl.decision.Allowed {
		o, err := p.reject(ctx, a, src, req, m, refused(pl.decision.Reason, pl.decision.Details...))
		return nil, o, err
	}
	return pl, outcome{}, nil
}

// higherCounts returns, for each severity, the higher count of a and b.
func higherCounts(a, b map[string]int) map[string]int {
	out := make(map[string]int, len(a))
	for sev, n := range a {
		out[sev] = n
	}
	for sev, n := range b {
		out[sev] = max(out[sev], n)
	}
	return out
}

// carryOut copies the artifact with its signatures and attestations, tags
// it and re-verifies it at the target. It returns notes on tag moves at
// the target, or a refusal when a blocking move is found.
func (p *Promoter) carryOut(ctx context.Context, pl *plan) ([]string, *outcome, error) {
	req := pl.req
	// A tag that already names another digest in the target is a tag move
	// there too.
	var details []string
	for _, t := range pl.decision.Tags {
		prev, err := tagDigest(pl.dstRepo, t, pl.dstOpts)
		if err != nil {
			return nil, nil, err
		}
		if prev != "" && prev != req.Digest {
			if pl.m.Policy().BlockTagMoves {
				o, err := p.reject(ctx, pl.a, pl.src, req, pl.m, refused(fmt.Sprintf("tag %q already names %s in %s, and tag moves are blocking for %s", t, prev, pl.app, req.Environment)))
				return nil, &o, err
			}
			details = append(details, fmt.Sprintf("tag %q moved from %s in %s", t, prev, pl.app))
		}
	}
	copyCtx, end := telemetry.Span(ctx, "copy to target", telemetry.Digest(req.Digest), attribute.String("customs.target", pl.app))
	_, err := copyArtifact(pl.srcRepo, withContext(copyCtx, pl.srcOpts), pl.dstRepo, withContext(copyCtx, pl.dstOpts), req.Digest)
	end(&err)
	if err != nil {
		if errors.Is(err, errImageNotFound) {
			o := refused(err.Error())
			return nil, &o, nil
		}
		return nil, nil, err
	}
	if err := tagTarget(pl.dstRepo, pl.dstOpts, req.Digest, pl.decision.Tags); err != nil {
		return nil, nil, err
	}
	// The copy must verify at the target with the same key, or it is not a
	// promotion anyone downstream can check.
	dstRef := pl.dstRepo.Digest(req.Digest)
	verifyCtx, endVerify := telemetry.Span(ctx, "verify signature at target", telemetry.Digest(req.Digest), attribute.String("customs.reference", dstRef.String()))
	dstVer, err := verifySignatures(verifyCtx, dstRef, pl.dstOpts, pl.ver.Keys[:1])
	endVerify(&err)
	if err != nil {
		return nil, nil, fmt.Errorf("re-verify at target: %w", err)
	}
	if len(dstVer.Keys) == 0 {
		return nil, nil, fmt.Errorf("re-verify at target %s: the copied signature does not verify", dstRef)
	}
	return details, nil, nil
}

// nextDeployment builds the new deployment record and its event.
func (p *Promoter) nextDeployment(pl *plan, details []string) (*customsv1.Event, *deployment) {
	req := pl.req
	next := &deployment{
		Environment: req.Environment, Application: pl.app, Digest: req.Digest,
		Reference: pl.app + "@" + req.Digest, Tags: pl.decision.Tags, PromotedAt: p.now().UTC(),
		Actor: req.Actor, RuleID: pl.m.Rule.ID, Reason: promotionReason(req, pl.decision.Tags),
	}
	if len(details) > 0 {
		next.Reason += "; " + strings.Join(details, "; ")
	}
	if dep := pl.dep; dep != nil {
		next.Generation = dep.Generation + 1
		next.History = append([]pastDeployment{{Digest: dep.Digest, PromotedAt: dep.PromotedAt}}, dep.History...)
		if len(next.History) > maxDeploymentHistory {
			next.History = next.History[:maxDeploymentHistory]
		}
	}
	next.EventID = backbone.EventID("promoted", req.Environment, pl.app, req.Digest, strconv.Itoa(next.Generation))
	return p.promotedEvent(pl.a, pl.src, next), next
}

// record publishes the event, then stores the deployment. The event id is
// deterministic, so if the process dies between the two, the retry's
// publish is dropped by the stream's duplicate window.
func (p *Promoter) record(ctx context.Context, evt *customsv1.Event, next *deployment) error {
	if _, err := p.pub.Publish(ctx, evt); err != nil {
		return err
	}
	err := update(ctx, p.st, deploymentKey(next.Environment, next.Application), func(v *deployment, _ bool) (bool, error) {
		*v = *next
		return true, nil
	})
	if err != nil {
		return err
	}
	return update(ctx, p.st, artifactKey(next.Digest), func(v *artifactInfo, exists bool) (bool, error) {
		if !exists || slices.Contains(v.Environments, next.Environment) {
			return false, nil
		}
		v.Environments = addUnique(v.Environments, next.Environment)
		return true, nil
	})
}

func promotionReason(req request, tags []string) string {
	var b strings.Builder
	switch {
	case req.Rollback:
		b.WriteString("rollback")
	case req.Actor == ActorAuto:
		b.WriteString("automatic promotion")
	default:
		b.WriteString("manual promotion")
	}
	if req.Reason != "" {
		b.WriteString(": " + req.Reason)
	}
	fmt.Fprintf(&b, " (tags %s)", strings.Join(tags, ", "))
	return b.String()
}

func (p *Promoter) promotedEvent(a *artifactInfo, src *source, dep *deployment) *customsv1.Event {
	return &customsv1.Event{
		Id: dep.EventID,
		Artifact: &customsv1.ArtifactRef{
			Registry: src.Registry, Repository: src.Repository, Digest: a.Digest, MediaType: a.MediaType,
			Tag: firstTag(dep.Tags),
		},
		OccurredAt:    timestamppb.New(dep.PromotedAt),
		CorrelationId: a.CorrelationID,
		Producer:      "promotion",
		Payload: &customsv1.Event_Promoted{Promoted: &customsv1.ArtifactPromoted{
			Environment: dep.Environment, TargetReference: dep.Reference, TargetTags: dep.Tags,
			Actor: dep.Actor, RuleId: dep.RuleID, Reason: dep.Reason,
		}},
	}
}

// firstTag prefers a semver tag as the event's tag.
func firstTag(tags []string) string {
	for _, t := range tags {
		if rules.IsSemver(t) {
			return t
		}
	}
	if len(tags) > 0 {
		return tags[0]
	}
	return ""
}

// reject publishes artifact.rejected for the promote stage so the API
// shows why, and returns the refusal.
func (p *Promoter) reject(ctx context.Context, a *artifactInfo, src *source, req request, m rules.Match, o outcome) (outcome, error) {
	evt := &customsv1.Event{
		Id:            backbone.EventID("rejected-promote", req.Environment, req.Digest, req.Actor, o.Reason),
		Artifact:      &customsv1.ArtifactRef{Registry: src.Registry, Repository: src.Repository, Digest: a.Digest, MediaType: a.MediaType},
		OccurredAt:    timestamppb.New(p.now()),
		CorrelationId: a.CorrelationID,
		Producer:      "promotion",
		Payload: &customsv1.Event_Rejected{Rejected: &customsv1.ArtifactRejected{
			Stage: customsv1.Stage_STAGE_PROMOTE, Reason: o.Reason, Details: append([]string{"rule " + m.Rule.ID}, o.Details...),
			Environment: req.Environment, ReasonCode: reasonCode(o.Reason),
		}},
	}
	if _, err := p.pub.Publish(ctx, evt); err != nil {
		return outcome{}, err
	}
	p.log.Info("promotion refused", "digest", req.Digest, "environment", req.Environment, "actor", req.Actor, "reason", o.Reason)
	return o, nil
}

// withContext ties registry calls to ctx, so they are cancelled with it and
// appear under its span.
func withContext(ctx context.Context, opts []remote.Option) []remote.Option {
	return append(slices.Clone(opts), remote.WithContext(ctx))
}

// reasonCode classifies a refusal for metrics and automation; the reason
// itself stays the human sentence.
func reasonCode(reason string) string {
	r := strings.ToLower(reason)
	for _, c := range []struct{ phrase, code string }{
		{"floating tag", "floating_tag"},
		{"not signed by any key", "untrusted_key"},
		{"no scan result", "not_scanned"},
		{"no signature", "unsigned"},
		{"not signed", "unsigned"},
		{"key", "untrusted_key"},
		{"must be promoted to", "environment_order"},
		{"severity", "severity"},
		{"critical", "severity"},
		{"tag move", "tag_move"},
		{"moved", "tag_move"},
		{"attestation", "missing_attestation"},
		{"tag", "tag_policy"},
		{"registry", "registry"},
		{"not in the source", "not_found"},
		{"manual", "manual_only"},
	} {
		if strings.Contains(r, c.phrase) {
			return c.code
		}
	}
	return "other"
}
