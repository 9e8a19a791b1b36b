package scanner

import (
	"context"
	"fmt"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	dbtypes "github.com/aquasecurity/trivy-db/pkg/types"
	ftypes "github.com/aquasecurity/trivy/pkg/fanal/types"
	"github.com/aquasecurity/trivy/pkg/types"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/timestamppb"

	customsv1 "github.com/customs-dev/customs/gen/go/customs/v1"
)

func vuln(id, pkg, installed, fixed, sev, title string) types.DetectedVulnerability {
	return types.DetectedVulnerability{
		VulnerabilityID: id, PkgName: pkg, InstalledVersion: installed, FixedVersion: fixed,
		Vulnerability: dbtypes.Vulnerability{Severity: sev, Title: title}, //nolint:staticcheck // what Trivy fills in for the CLI's "Severity"
	}
}

func TestSummarize(t *testing.T) {
	t.Parallel()
	scannedAt := time.Date(2026, 2, 3, 4, 5, 6, 0, time.UTC)
	db := DBInfo{Version: "2@sha256:abc", UpdatedAt: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	osResult := types.Result{
		Target: "img (alpine 3.19.0)", Class: types.ClassOSPkg, Type: ftypes.Alpine,
		Packages: []ftypes.Package{{Name: "libssl3"}, {Name: "musl"}},
		Vulnerabilities: []types.DetectedVulnerability{
			vuln("CVE-2023-6129", "libssl3", "3.1.4-r0", "3.1.4-r3", "MEDIUM", "poly1305"),
			vuln("CVE-2024-0001", "libssl3", "3.1.4-r0", "", "CRITICAL", "crit"),
		},
	}
	goResult := types.Result{
		Target: "usr/local/bin/app", Class: types.ClassLangPkg, Type: ftypes.GoBinary,
		Packages: []ftypes.Package{{Name: "golang.org/x/text"}},
		Vulnerabilities: []types.DetectedVulnerability{
			vuln("CVE-2022-32149", "golang.org/x/text", "v0.3.7", "0.3.8", "HIGH", "x/text"),
			vuln("CVE-2000-0001", "golang.org/x/text", "v0.3.7", "", "", "no severity"),
			vuln("CVE-2000-0002", "golang.org/x/text", "v0.3.7", "", "LOW", "low"),
		},
	}
	tests := []struct {
		name       string
		report     types.Report
		max        int
		assertions func(t *testing.T, s *customsv1.ScanSummary, f []*customsv1.Finding, truncated bool)
	}{
		{
			name:   "no results",
			report: types.Report{},
			max:    10,
			assertions: func(t *testing.T, s *customsv1.ScanSummary, f []*customsv1.Finding, truncated bool) {
				want := &customsv1.ScanSummary{
					Counts: &customsv1.SeverityCounts{}, Scanner: "trivy", ScannerVersion: "v0.74.0", DbVersion: "2@sha256:abc",
					DbUpdatedAt: timestamppb.New(db.UpdatedAt), ScannedAt: timestamppb.New(scannedAt),
				}
				if diff := cmp.Diff(want, s, protocmp.Transform()); diff != "" {
					t.Errorf("summary (-want +got):\n%s", diff)
				}
				if len(f) != 0 || truncated {
					t.Errorf("findings %v truncated %v", f, truncated)
				}
			},
		},
		{
			name:   "counts per severity and sorted findings",
			report: types.Report{Results: types.Results{osResult, goResult}},
			max:    10,
			assertions: func(t *testing.T, s *customsv1.ScanSummary, f []*customsv1.Finding, truncated bool) {
				wantCounts := &customsv1.SeverityCounts{Critical: 1, High: 1, Medium: 1, Low: 1, Unknown: 1}
				if diff := cmp.Diff(wantCounts, s.GetCounts(), protocmp.Transform()); diff != "" {
					t.Errorf("counts (-want +got):\n%s", diff)
				}
				if s.GetPackageCount() != 3 {
					t.Errorf("package count %d, want 3", s.GetPackageCount())
				}
				var ids []string
				for _, x := range f {
					ids = append(ids, x.GetVulnerabilityId())
				}
				want := []string{"CVE-2024-0001", "CVE-2022-32149", "CVE-2023-6129", "CVE-2000-0002", "CVE-2000-0001"}
				if diff := cmp.Diff(want, ids); diff != "" {
					t.Errorf("order (-want +got):\n%s", diff)
				}
				wantFirst := &customsv1.Finding{
					VulnerabilityId: "CVE-2024-0001", PackageName: "libssl3", InstalledVersion: "3.1.4-r0",
					Severity: customsv1.Severity_SEVERITY_CRITICAL, Title: "crit", PackageType: "alpine", Target: "img (alpine 3.19.0)",
				}
				if diff := cmp.Diff(wantFirst, f[0], protocmp.Transform()); diff != "" {
					t.Errorf("first finding (-want +got):\n%s", diff)
				}
				if truncated {
					t.Error("truncated with room to spare")
				}
			},
		},
		{
			name:   "cut at max findings but counts cover all",
			report: types.Report{Results: types.Results{osResult, goResult}},
			max:    2,
			assertions: func(t *testing.T, s *customsv1.ScanSummary, f []*customsv1.Finding, truncated bool) {
				if len(f) != 2 || !truncated {
					t.Fatalf("got %d findings, truncated %v; want 2, true", len(f), truncated)
				}
				if f[0].GetSeverity() != customsv1.Severity_SEVERITY_CRITICAL || f[1].GetSeverity() != customsv1.Severity_SEVERITY_HIGH {
					t.Errorf("kept %v, want the worst first", f)
				}
				c := s.GetCounts()
				if c.GetCritical()+c.GetHigh()+c.GetMedium()+c.GetLow()+c.GetUnknown() != 5 {
					t.Errorf("counts %v do not cover every finding", c)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s, f, truncated := Summarize(tt.report, db, "v0.74.0", scannedAt, tt.max)
			tt.assertions(t, s, f, truncated)
		})
	}
}

func TestIsRetryable(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{name: "deadline", err: context.DeadlineExceeded, want: true},
		{name: "connection refused", err: &net.OpError{Op: "dial", Err: syscall.ECONNREFUSED}, want: true},
		{name: "server error", err: &transport.Error{StatusCode: 503}, want: true},
		{name: "rate limited", err: &transport.Error{StatusCode: 429}, want: true},
		{name: "manifest unknown", err: &transport.Error{StatusCode: 404}, want: false},
		{name: "denied", err: &transport.Error{StatusCode: 403}, want: false},
		{name: "not scannable", err: ErrNotScannable, want: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := isRetryable(fmt.Errorf("wrapped: %w", tt.err)); got != tt.want {
				t.Errorf("isRetryable(%v) = %v, want %v", tt.err, got, tt.want)
			}
		})
	}
}

func TestTrivyVersionMatchesGoMod(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile("../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	want := "github.com/aquasecurity/trivy " + trivyModuleVersion + "\n"
	if !strings.Contains(string(data), want) {
		t.Errorf("go.mod does not require %q: update trivyModuleVersion", strings.TrimSpace(want))
	}
}
