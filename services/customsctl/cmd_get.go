package main

import (
	"context"
	"strings"

	customsv1 "github.com/customs-dev/customs/gen/go/customs/v1"
)

func selector(arg string) *customsv1.GetArtifactRequest {
	if strings.HasPrefix(arg, "sha256:") || strings.HasPrefix(arg, "sha512:") {
		return &customsv1.GetArtifactRequest{Selector: &customsv1.GetArtifactRequest_Digest{Digest: arg}}
	}
	return &customsv1.GetArtifactRequest{Selector: &customsv1.GetArtifactRequest_Reference{Reference: arg}}
}

func runGet(ctx context.Context, e *env, args []string) error {
	fs := e.flags("get")
	pos, err := e.parse(fs, args, 1, "one digest (sha256:...) or reference (registry/repo:tag)")
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
	resp, err := c.GetArtifact(ctx, selector(pos[0]))
	if err != nil {
		return err
	}
	if e.output == "json" {
		return printJSON(e.stdout, resp.GetArtifact(), true)
	}
	return printArtifact(e.stdout, resp.GetArtifact())
}
