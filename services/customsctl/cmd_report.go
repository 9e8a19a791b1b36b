package main

import (
	"context"
	"fmt"
	"os"

	customsv1 "github.com/customs-dev/customs/gen/go/customs/v1"
)

func runReport(ctx context.Context, e *env, args []string) error {
	fs := e.flags("report")
	full := fs.Bool("trivy-json", false, "print the full Trivy JSON report instead of the table")
	c, ctx, digest, done, err := e.digestCall(ctx, fs, args)
	if err != nil {
		return err
	}
	defer done()
	resp, err := c.GetVulnerabilityReport(ctx, &customsv1.GetVulnerabilityReportRequest{Digest: digest})
	if err != nil {
		return err
	}
	switch {
	case *full:
		_, err := e.stdout.Write(resp.GetReportJson())
		return err
	case e.output == "json":
		resp.ReportJson = nil
		return printJSON(e.stdout, resp, true)
	}
	s := resp.GetSummary()
	fmt.Fprintf(e.stdout, "%s: %s\nscanned %s with %s %s, DB %s (updated %s)\n\n", digest, counts(s.GetCounts()), ts(s.GetScannedAt()), s.GetScanner(), s.GetScannerVersion(), s.GetDbVersion(), ts(s.GetDbUpdatedAt()))
	tw := table(e.stdout)
	fmt.Fprintln(tw, "VULNERABILITY\tPACKAGE\tINSTALLED\tFIXED\tSEVERITY\tTITLE")
	for _, f := range resp.GetFindings() {
		fixed := f.GetFixedVersion()
		if fixed == "" {
			fixed = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", f.GetVulnerabilityId(), f.GetPackageName(), f.GetInstalledVersion(), fixed, lower(f.GetSeverity().String(), "SEVERITY_"), f.GetTitle())
	}
	return tw.Flush()
}

func runSBOM(ctx context.Context, e *env, args []string) error {
	fs := e.flags("sbom")
	out := fs.String("f", "", "write the SBOM to this file instead of standard output")
	c, ctx, digest, done, err := e.digestCall(ctx, fs, args)
	if err != nil {
		return err
	}
	defer done()
	resp, err := c.GetSBOM(ctx, &customsv1.GetSBOMRequest{Digest: digest})
	if err != nil {
		return err
	}
	if *out != "" {
		return os.WriteFile(*out, resp.GetSbom(), 0o644) //nolint:gosec // an SBOM is not a secret; the user chose the path
	}
	_, err = e.stdout.Write(resp.GetSbom())
	return err
}
