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

	"google.golang.org/protobuf/types/known/timestamppb"

	customsv1 "github.com/customs-dev/customs/gen/go/customs/v1"
	"github.com/customs-dev/customs/pkg/backbone"
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
	app := m.TargetRepository
	defer p.lock(deploymentKey(req.Environment, app))()

	// Idempotency: the deployment record says whether this digest already
	// runs there, so a redelivered event copies and records nothing.
	dep, _, err := p.st.deployment(ctx, req.Environment, app)
	if err != nil {
		return outcome{}, err
	}
	if dep != nil && dep.Digest == req.Digest {
		return outcome{
			Status: customsv1.PromotionCommandStatus_PROMOTION_COMMAND_STATUS_ACCEPTED, Already: true,
			Reason: fmt.Sprintf("%s already runs %s", req.Environment, dep.Reference),
			Event:  p.promotedEvent(a, src, dep),
		}, nil
	}

	srcRepo, srcOpts, err := p.reg.repository(ctx, src.Registry+"/"+src.Repository)
	if err != nil {
		return refused(fmt.Sprintf("source registry refused: %v", err)), nil
	}
	dstRepo, dstOpts, err := p.reg.repository(ctx, app)
	if err != nil {
		return refused(fmt.Sprintf("target registry refused: %v", err)), nil
	}

	// Never trust the event: the signature must verify in the registry.
	srcRef := srcRepo.Digest(req.Digest)
	ver, err := verifySignatures(ctx, srcRef, srcOpts, p.allowedKeys(m.Target))
	if errors.Is(err, errImageNotFound) {
		return refused(fmt.Sprintf("%s is not in the source registry", srcRef)), nil
	}
	if err != nil {
		return outcome{}, err
	}
	if len(ver.Keys) > 0 && len(m.Target.RequireAttestations) > 0 {
		if err := verifyAttestations(ctx, srcRef, srcOpts, &ver); err != nil {
			return outcome{}, err
		}
	}
	// Tags count only if they still point at this digest in the registry.
	var tags []string
	for _, t := range src.Tags {
		d, err := tagDigest(srcRepo, t, srcOpts)
		if err != nil {
			return outcome{}, err
		}
		if d == req.Digest {
			tags = append(tags, t)
		}
	}
	tags = addUnique(tags, a.Semver)
	tags = addUnique(tags, a.GitSHA)

	facts := rules.Facts{
		Digest: req.Digest, Tags: tags, MovedTags: src.MovedTags, SignedBy: ver.signedBy(),
		Attested: ver.Attested, Scanned: a.Scanned, Counts: a.Counts, Environments: a.Environments,
	}
	if req.Rollback {
		// A rollback returns to a digest the environment ran before; it
		// still needs a valid signature, tags and the other requirements.
		facts.Environments = addUnique(slices.Clone(facts.Environments), req.Environment)
	}
	d := rules.Evaluate(m, facts)
	if !d.Allowed {
		return p.reject(ctx, a, src, req, m, refused(d.Reason, d.Details...))
	}

	// A tag that already names another digest in the target is a tag move
	// there too.
	var details []string
	for _, t := range d.Tags {
		prev, err := tagDigest(dstRepo, t, dstOpts)
		if err != nil {
			return outcome{}, err
		}
		if prev != "" && prev != req.Digest {
			if m.Policy().BlockTagMoves {
				return p.reject(ctx, a, src, req, m, refused(fmt.Sprintf("tag %q already names %s in %s, and tag moves are blocking for %s", t, prev, app, req.Environment)))
			}
			details = append(details, fmt.Sprintf("tag %q moved from %s in %s", t, prev, app))
		}
	}

	if _, err := copyArtifact(srcRepo, srcOpts, dstRepo, dstOpts, req.Digest); err != nil {
		if errors.Is(err, errImageNotFound) {
			return refused(err.Error()), nil
		}
		return outcome{}, err
	}
	if err := tagTarget(dstRepo, dstOpts, req.Digest, d.Tags); err != nil {
		return outcome{}, err
	}
	// The copy must verify at the target with the same key, or it is not a
	// promotion anyone downstream can check.
	dstVer, err := verifySignatures(ctx, dstRepo.Digest(req.Digest), dstOpts, ver.Keys[:1])
	if err != nil {
		return outcome{}, fmt.Errorf("re-verify at target: %w", err)
	}
	if len(dstVer.Keys) == 0 {
		return outcome{}, fmt.Errorf("re-verify at target %s: the copied signature does not verify", dstRepo.Digest(req.Digest))
	}

	next := &deployment{
		Environment: req.Environment, Application: app, Digest: req.Digest,
		Reference: app + "@" + req.Digest, Tags: d.Tags, PromotedAt: p.now().UTC(),
		Actor: req.Actor, RuleID: m.Rule.ID, Reason: promotionReason(req, d.Tags),
	}
	if dep != nil {
		next.Generation = dep.Generation + 1
		next.History = append([]pastDeployment{{Digest: dep.Digest, PromotedAt: dep.PromotedAt}}, dep.History...)
		if len(next.History) > maxDeploymentHistory {
			next.History = next.History[:maxDeploymentHistory]
		}
	}
	next.EventID = backbone.EventID("promoted", req.Environment, app, req.Digest, strconv.Itoa(next.Generation))
	evt := p.promotedEvent(a, src, next)
	if len(details) > 0 {
		evt.GetPromoted().Reason += "; " + strings.Join(details, "; ")
	}
	if err := p.record(ctx, evt, next); err != nil {
		return outcome{}, err
	}
	return outcome{Status: customsv1.PromotionCommandStatus_PROMOTION_COMMAND_STATUS_ACCEPTED, Reason: next.Reason, Details: append(d.Details, details...), Event: evt}, nil
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
			Environment: req.Environment,
		}},
	}
	if _, err := p.pub.Publish(ctx, evt); err != nil {
		return outcome{}, err
	}
	p.log.Info("promotion refused", "digest", req.Digest, "environment", req.Environment, "actor", req.Actor, "reason", o.Reason)
	return o, nil
}
