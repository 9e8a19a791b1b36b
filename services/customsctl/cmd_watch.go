package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	customsv1 "github.com/customs-dev/customs/gen/go/customs/v1"
)

func runWatch(ctx context.Context, e *env, args []string) error {
	fs := e.flags("watch")
	repo := fs.String("repo", "", "only this repository (team/app)")
	initial := fs.Bool("initial", false, "first print every matching artifact's current state")
	if _, err := e.parse(fs, args, 0, "no arguments"); err != nil {
		return err
	}
	c, closeConn, err := e.client()
	if err != nil {
		return err
	}
	defer closeConn()
	stream, err := c.WatchArtifacts(ctx, &customsv1.WatchArtifactsRequest{Repository: *repo, IncludeInitial: *initial})
	if err != nil {
		return err
	}
	if e.output == "table" {
		fmt.Fprintln(e.stdout, "TIME      DIGEST               STATE      LAST STAGE            REFERENCES")
	}
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) || status.Code(err) == codes.Canceled || ctx.Err() != nil {
			return nil
		}
		if err != nil {
			return err
		}
		a := resp.GetArtifact()
		if e.output == "json" {
			if err := printJSON(e.stdout, a, false); err != nil {
				return err
			}
			continue
		}
		fmt.Fprintf(e.stdout, "%s  %-19s  %-9s  %-20s  %s\n", time.Now().Format(time.TimeOnly), short(a.GetDigest()), state(a), lastStage(a), refs(a))
	}
}

// lastStage names the most recent stage outcome, e.g. "scan succeeded".
func lastStage(a *customsv1.Artifact) string {
	var latest *customsv1.StageState
	for _, s := range a.GetStages() {
		if latest == nil || s.GetStreamSequence() > latest.GetStreamSequence() {
			latest = s
		}
	}
	if latest == nil {
		return "-"
	}
	return lower(latest.GetStage().String(), "STAGE_") + " " + lower(latest.GetStatus().String(), "STAGE_STATUS_")
}
