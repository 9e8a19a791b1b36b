package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/user"
	"strings"

	customsv1 "github.com/customs-dev/customs/gen/go/customs/v1"
)

func runEnv(ctx context.Context, e *env, args []string) error {
	fs := e.flags("env")
	viewName := fs.String("view", "full", "full: counts per severity and every detail; basic: the compact form API clients get by default")
	pos, err := e.parse(fs, args, 1, "one environment name, e.g. prod")
	if err != nil {
		return err
	}
	var view customsv1.EnvironmentView
	switch *viewName {
	case "full":
		view = customsv1.EnvironmentView_ENVIRONMENT_VIEW_FULL
	case "basic":
		view = customsv1.EnvironmentView_ENVIRONMENT_VIEW_BASIC
	default:
		return usageErr{fmt.Sprintf("--view must be basic or full, not %q", *viewName)}
	}
	c, closeConn, err := e.client()
	if err != nil {
		return err
	}
	defer closeConn()
	ctx, cancel := e.callContext(ctx)
	defer cancel()
	resp, err := c.GetEnvironment(ctx, &customsv1.GetEnvironmentRequest{Name: pos[0], View: view})
	if err != nil {
		return err
	}
	if e.output == "json" {
		return printJSON(e.stdout, resp.GetEnvironment(), true)
	}
	return printDeployments(e, resp.GetEnvironment().GetDeployments(), false)
}

func printDeployments(e *env, ds []*customsv1.Deployment, withEnv bool) error {
	tw := table(e.stdout)
	if withEnv {
		fmt.Fprint(tw, "ENVIRONMENT\t")
	}
	fmt.Fprintln(tw, "APPLICATION\tPINNED REFERENCE\tTAGS\tPROMOTED\tBY\tRULE\tSCAN\tSIGNED BY")
	for _, d := range ds {
		if withEnv {
			fmt.Fprintf(tw, "%s\t", d.GetEnvironment())
		}
		scan := "-"
		switch s := d.GetScan(); {
		case s != nil:
			c := s.GetCounts()
			scan = fmt.Sprintf("C%d H%d M%d L%d", c.GetCritical(), c.GetHigh(), c.GetMedium(), c.GetLow())
		case d.GetScanned() && d.GetFindingCount() == 0:
			scan = "clean"
		case d.GetScanned():
			noun := "findings"
			if d.GetFindingCount() == 1 {
				noun = "finding"
			}
			scan = fmt.Sprintf("%s, %d %s", lower(d.GetHighestSeverity().String(), "SEVERITY_"), d.GetFindingCount(), noun)
		}
		signed := "-"
		switch {
		case d.GetSignature() != nil:
			signed = short(d.GetSignature().GetKeyId())
		case d.GetSigningKeyId() != "":
			signed = short(d.GetSigningKeyId())
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", d.GetApplication(), d.GetReference(), strings.Join(d.GetTags(), ","), ts(d.GetPromotedAt()), d.GetActor(), d.GetRuleId(), scan, signed)
	}
	return tw.Flush()
}

func runPromotions(ctx context.Context, e *env, args []string) error {
	fs := e.flags("promotions")
	envName := fs.String("env", "", "only this environment")
	repo := fs.String("repo", "", "only this source or target repository")
	digest := fs.String("digest", "", "only this digest")
	if _, err := e.parse(fs, args, 0, "no arguments"); err != nil {
		return err
	}
	c, closeConn, err := e.client()
	if err != nil {
		return err
	}
	defer closeConn()
	var all []*customsv1.Deployment
	token := ""
	for {
		callCtx, cancel := e.callContext(ctx)
		resp, err := c.ListPromotions(callCtx, &customsv1.ListPromotionsRequest{Environment: *envName, Repository: *repo, Digest: *digest, PageSize: 200, PageToken: token})
		cancel()
		if err != nil {
			return err
		}
		all = append(all, resp.GetPromotions()...)
		if token = resp.GetNextPageToken(); token == "" {
			break
		}
	}
	if e.output == "json" {
		return printJSON(e.stdout, &customsv1.ListPromotionsResponse{Promotions: all}, true)
	}
	return printDeployments(e, all, true)
}

// commandActor checks the flags every promote and rollback needs and
// returns the actor to send. Under mutual TLS the server records the
// client certificate's identity, so the local user is not sent unless
// --actor or CUSTOMS_ACTOR names someone explicitly.
func (e *env) commandActor(fs *flag.FlagSet, envName, reason, actor string) (string, error) {
	if e.certFile != "" && os.Getenv("CUSTOMS_ACTOR") == "" {
		explicit := false
		fs.Visit(func(f *flag.Flag) { explicit = explicit || f.Name == "actor" })
		if !explicit {
			actor = ""
		}
	}
	if envName == "" || reason == "" || (actor == "" && e.certFile == "") {
		return "", usageErr{"--env, --reason and --actor are required"}
	}
	return actor, nil
}

// actorDefault is the local user, so a manual promotion always says who
// asked.
func actorDefault() string {
	if a := os.Getenv("CUSTOMS_ACTOR"); a != "" {
		return a
	}
	if u, err := user.Current(); err == nil {
		return u.Username
	}
	return ""
}

func runPromote(ctx context.Context, e *env, args []string) error {
	fs := e.flags("promote")
	envName := fs.String("env", "", "target environment (required)")
	actor := fs.String("actor", actorDefault(), "who promotes (env CUSTOMS_ACTOR, default the local user)")
	reason := fs.String("reason", "", "why (required)")
	pos, err := e.parse(fs, args, 1, "one digest or reference to promote")
	if err != nil {
		return err
	}
	if *actor, err = e.commandActor(fs, *envName, *reason, *actor); err != nil {
		return err
	}
	c, closeConn, err := e.client()
	if err != nil {
		return err
	}
	defer closeConn()
	req := &customsv1.PromoteRequest{Environment: *envName, Actor: *actor, Reason: *reason}
	if strings.HasPrefix(pos[0], "sha256:") || strings.HasPrefix(pos[0], "sha512:") {
		req.Selector = &customsv1.PromoteRequest_Digest{Digest: pos[0]}
	} else {
		req.Selector = &customsv1.PromoteRequest_Reference{Reference: pos[0]}
	}
	ctx, cancel := e.callContext(ctx)
	defer cancel()
	resp, err := c.Promote(ctx, req)
	if err != nil {
		return err
	}
	if e.output == "json" {
		return printJSON(e.stdout, resp, true)
	}
	if resp.GetAlreadyPromoted() {
		fmt.Fprintf(e.stdout, "%s already runs in %s: nothing copied\n", short(resp.GetDigest()), *envName)
		return nil
	}
	p := resp.GetPromotion()
	fmt.Fprintf(e.stdout, "promoted to %s: %s (rule %s)\n", p.GetEnvironment(), p.GetTargetReference(), p.GetRuleId())
	return nil
}

func runRollback(ctx context.Context, e *env, args []string) error {
	fs := e.flags("rollback")
	envName := fs.String("env", "", "environment (required)")
	digest := fs.String("to", "", "digest to go back to (default: the one before the current)")
	actor := fs.String("actor", actorDefault(), "who rolls back (env CUSTOMS_ACTOR, default the local user)")
	reason := fs.String("reason", "", "why (required)")
	pos, err := e.parse(fs, args, 1, "one application (target repository registry/repo)")
	if err != nil {
		return err
	}
	if *actor, err = e.commandActor(fs, *envName, *reason, *actor); err != nil {
		return err
	}
	c, closeConn, err := e.client()
	if err != nil {
		return err
	}
	defer closeConn()
	ctx, cancel := e.callContext(ctx)
	defer cancel()
	resp, err := c.Rollback(ctx, &customsv1.RollbackRequest{Environment: *envName, Application: pos[0], Digest: *digest, Actor: *actor, Reason: *reason})
	if err != nil {
		return err
	}
	if e.output == "json" {
		return printJSON(e.stdout, resp, true)
	}
	fmt.Fprintf(e.stdout, "rolled back %s in %s to %s\n", pos[0], *envName, resp.GetPromotion().GetTargetReference())
	return nil
}

func runRescan(ctx context.Context, e *env, args []string) error {
	fs := e.flags("rescan")
	c, ctx, digest, done, err := e.digestCall(ctx, fs, args)
	if err != nil {
		return err
	}
	defer done()
	resp, err := c.RequestRescan(ctx, &customsv1.RequestRescanRequest{Digest: digest})
	if err != nil {
		return err
	}
	if e.output == "json" {
		return printJSON(e.stdout, resp, true)
	}
	fmt.Fprintf(e.stdout, "rescan of %s queued (event %s)\n", short(digest), resp.GetEventId())
	return nil
}
