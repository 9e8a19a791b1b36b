package main

import (
	"context"
	"fmt"
	"strings"

	customsv1 "github.com/customs-dev/customs/gen/go/customs/v1"
)

func parseState(s string) (customsv1.ArtifactState, error) {
	if s == "" {
		return customsv1.ArtifactState_ARTIFACT_STATE_UNSPECIFIED, nil
	}
	v, ok := customsv1.ArtifactState_value["ARTIFACT_STATE_"+strings.ToUpper(s)]
	if !ok || v == 0 {
		return 0, usageErr{fmt.Sprintf("unknown state %q (pushed, scanned, signed, promoted, rejected, failed)", s)}
	}
	return customsv1.ArtifactState(v), nil
}

func runList(ctx context.Context, e *env, args []string) error {
	fs := e.flags("list")
	repo := fs.String("repo", "", "only this repository (team/app)")
	st := fs.String("state", "", "only this state: pushed, scanned, signed, promoted, rejected, failed")
	limit := fs.Int("limit", 100, "at most this many artifacts (0: all)")
	if _, err := e.parse(fs, args, 0, "no arguments"); err != nil {
		return err
	}
	stateFilter, err := parseState(*st)
	if err != nil {
		return err
	}
	c, closeConn, err := e.client()
	if err != nil {
		return err
	}
	defer closeConn()
	var all []*customsv1.Artifact
	token := ""
	for {
		callCtx, cancel := e.callContext(ctx)
		resp, err := c.ListArtifacts(callCtx, &customsv1.ListArtifactsRequest{Repository: *repo, State: stateFilter, PageSize: 200, PageToken: token})
		cancel()
		if err != nil {
			return err
		}
		all = append(all, resp.GetArtifacts()...)
		token = resp.GetNextPageToken()
		if token == "" || (*limit > 0 && len(all) >= *limit) {
			break
		}
	}
	if *limit > 0 && len(all) > *limit {
		all = all[:*limit]
	}
	if e.output == "json" {
		return printJSON(e.stdout, &customsv1.ListArtifactsResponse{Artifacts: all}, true)
	}
	tw := table(e.stdout)
	fmt.Fprintln(tw, "DIGEST\tSTATE\tREFERENCES\tUPDATED")
	for _, a := range all {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", short(a.GetDigest()), state(a), refs(a), ts(a.GetUpdatedAt()))
	}
	return tw.Flush()
}
