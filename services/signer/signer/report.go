package signer

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/in-toto/in-toto-golang/in_toto"
	slsa1 "github.com/in-toto/in-toto-golang/in_toto/slsa_provenance/v1"
	"github.com/sigstore/cosign/v2/pkg/cosign/attestation"

	customsv1 "github.com/customs-dev/customs/gen/go/customs/v1"
	"github.com/customs-dev/customs/services/signer/policy"
)

// ErrBadReport is returned for a stored scan report that is not Trivy JSON.
var ErrBadReport = errors.New("malformed Trivy report")

// trivyReport is the part of Trivy's JSON report the policy needs. The
// signer reads it itself rather than linking Trivy, which keeps the signer
// binary small.
type trivyReport struct {
	SchemaVersion int `json:"SchemaVersion"`
	Results       []struct {
		Target          string `json:"Target"`
		Type            string `json:"Type"`
		Vulnerabilities []struct {
			VulnerabilityID  string `json:"VulnerabilityID"`
			PkgName          string `json:"PkgName"`
			InstalledVersion string `json:"InstalledVersion"`
			FixedVersion     string `json:"FixedVersion"`
			Severity         string `json:"Severity"`
			Title            string `json:"Title"`
		} `json:"Vulnerabilities"`
	} `json:"Results"`
}

// ParseTrivyFindings extracts every vulnerability of a Trivy JSON report.
func ParseTrivyFindings(data []byte) ([]*customsv1.Finding, error) {
	var r trivyReport
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadReport, err)
	}
	if r.SchemaVersion == 0 {
		return nil, fmt.Errorf("%w: no SchemaVersion", ErrBadReport)
	}
	var out []*customsv1.Finding
	for _, res := range r.Results {
		for _, v := range res.Vulnerabilities {
			if v.VulnerabilityID == "" {
				return nil, fmt.Errorf("%w: vulnerability without VulnerabilityID in %q", ErrBadReport, res.Target)
			}
			sev, err := policy.ParseSeverity(v.Severity)
			if err != nil {
				// An unknown label must not hide a finding: count it as UNKNOWN.
				sev = customsv1.Severity_SEVERITY_UNKNOWN
			}
			out = append(out, &customsv1.Finding{
				VulnerabilityId:  v.VulnerabilityID,
				PackageName:      v.PkgName,
				InstalledVersion: v.InstalledVersion,
				FixedVersion:     v.FixedVersion,
				Severity:         sev,
				Title:            v.Title,
				PackageType:      res.Type,
				Target:           res.Target,
			})
		}
	}
	return out, nil
}

// Predicate type URIs of the attestations the signer attaches.
var (
	PredicateCycloneDX = in_toto.PredicateCycloneDX
	PredicateVuln      = attestation.CosignVulnProvenanceV01
	PredicateSLSA1     = slsa1.PredicateSLSAProvenance
	trivyURI           = "https://github.com/aquasecurity/trivy"
	buildTypeCustoms   = "https://github.com/customs-dev/customs/buildtypes/registry-push/v1"
	unknownBuilderID   = "https://github.com/customs-dev/customs/builders/unknown"
)

// vulnPredicate builds cosign's vuln predicate (what `trivy --format
// cosign-vuln` emits): the scanner, its DB and the full report as result,
// or, when no report is stored, the event's counts per severity and its
// findings (which may have been cut). Promotion gates on these counts.
func vulnPredicate(sc *customsv1.ArtifactScanned, report []byte, eventID string) ([]byte, error) {
	c := sc.GetSummary().GetCounts()
	var result any = map[string]any{
		"counts": map[string]int32{
			"critical": c.GetCritical(), "high": c.GetHigh(), "medium": c.GetMedium(), "low": c.GetLow(), "unknown": c.GetUnknown(),
		},
		"findings": sc.GetFindings(), "findingsTruncated": sc.GetFindingsTruncated(),
	}
	if len(report) > 0 {
		result = json.RawMessage(report)
	}
	sum := sc.GetSummary()
	at := sum.GetScannedAt().AsTime()
	if sum.GetScannedAt() == nil {
		at = time.Unix(0, 0).UTC()
	}
	p := attestation.CosignVulnPredicate{
		Invocation: attestation.Invocation{URI: "customs:scanner", EventID: eventID},
		Scanner: attestation.Scanner{
			URI:     trivyURI,
			Version: sum.GetScannerVersion(),
			DB:      attestation.DB{URI: trivyURI + "-db", Version: sum.GetDbVersion()},
			Result:  result,
		},
		Metadata: attestation.Metadata{ScanStartedOn: at, ScanFinishedOn: at},
	}
	b, err := json.Marshal(p)
	if err != nil {
		return nil, fmt.Errorf("vuln predicate: %w", err)
	}
	return b, nil
}

// slsaPredicate builds a SLSA v1 provenance predicate from what the
// webhook or CI told us, or returns nil when nothing is known.
func slsaPredicate(p *customsv1.Provenance, ref *customsv1.ArtifactRef) ([]byte, error) {
	if p.GetSourceRepository() == "" && p.GetGitSha() == "" && p.GetBuilder() == "" {
		return nil, nil
	}
	ext := map[string]any{"registry": ref.GetRegistry(), "repository": ref.GetRepository()}
	if ref.GetTag() != "" {
		ext["tag"] = ref.GetTag()
	}
	if p.GetSemver() != "" {
		ext["version"] = p.GetSemver()
	}
	var deps []map[string]any
	if p.GetSourceRepository() != "" {
		src := map[string]any{"uri": p.GetSourceRepository()}
		if p.GetGitSha() != "" {
			src["digest"] = map[string]string{"gitCommit": p.GetGitSha()}
		}
		ext["source"] = src
		deps = append(deps, src)
	} else if p.GetGitSha() != "" {
		ext["gitCommit"] = p.GetGitSha()
	}
	builder := p.GetBuilder()
	if builder == "" {
		builder = unknownBuilderID
	}
	run := map[string]any{"builder": map[string]string{"id": builder}}
	if p.GetBuildUrl() != "" {
		run["metadata"] = map[string]string{"invocationId": p.GetBuildUrl()}
	}
	def := map[string]any{"buildType": buildTypeCustoms, "externalParameters": ext}
	if len(deps) > 0 {
		def["resolvedDependencies"] = deps
	}
	b, err := json.Marshal(map[string]any{"buildDefinition": def, "runDetails": run})
	if err != nil {
		return nil, fmt.Errorf("slsa predicate: %w", err)
	}
	return b, nil
}
