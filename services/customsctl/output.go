package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	customsv1 "github.com/customs-dev/customs/gen/go/customs/v1"
)

func printJSON(w io.Writer, m proto.Message, indent bool) error {
	opts := protojson.MarshalOptions{EmitUnpopulated: false}
	if indent {
		opts.Multiline, opts.Indent = true, "  "
	}
	b, err := opts.Marshal(m)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(w, string(b))
	return err
}

func table(w io.Writer) *tabwriter.Writer { return tabwriter.NewWriter(w, 0, 4, 2, ' ', 0) }

func ts(t *timestamppb.Timestamp) string {
	if t == nil {
		return "-"
	}
	return t.AsTime().Local().Format(time.DateTime)
}

// short shortens a digest for tables: sha256:0123456789ab.
func short(digest string) string {
	if i := strings.IndexByte(digest, ':'); i >= 0 && len(digest) > i+13 {
		return digest[:i+13]
	}
	return digest
}

// lower turns ENUM_PREFIX_VALUE into "value".
func lower(s, prefix string) string {
	return strings.ReplaceAll(strings.ToLower(strings.TrimPrefix(s, prefix)), "_", " ")
}

func state(a *customsv1.Artifact) string { return lower(a.GetState().String(), "ARTIFACT_STATE_") }

func refs(a *customsv1.Artifact) string {
	var out []string
	for _, l := range a.GetLocations() {
		base := l.GetRegistry() + "/" + l.GetRepository()
		if len(l.GetTags()) == 0 {
			out = append(out, base)
		}
		for _, t := range l.GetTags() {
			out = append(out, base+":"+t)
		}
	}
	return strings.Join(out, ", ")
}

func counts(c *customsv1.SeverityCounts) string {
	return fmt.Sprintf("critical %d, high %d, medium %d, low %d, unknown %d", c.GetCritical(), c.GetHigh(), c.GetMedium(), c.GetLow(), c.GetUnknown())
}

func printArtifact(w io.Writer, a *customsv1.Artifact) error {
	tw := table(w)
	fmt.Fprintf(tw, "Digest:\t%s\n", a.GetDigest())
	fmt.Fprintf(tw, "Media type:\t%s\n", a.GetMediaType())
	fmt.Fprintf(tw, "State:\t%s\n", state(a))
	fmt.Fprintf(tw, "References:\t%s\n", refs(a))
	fmt.Fprintf(tw, "First seen:\t%s\n", ts(a.GetFirstSeenAt()))
	fmt.Fprintf(tw, "Updated:\t%s\n", ts(a.GetUpdatedAt()))
	fmt.Fprintf(tw, "Trace id:\t%s\n", a.GetTraceId())
	if p := a.GetProvenance(); p != nil {
		fmt.Fprintf(tw, "Provenance:\tsource %s, git %s, version %s, builder %s\n", p.GetSourceRepository(), p.GetGitSha(), p.GetSemver(), p.GetBuilder())
	}
	if s := a.GetScan(); s != nil {
		fmt.Fprintf(tw, "Scan:\t%s (%s %s, DB %s)\n", counts(s.GetCounts()), s.GetScanner(), s.GetScannerVersion(), s.GetDbVersion())
	}
	if sg := a.GetSignature(); sg != nil {
		fmt.Fprintf(tw, "Signature:\t%s by key %s, %d attestations\n", short(sg.GetSignatureDigest()), sg.GetKeyId(), len(sg.GetAttestations()))
	}
	for _, p := range a.GetPromotions() {
		fmt.Fprintf(tw, "Promoted:\t%s -> %s (%s, rule %s)\n", p.GetEnvironment(), p.GetTargetReference(), p.GetActor(), p.GetRuleId())
	}
	for _, r := range a.GetPromotionRefusals() {
		fmt.Fprintf(tw, "Refused:\t%s: %s\n", r.GetEnvironment(), r.GetReason())
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w, "\nStages:")
	tw = table(w)
	fmt.Fprintln(tw, "  STAGE\tSTATUS\tUPDATED\tREASON")
	for _, s := range a.GetStages() {
		reason := s.GetReason()
		if len(s.GetDetails()) > 0 {
			reason += " [" + strings.Join(s.GetDetails(), "; ") + "]"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", lower(s.GetStage().String(), "STAGE_"), lower(s.GetStatus().String(), "STAGE_STATUS_"), ts(s.GetUpdatedAt()), reason)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(a.GetTagHistory()) > 0 {
		fmt.Fprintln(w, "\nTag history:")
		tw = table(w)
		fmt.Fprintln(tw, "  WHEN\tTAG\tACTION\tOTHER DIGEST")
		for _, th := range a.GetTagHistory() {
			other := th.GetOtherDigest()
			if other == "" {
				other = "-"
			}
			fmt.Fprintf(tw, "  %s\t%s/%s:%s\t%s\t%s\n", ts(th.GetAt()), th.GetRegistry(), th.GetRepository(), th.GetTag(), lower(th.GetAction().String(), "TAG_ACTION_"), other)
		}
		return tw.Flush()
	}
	return nil
}
