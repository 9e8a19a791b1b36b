package scanner

import (
	"cmp"
	"slices"
	"time"

	"github.com/aquasecurity/trivy/pkg/types"
	"google.golang.org/protobuf/types/known/timestamppb"

	customsv1 "github.com/customs-dev/customs/gen/go/customs/v1"
)

// DBInfo identifies the vulnerability DB a scan used.
type DBInfo struct {
	// Version is the DB schema version and the artifact digest it came
	// from, e.g. "2@sha256:...".
	Version   string
	UpdatedAt time.Time
}

// Summarize turns a Trivy report into the event's summary and findings.
// Counts cover every finding; findings are sorted by severity (worst
// first), then id and package, and cut at maxFindings.
func Summarize(rep types.Report, db DBInfo, scannerVersion string, scannedAt time.Time, maxFindings int) (*customsv1.ScanSummary, []*customsv1.Finding, bool) {
	counts := &customsv1.SeverityCounts{}
	var findings []*customsv1.Finding
	pkgs := 0
	for _, res := range rep.Results {
		pkgs += len(res.Packages)
		for _, v := range res.Vulnerabilities {
			sev := severity(v.Severity) //nolint:staticcheck // the "Severity" of `trivy image --format json`; parity with the CLI needs it
			switch sev {
			case customsv1.Severity_SEVERITY_CRITICAL:
				counts.Critical++
			case customsv1.Severity_SEVERITY_HIGH:
				counts.High++
			case customsv1.Severity_SEVERITY_MEDIUM:
				counts.Medium++
			case customsv1.Severity_SEVERITY_LOW:
				counts.Low++
			default:
				counts.Unknown++
			}
			findings = append(findings, &customsv1.Finding{
				VulnerabilityId:  v.VulnerabilityID,
				PackageName:      v.PkgName,
				InstalledVersion: v.InstalledVersion,
				FixedVersion:     v.FixedVersion,
				Severity:         sev,
				Title:            v.Title,
				PackageType:      string(res.Type),
				Target:           res.Target,
			})
		}
	}
	slices.SortStableFunc(findings, func(a, b *customsv1.Finding) int {
		return cmp.Or(
			cmp.Compare(b.GetSeverity(), a.GetSeverity()),
			cmp.Compare(a.GetVulnerabilityId(), b.GetVulnerabilityId()),
			cmp.Compare(a.GetPackageName(), b.GetPackageName()),
			cmp.Compare(a.GetInstalledVersion(), b.GetInstalledVersion()),
			cmp.Compare(a.GetTarget(), b.GetTarget()),
		)
	})
	truncated := false
	if maxFindings >= 0 && len(findings) > maxFindings {
		findings, truncated = findings[:maxFindings], true
	}
	summary := &customsv1.ScanSummary{
		Counts:         counts,
		Scanner:        "trivy",
		ScannerVersion: scannerVersion,
		DbVersion:      db.Version,
		PackageCount:   int32(pkgs),
		ScannedAt:      timestamppb.New(scannedAt),
	}
	if !db.UpdatedAt.IsZero() {
		summary.DbUpdatedAt = timestamppb.New(db.UpdatedAt)
	}
	return summary, findings, truncated
}

func severity(s string) customsv1.Severity {
	switch s {
	case "CRITICAL":
		return customsv1.Severity_SEVERITY_CRITICAL
	case "HIGH":
		return customsv1.Severity_SEVERITY_HIGH
	case "MEDIUM":
		return customsv1.Severity_SEVERITY_MEDIUM
	case "LOW":
		return customsv1.Severity_SEVERITY_LOW
	default:
		return customsv1.Severity_SEVERITY_UNKNOWN
	}
}
