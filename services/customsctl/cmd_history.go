package main

import (
	"context"
	"fmt"
	"strings"

	customsv1 "github.com/customs-dev/customs/gen/go/customs/v1"
)

func runHistory(ctx context.Context, e *env, args []string) error {
	fs := e.flags("history")
	pos, err := e.parse(fs, args, 1, "one digest or reference")
	if err != nil {
		return err
	}
	c, closeConn, err := e.client()
	if err != nil {
		return err
	}
	defer closeConn()
	ctx, cancel := e.callContext(ctx)
	defer cancel()
	digest, err := resolveDigest(ctx, c, pos[0])
	if err != nil {
		return err
	}
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
