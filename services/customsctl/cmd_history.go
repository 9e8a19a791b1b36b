package main

import (
	"context"
	"flag"
	"fmt"
	"strings"

	customsv1 "github.com/customs-dev/customs/gen/go/customs/v1"
)

func runHistory(ctx context.Context, e *env, args []string) error {
	fs := e.flags("history")
	c, ctx, digest, done, err := e.digestCall(ctx, fs, args)
	if err != nil {
		return err
	}
	defer done()
	resp, err := c.GetArtifactHistory(ctx, &customsv1.GetArtifactHistoryRequest{Digest: digest})
	if err != nil {
		return err
	}
	if e.output == "json" {
		return printJSON(e.stdout, resp, true)
	}
	if resp.GetTruncated() {
		fmt.Fprintln(e.stdout, "(older events were dropped from the projection; the stream still has them)")
	}
	tw := table(e.stdout)
	fmt.Fprintln(tw, "SEQ\tSUBJECT\tOCCURRED\tPRODUCER\tREFERENCE\tDETAIL")
	for _, h := range resp.GetEntries() {
		ev := h.GetEvent()
		ref := ev.GetArtifact().GetRegistry() + "/" + ev.GetArtifact().GetRepository()
		if t := ev.GetArtifact().GetTag(); t != "" {
			ref += ":" + t
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\n", h.GetStreamSequence(), h.GetSubject(), ts(ev.GetOccurredAt()), ev.GetProducer(), ref, detail(ev))
	}
	return tw.Flush()
}

// digestCall parses the one digest-or-reference argument, dials the server
// and resolves the argument to a digest within one call deadline. done
// releases the connection and the deadline.
func (e *env) digestCall(ctx context.Context, fs *flag.FlagSet, args []string) (customsv1.ArtifactServiceClient, context.Context, string, func(), error) {
	pos, err := e.parse(fs, args, 1, "one digest or reference")
	if err != nil {
		return nil, nil, "", nil, err
	}
	c, closeConn, err := e.client()
	if err != nil {
		return nil, nil, "", nil, err
	}
	ctx, cancel := e.callContext(ctx)
	done := func() {
		cancel()
		closeConn()
	}
	digest, err := resolveDigest(ctx, c, pos[0])
	if err != nil {
		done()
		return nil, nil, "", nil, err
	}
	return c, ctx, digest, done, nil
}

// resolveDigest accepts a digest or a reference and returns the digest.
func resolveDigest(ctx context.Context, c customsv1.ArtifactServiceClient, arg string) (string, error) {
	if strings.HasPrefix(arg, "sha256:") || strings.HasPrefix(arg, "sha512:") {
		return arg, nil
	}
	resp, err := c.GetArtifact(ctx, selector(arg))
	if err != nil {
		return "", err
	}
	return resp.GetArtifact().GetDigest(), nil
}

func detail(ev *customsv1.Event) string {
	switch p := ev.GetPayload().(type) {
	case *customsv1.Event_Pushed:
		return "via " + p.Pushed.GetSource() + " by " + p.Pushed.GetActor()
	case *customsv1.Event_Scanned:
		return counts(p.Scanned.GetSummary().GetCounts())
	case *customsv1.Event_Signed:
		return "key " + p.Signed.GetKeyId()
	case *customsv1.Event_Promoted:
		return p.Promoted.GetEnvironment() + " -> " + p.Promoted.GetTargetReference()
	case *customsv1.Event_Rejected:
		return lower(p.Rejected.GetStage().String(), "STAGE_") + ": " + p.Rejected.GetReason()
	case *customsv1.Event_Failed:
		return lower(p.Failed.GetStage().String(), "STAGE_") + ": " + p.Failed.GetReason()
	}
	return ""
}
