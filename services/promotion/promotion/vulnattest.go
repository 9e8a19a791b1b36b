package promotion

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/sigstore/cosign/v2/pkg/cosign/attestation"

	customsv1 "github.com/customs-dev/customs/gen/go/customs/v1"
)

// attestedScan is the scan result a trusted key signed as a cosign vuln
// attestation: the severity counts promotion gates on when it has one, so
// that a forged artifact.scanned cannot lower them.
type attestedScan struct {
	Counts     map[string]int
	FinishedOn time.Time
	// Key is the name of the key that signed the attestation.
	Key string
}

// errIncompleteScan marks a vuln predicate whose findings were cut: its
// counts would understate the scan.
var errIncompleteScan = errors.New("the attested findings were truncated")

// parseVulnAttestation reads the severity counts of a DSSE envelope that
// holds an in-toto statement with cosign's vuln predicate. The predicate's
// result is a Trivy JSON report, or, when the signer had no stored report,
// Customs' counts per severity with its findings list.
func parseVulnAttestation(envelope []byte) (counts map[string]int, finishedOn time.Time, err error) {
	var env struct {
		Payload string `json:"payload"`
	}
	if err := json.Unmarshal(envelope, &env); err != nil {
		return nil, time.Time{}, fmt.Errorf("DSSE envelope: %w", err)
	}
	body, err := base64.StdEncoding.DecodeString(env.Payload)
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("DSSE payload: %w", err)
	}
	var st struct {
		PredicateType string `json:"predicateType"`
		Predicate     struct {
			Scanner struct {
				Result json.RawMessage `json:"result"`
			} `json:"scanner"`
			Metadata struct {
				ScanFinishedOn time.Time `json:"scanFinishedOn"`
			} `json:"metadata"`
		} `json:"predicate"`
	}
	if err := json.Unmarshal(body, &st); err != nil {
		return nil, time.Time{}, fmt.Errorf("in-toto statement: %w", err)
	}
	if st.PredicateType != attestation.CosignVulnProvenanceV01 {
		return nil, time.Time{}, fmt.Errorf("predicate type %q is not %s", st.PredicateType, attestation.CosignVulnProvenanceV01)
	}
	counts, err = resultCounts(st.Predicate.Scanner.Result)
	if err != nil {
		return nil, time.Time{}, err
	}
	return counts, st.Predicate.Metadata.ScanFinishedOn, nil
}

// resultCounts counts findings by lower-case severity name.
func resultCounts(result json.RawMessage) (map[string]int, error) {
	var r struct {
		// A Trivy JSON report.
		SchemaVersion *int `json:"SchemaVersion"`
		Results       []struct {
			Vulnerabilities []struct {
				Severity string `json:"Severity"`
			} `json:"Vulnerabilities"`
		} `json:"Results"`
		// Customs' fallback: counts per severity and the findings list.
		Counts   map[string]int `json:"counts"`
		Findings []struct {
			Severity customsv1.Severity `json:"severity"`
		} `json:"findings"`
		FindingsTruncated bool `json:"findingsTruncated"`
	}
	if len(result) == 0 || string(result) == "null" {
		return nil, errors.New("the vuln predicate has no scanner result")
	}
	if err := json.Unmarshal(result, &r); err != nil {
		return nil, fmt.Errorf("vuln predicate result: %w", err)
	}
	counts := map[string]int{"critical": 0, "high": 0, "medium": 0, "low": 0, "unknown": 0}
	switch {
	case r.SchemaVersion != nil:
		for _, res := range r.Results {
			for _, v := range res.Vulnerabilities {
				counts[severityName(v.Severity)]++
			}
		}
	case r.Counts != nil:
		for sev, n := range r.Counts {
			if n < 0 {
				return nil, fmt.Errorf("negative %s count %d in the vuln predicate", sev, n)
			}
			counts[severityName(sev)] += n
		}
	case r.Findings != nil || strings.Contains(string(result), `"findings"`):
		if r.FindingsTruncated {
			return nil, errIncompleteScan
		}
		for _, f := range r.Findings {
			counts[severityName(strings.TrimPrefix(f.Severity.String(), "SEVERITY_"))]++
		}
	default:
		return nil, errors.New("the vuln predicate result is neither a Trivy report nor a findings list")
	}
	return counts, nil
}

// severityName maps a Trivy severity to the rules' names; anything else
// counts as unknown.
func severityName(s string) string {
	switch s = strings.ToLower(s); s {
	case "critical", "high", "medium", "low":
		return s
	}
	return "unknown"
}
