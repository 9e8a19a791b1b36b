package promotion

import (
	"context"
	"fmt"
)

// PromoteWithoutCopy runs one promotion of digest to env minus the registry
// copy: the idempotency read, signature verification in the registry with
// the cached key, tag resolution, the rules, then publishing
// artifact.promoted and recording the deployment. It is our own overhead,
// for BenchmarkPromotionOverhead.
func (s *Service) PromoteWithoutCopy(ctx context.Context, digest, env string) error {
	p := s.promoter
	a, err := p.st.artifact(ctx, digest)
	if err != nil || a == nil {
		return fmt.Errorf("artifact %s: %w", digest, err)
	}
	req := request{Digest: digest, Environment: env, Actor: "bench", Reason: "bench"}
	src, m, ok := p.selectTarget(a, req)
	if !ok {
		return fmt.Errorf("no rule for %s", env)
	}
	pl, o, err := p.decide(ctx, req, a, src, m)
	if err != nil {
		return err
	}
	if pl == nil {
		return fmt.Errorf("not promotable: %s", o.Reason)
	}
	evt, next := p.nextDeployment(pl, nil)
	return p.record(ctx, evt, next)
}

// VerifyWithCachedKeys verifies digest's signature in its source registry.
func (s *Service) VerifyWithCachedKeys(ctx context.Context, repo, digest string) error {
	r, opts, err := s.promoter.reg.repository(ctx, repo)
	if err != nil {
		return err
	}
	v, err := verifySignatures(ctx, r.Digest(digest), opts, s.promoter.keys)
	if err != nil {
		return err
	}
	if len(v.Keys) == 0 {
		return fmt.Errorf("%s@%s: not verified", repo, digest)
	}
	return nil
}
